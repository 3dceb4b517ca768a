"""Benchmark corpora at scale: tokenization throughput and flat memory.

    python scripts/bench_data.py            # 50 MB and 500 MB corpora
    python scripts/bench_data.py --json     # one JSON object on stdout

Generates corpora of the given sizes from the agreement grammar (about 1.8 MB of
fresh sentences, repeated in a new random order until the size is reached), then,
for each, runs one child process that (1) tokenizes the corpus into a token file
with an empty cache (char tokenizer; the throughput is corpus MB over the wall
time of the whole of preprocessing: hashing, vocabulary and encoding passes) and
(2) trains a small LSTM for a few hundred steps from the memory-mapped token file,
validation included. The peak resident memory of each child (``ru_maxrss`` from
``wait4``) covers both. Targets: at least 50 MB/s, and the large corpus's peak at
most 1.2 times the small one's. The machine is shared: quote the ratio.
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

TRAIN = dict(cell="lstm", layers=1, hidden=128, embedding=32, batch_size=32, bptt=64, epochs=1,
             val_fraction=0.001, lr=0.003, seed=0)


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


def run_child(corpus: Path, cache: Path, steps: int) -> dict:
    """Run :func:`child` in a fresh process; add its peak resident memory in MB."""
    command = [sys.executable, __file__, "--child", str(corpus), "--cache", str(cache), "--steps", str(steps)]
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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.cache, args.steps)))
        return 0

    from corpora.agreement.grammar import generate_corpus

    small_mb, large_mb = (float(s) for s in args.sizes.split(","))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="charlm-bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    started = time.perf_counter()
    sentences = generate_corpus(40_000, 7)
    results = {}
    try:
        for label, mb in (("small", small_mb), ("large", large_mb)):
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
    report = {
        "tokenize_mb_per_s": min(results["small"]["tokenize_mb_per_s"], results["large"]["tokenize_mb_per_s"]),
        "peak_rss_mb_small": results["small"]["peak_rss_mb"],
        "peak_rss_mb_large": results["large"]["peak_rss_mb"],
        "rss_ratio": results["large"]["peak_rss_mb"] / results["small"]["peak_rss_mb"],
        "tokenize_mb_per_s_small": results["small"]["tokenize_mb_per_s"],
        "tokenize_mb_per_s_large": results["large"]["tokenize_mb_per_s"],
        "corpus_mb": [results["small"]["mb"], results["large"]["mb"]],
        "steps": args.steps,
        "seconds": time.perf_counter() - started,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"tokenization: {report['tokenize_mb_per_s']:.1f} MB/s (target >= 50); peak RSS "
              f"{report['peak_rss_mb_small']:.0f} MB -> {report['peak_rss_mb_large']:.0f} MB, "
              f"ratio {report['rss_ratio']:.3f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
