"""Write the agreement language's training corpus and agreement suites.

    python corpora/agreement/generate.py --out corpora/agreement/data \\
        --train-sentences 44000 --test-per-condition 400 --seed 0

The defaults are the settings of the committed data in ``data/``.
"""

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script, Python puts this folder on sys.path, not the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from corpora.agreement import DATA_DIR  # noqa: E402
from corpora.agreement.grammar import generate_corpus, generate_suites, missing_words  # noqa: E402
from corpora.agreement.suite_syntaxgym import write_syntaxgym_suites  # noqa: E402
from corpora.agreement.suite_tsv import write_suite  # noqa: E402


SYNTAXGYM_DIR = "agreement_syntaxgym"  # the suites again, as SyntaxGym JSON


def main(argv: list[str] | None = None) -> int:
    """Generate ``train.txt``, ``agreement.tsv`` and the same suites as SyntaxGym JSON,
    one file a condition in ``agreement_syntaxgym/``, into ``--out``; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder (default: %(default)s)")
    parser.add_argument("--train-sentences", type=int, default=44000, help="default: %(default)s")
    parser.add_argument("--test-per-condition", type=int, default=400,
                        help="items per condition; a multiple of 8 balances every cell (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument("--per-condition", action="store_true",
                        help="also write one CONDITION.tsv per condition")
    args = parser.parse_args(argv)

    corpus = generate_corpus(args.train_sentences, args.seed)
    suites = generate_suites(args.test_per_condition, args.seed, exclude=set(corpus))
    items = [item for condition_items in suites.values() for item in condition_items]
    # A model can only score a held-out sentence fairly if it has seen all its words.
    unseen = missing_words(items, corpus)
    if unseen:
        print(f"error: the suites use words the corpus lacks: {' '.join(sorted(unseen))};"
              " generate more training sentences", file=sys.stderr)
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    write_suite(args.out / "agreement.tsv", items)
    write_syntaxgym_suites(args.out / SYNTAXGYM_DIR, items)
    if args.per_condition:
        for condition, condition_items in suites.items():
            write_suite(args.out / f"{condition}.tsv", condition_items)
    print(f"wrote {len(corpus)} training sentences and {len(items)} items"
          f" ({len(suites)} conditions) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
