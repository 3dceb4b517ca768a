"""Benchmark corpora at scale: tokenization throughput and flat memory.

    python scripts/bench_data.py            # 50 MB and 500 MB corpora; words on 20 and 200 MB
    python scripts/bench_data.py --json     # one JSON object on stdout
    python scripts/bench_data.py --words-only --word-sizes 5,10   # the word figures alone, quickly

Generates corpora of the given sizes from the agreement grammar (about 1.8 MB of
fresh sentences, repeated in a new random order until the size is reached), then,
for each, runs one child process that (1) tokenizes the corpus into a token file
with an empty cache (char tokenizer; the throughput is corpus MB over the wall
time of the whole of preprocessing: hashing, vocabulary and encoding passes) and
(2) trains a small LSTM for a few hundred steps from the memory-mapped token file,
validation included. The peak resident memory of each child (``ru_maxrss`` from
``wait4``) covers both. Targets: at least 50 MB/s, and the large corpus's peak at
most 1.2 times the small one's. The machine is shared: quote the ratio.

Words: WikiText-2's validation text (``--word-corpus``, default
``../shared/data/corpora/wikitext2.valid.txt``) repeated to each of ``--word-sizes``, then,
in one child process per size, tokenized with an empty cache three times, side by side:
char, word, and word with ``--lowercase --split-punctuation --numbers-token <num>``.
``word_tokenize_mb_per_s`` is the word figure (the smaller of the two sizes), beside
``char_tokenize_mb_per_s_wikitext`` on the same text; the peak memory of the two children
shows whether words keep memory flat too. Target: at least 30 MB/s of words.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# No dropout and a constant rate, pinned: the figures in BENCHMARKS.md were measured so.
TRAIN = dict(cell="lstm", layers=1, hidden=128, embedding=32, dropout=0.0, batch_size=32, bptt=64, epochs=1,
             val_fraction=0.001, lr=0.003, lr_schedule="constant", seed=0)


def generate(path: Path, megabytes: float, sentences: list[str], seed: int = 0):
    """Write at least ``megabytes`` MB of the sentences, reshuffled on every repeat."""
    rng = random.Random(seed)
    target, written = int(megabytes * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            rng.shuffle(sentences)
            block = "\n".join(sentences) + "\n"
            f.write(block)
            written += len(block)


def child(corpus: str, cache: str, steps: int) -> dict:
    """Tokenize ``corpus`` into ``cache`` (timed), then train from the cached token file."""
    import resource

    from charlm.config import TokenizerConfig, TrainConfig
    from charlm.data.prepare import DataConfig, prepare

    size = os.path.getsize(corpus)
    started = time.perf_counter()
    data = prepare([corpus], TokenizerConfig(), TrainConfig(batch_size=TRAIN["batch_size"], bptt=TRAIN["bptt"],
                   val_fraction=TRAIN["val_fraction"]), data_config=DataConfig(cache_dir=cache))
    seconds = time.perf_counter() - started
    assert not data.cached
    tokens = data.train_tokens + data.val_tokens
    del data
    rss_after_prepare = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    import charlm

    summary = charlm.train(corpus, Path(cache) / "run", progress=False, log=lambda line: None,
                           cache_dir=cache, max_steps=steps, **TRAIN)
    return {"mb": size / 1e6, "tokens": tokens, "tokenize_s": seconds, "tokenize_mb_per_s": size / 1e6 / seconds,
            "peak_rss_mb_prepare": rss_after_prepare, "steps": summary["steps"],
            "train_tokens_per_s": summary["tokens_per_s"]}


WORD_OPTIONS = {"lowercase": True, "split_punctuation": True, "numbers_token": "<num>"}
DEFAULT_WORD_CORPUS = ROOT.parent / "shared" / "data" / "corpora" / "wikitext2.valid.txt"


def word_child(corpus: str, cache: str) -> dict:
    """Tokenize ``corpus`` with an empty cache as char, word, and word with options; MB/s each."""
    from charlm.config import TokenizerConfig, TrainConfig
    from charlm.data.prepare import DataConfig, prepare

    size = os.path.getsize(corpus) / 1e6
    result = {"mb": size}
    for name, settings in (("char", {}), ("word", {"kind": "word"}), ("word_options", {"kind": "word", **WORD_OPTIONS})):
        started, cpu = time.perf_counter(), time.process_time()
        data = prepare([corpus], TokenizerConfig(**settings), TrainConfig(batch_size=20, bptt=35),
                       data_config=DataConfig(cache_dir=str(Path(cache) / name)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert not data.cached
        # CPU seconds too: on a shared machine they say more about the code than the wall clock.
        result[name] = {"mb_per_s": size / seconds, "mb_per_cpu_s": size / cpu, "tokens": data.train_tokens + data.val_tokens,
                        "vocab_size": data.tokenizer.vocab_size,
                        "val_oov_rate": data.val_unknown / max(1, data.val_tokens)}
        del data
    return result


def repeat_to(source: Path, path: Path, megabytes: float):
    """Write ``source``'s text over and over to ``path`` until it holds ``megabytes`` MB."""
    text = source.read_bytes()
    with open(path, "wb") as f:
        f.writelines([text] * max(1, round(megabytes * 1e6 / len(text))))


def run_child(corpus: Path, cache: Path, steps: int, words: bool = False) -> dict:
    """Run :func:`child` (or :func:`word_child`) in a fresh process; add its peak resident memory in MB."""
    command = [sys.executable, __file__, "--word-child" if words else "--child", str(corpus), "--cache", str(cache),
               "--steps", str(steps)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"bench_data: the child for {corpus} failed (exit {process.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500", help="corpus sizes in MB, small,large (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, help="where corpora go (default: a temporary folder)")
    parser.add_argument("--word-sizes", default="20,200",
                        help="word corpus sizes in MB, small,large (default: %(default)s)")
    parser.add_argument("--word-corpus", type=Path, default=DEFAULT_WORD_CORPUS,
                        help="the text repeated into the word corpora (default: WikiText-2's validation text)")
    parser.add_argument("--words-only", action="store_true", help="only the word figures (no char corpora, no training)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--word-child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.cache, args.steps)))
        return 0
    if args.word_child:
        print(json.dumps(word_child(args.word_child, args.cache)))
        return 0
    if not args.word_corpus.is_file():
        raise SystemExit(f"bench_data: {args.word_corpus} is absent; pass --word-corpus with a text file")

    from corpora.agreement.grammar import generate_corpus

    small_mb, large_mb = (float(s) for s in args.sizes.split(","))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="charlm-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    started = time.perf_counter()
    results, words = {}, {}
    try:
        for label, mb in zip(("small", "large"), (float(s) for s in args.word_sizes.split(","))):
            corpus = workdir / f"words-{mb:g}mb.txt"
            repeat_to(args.word_corpus, corpus, mb)
            words[label] = run_child(corpus, workdir / f"word-cache-{label}", 0, words=True)
            w = words[label]
            say(f"words, {w['mb']:,.1f} MB: " + ", ".join(
                f"{name} {w[name]['mb_per_s']:,.1f} MB/s ({w[name]['mb_per_cpu_s']:,.1f} per CPU second)"
                for name in ("char", "word", "word_options")) + f"; peak RSS {w['peak_rss_mb']:,.0f} MB")
            corpus.unlink()
        if not args.words_only:
            sentences = generate_corpus(40_000, 7)
        for label, mb in () if args.words_only else (("small", small_mb), ("large", large_mb)):
            corpus = workdir / f"agreement-{mb:g}mb.txt"
            generate(corpus, mb, list(sentences))
            say(f"{label}: {os.path.getsize(corpus) / 1e6:,.1f} MB corpus written to {corpus}")
            results[label] = run_child(corpus, workdir / f"cache-{label}", args.steps)
            r = results[label]
            say(f"{label}: tokenized {r['tokens']:,} tokens at {r['tokenize_mb_per_s']:,.1f} MB/s; "
                f"peak RSS {r['peak_rss_mb']:,.0f} MB ({r['peak_rss_mb_prepare']:,.0f} MB after tokenizing), "
                f"{r['steps']} steps at {r['train_tokens_per_s']:,.0f} tokens/s")
            corpus.unlink()
    finally:
        if args.workdir is None:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    small, large = words["small"], words["large"]
    report = {
        "word_tokenize_mb_per_s": small["word"]["mb_per_s"],
        "word_tokenize_mb_per_s_options": small["word_options"]["mb_per_s"],
        "char_tokenize_mb_per_s_wikitext": small["char"]["mb_per_s"],
        "word_tokenize_mb_per_s_large": large["word"]["mb_per_s"],
        "word_tokenize_mb_per_s_options_large": large["word_options"]["mb_per_s"],
        "char_tokenize_mb_per_s_wikitext_large": large["char"]["mb_per_s"],
        "word_tokenize_mb_per_cpu_s": small["word"]["mb_per_cpu_s"],
        "word_tokenize_mb_per_cpu_s_options": small["word_options"]["mb_per_cpu_s"],
        "char_tokenize_mb_per_cpu_s_wikitext": small["char"]["mb_per_cpu_s"],
        "word_peak_rss_mb_small": small["peak_rss_mb"],
        "word_peak_rss_mb_large": large["peak_rss_mb"],
        "word_rss_ratio": large["peak_rss_mb"] / small["peak_rss_mb"],
        "word_corpus_mb": [small["mb"], large["mb"]],
        "word_vocab_size": {name: small[name]["vocab_size"] for name in ("word", "word_options")},
        "word_val_oov_rate": {name: small[name]["val_oov_rate"] for name in ("word", "word_options")},
    }
    if not args.words_only:
        report.update({
            "tokenize_mb_per_s": min(results["small"]["tokenize_mb_per_s"], results["large"]["tokenize_mb_per_s"]),
            "peak_rss_mb_small": results["small"]["peak_rss_mb"],
            "peak_rss_mb_large": results["large"]["peak_rss_mb"],
            "rss_ratio": results["large"]["peak_rss_mb"] / results["small"]["peak_rss_mb"],
            "tokenize_mb_per_s_small": results["small"]["tokenize_mb_per_s"],
            "tokenize_mb_per_s_large": results["large"]["tokenize_mb_per_s"],
            "corpus_mb": [results["small"]["mb"], results["large"]["mb"]],
            "steps": args.steps,
        })
    report["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(report))
        return 0
    if not args.words_only:
        print(f"tokenization: {report['tokenize_mb_per_s']:.1f} MB/s (target >= 50); peak RSS "
              f"{report['peak_rss_mb_small']:.0f} MB -> {report['peak_rss_mb_large']:.0f} MB, "
              f"ratio {report['rss_ratio']:.3f} (target <= 1.2)")
    print(f"words: {report['word_tokenize_mb_per_s']:.1f} MB/s ({report['word_tokenize_mb_per_s_options']:.1f} with "
          f"--lowercase --split-punctuation --numbers-token; target >= 30) beside {report['char_tokenize_mb_per_s_wikitext']:.1f} "
          f"MB/s for characters on the same text; peak RSS {report['word_peak_rss_mb_small']:.0f} MB -> "
          f"{report['word_peak_rss_mb_large']:.0f} MB, ratio {report['word_rss_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
