"""charlm show's targets: the time of a page of 2,000 characters, and the size of a page of a
20,000-token text of a 2 x 512 model.

Targets: 2,000 characters of the held-out end of the bundled corpus take under 10 seconds on
2 cores, the whole `charlm show` command (starting TensorFlow and loading the model
included); a 20,000-token text of a 2 x 512 LSTM makes a page of at most 10 MB.

The models are built here, a 2 x 256 and a 2 x 512 char LSTM over the bundled corpus's
vocabulary (their weights Keras' initial ones, or a trained model given with --model); each
page is written by `charlm show` as a user runs it, and the sizes and times are printed.

Example:
    python scripts/bench_show.py            # both targets
    python scripts/bench_show.py --model runs/x/model.keras --json
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LIMIT_MB, LIMIT_S = 10.0, 10.0


def build(hidden: int, folder: Path) -> Path:
    """An untrained 2 x ``hidden`` char LSTM over the bundled corpus's characters, saved."""
    from charlm.config import ModelConfig
    from charlm.data.prepare import default_corpus
    from charlm.data.tokenizers import build_tokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras

    import_keras().utils.set_random_seed(0)
    tokenizer = build_tokenizer("char", default_corpus().read_text(encoding="utf-8"))
    config = ModelConfig(cell="lstm", layers=2, hidden=hidden, embedding=64)
    path = folder / f"lstm-2x{hidden}.keras"
    LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config).save(path)
    return path


def show(model: Path, page: Path, tokens: int) -> dict:
    """Run `charlm show` on the first ``tokens`` tokens of the held-out bundled text."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "charlm", "show", str(model), "--max-tokens", str(tokens),
                             "-o", str(page)], capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"charlm show failed: {result.stderr.strip().splitlines()[-1]}")
    return {"tokens": tokens, "seconds": round(seconds, 2), "mb": round(page.stat().st_size / 1e6, 3),
            "said": result.stderr.strip().splitlines()[-1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="A model for the 2,000-character page (default: an untrained 2x256 LSTM).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        small = Path(args.model) if args.model else build(256, folder)
        timed = show(small, folder / "small.html", 2000)  # the bundled text is one character a token
        sized = show(build(512, folder), folder / "large.html", 20000)
    report = {"time_2000_chars": timed, "size_20000_tokens_2x512": sized,
              "targets_met": timed["seconds"] < LIMIT_S and sized["mb"] <= LIMIT_MB}
    if args.json:
        print(json.dumps(report))
        return
    print(f"2,000 characters, {small.name}: {timed['seconds']:.1f} s for the whole command "
          f"(target < {LIMIT_S:g} s), page {timed['mb']:.2f} MB")
    print(f"20,000 tokens, 2x512 LSTM: page {sized['mb']:.2f} MB (target <= {LIMIT_MB:g} MB) in {sized['seconds']:.1f} s")
    print(f"  {sized['said']}")
    print("targets met" if report["targets_met"] else "targets NOT met")


if __name__ == "__main__":
    main()
