"""Benchmark charlm's sampler against a per-step baseline (a benchmark, not a test).

One model for everything: a 2x256 LSTM, embedding 64, a 65-symbol char vocabulary, untrained
(speed does not depend on the weights), saved to a temporary .keras file and loaded back the
way ``charlm sample`` loads it. Measured, in this order and interleaved ``--repeats`` times:

(a) charlm's generation of one sample of 2,000 characters (compiled chunks of --chunk tokens);
(b) the baseline: a ``tf.function`` one-step model (the Keras model on one token, and a
    categorical draw) called from a Python loop, --baseline-length (500) times: it is slow,
    and its chars/s does not depend on the length;
(c) 64 samples of 2,000 characters at once (chars/s counts all 64);
(d) the time to consume a 10,000-character prompt (priming only);
and, as a yardstick for the load on a shared machine, the fp32 speed of one matrix product of
the size of a batch-64 recurrent step.

The first call of each path (tracing and XLA compilation) is done before timing and reported
separately; the figures are the best of the repeats (the machine is shared, the best run is
the least disturbed one). ``--json`` prints one object with the figures.

    python scripts/bench_sample.py [--json] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from charlm.runtime import import_keras  # noqa: E402

keras = import_keras()
import tensorflow as tf  # noqa: E402

from charlm import sample as sampling  # noqa: E402
from charlm.config import ModelConfig, SampleConfig  # noqa: E402
from charlm.nn.lm import LanguageModel, load  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402
from charlm.data.tokenizers import CharTokenizer  # noqa: E402

SYMBOLS = "".join(chr(c) for c in range(32, 95))  # 63 printable characters + <pad>, <unk> = 65


def make_model(directory: Path) -> LanguageModel:
    tokenizer = CharTokenizer.build(SYMBOLS)
    assert tokenizer.vocab_size == 65
    config = ModelConfig(cell="lstm", layers=2, hidden=256, embedding=64)
    keras.utils.set_random_seed(0)
    lm = LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)
    return load(lm.save(directory / "bench.keras"))


def baseline(lm: LanguageModel, length: int):
    """A tf.function one-step model called from a Python loop; returns a timing function."""

    @tf.function
    def step(token, states, seed):
        logits, *states = lm.model([token, *states], training=False)  # (1, 1, V)
        nxt = tf.random.stateless_categorical(logits[:, -1], 1, seed, dtype=tf.int32)  # (1, 1)
        return nxt, states

    def run():
        token, states = tf.constant([[SYMBOLS.index("T") + 2]], tf.int32), lm.zero_states(1)
        out = []
        for t in range(length):
            token, states = step(token, states, tf.constant([0, t], tf.int64))
            out.append(token)
        return len(out)

    return run


def matmul_probe():
    """One recurrent-step-sized fp32 product, (64x512)·(512x1024), 200 times: the machine's
    speed at the size that bounds (c), measured in the same run (the machine is shared)."""
    a, b = tf.random.normal((64, 512)), tf.random.normal((512, 1024))

    @tf.function
    def run():
        return tf.foldl(lambda acc, _: acc + tf.reduce_sum(tf.matmul(a, b)), tf.zeros(200), 0.0)

    return lambda: float(run())


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--baseline-length", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=sampling.CHUNK)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        lm = make_model(Path(tmp))
    sampler = sampling.sampler_for(lm)
    rng = np.random.default_rng(0)
    prompt = "".join(rng.choice(list(SYMBOLS), 10_000))
    one = SampleConfig(length=args.length, seed=1)
    many = SampleConfig(length=args.length, seed=1, num_samples=64)
    jobs = {
        "single": lambda: sampler.run("The ", one, chunk=args.chunk),
        "baseline": baseline(lm, args.baseline_length),
        "batch64": lambda: sampler.run("The ", many, chunk=args.chunk),
        "prompt10k": lambda: sampler.prime(lm.tokenizer.encode(prompt))[1].numpy(),
        "matmul": matmul_probe(),
    }
    first = {name: timed(job) for name, job in jobs.items()}  # tracing + XLA compilation
    best = {name: float("inf") for name in jobs}
    for _ in range(args.repeats):
        for name, job in jobs.items():
            best[name] = min(best[name], timed(job))

    figures = {
        "single_chars_per_s": args.length / best["single"],
        "baseline_chars_per_s": args.baseline_length / best["baseline"],
        "batch64_chars_per_s": 64 * args.length / best["batch64"],
        "prompt10k_seconds": best["prompt10k"],
        "matmul_gflops": 200 * 2 * 64 * 512 * 1024 / best["matmul"] / 1e9,
    }
    figures["ratio_vs_baseline"] = figures["single_chars_per_s"] / figures["baseline_chars_per_s"]
    figures = {k: round(v, 4 if k == "prompt10k_seconds" else 1) for k, v in figures.items()}
    first = {k: round(v, 2) for k, v in first.items()}
    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, TF {tf.__version__}, "
               f"load average {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps({**figures, "first_call_seconds": first, "machine": machine}))
        return
    print(f"machine: {machine}; best of {args.repeats}, after a first (compiling) call")
    print(f"(a) one sample of {args.length}:      {figures['single_chars_per_s']:>10,.0f} chars/s")
    print(f"(b) per-step baseline:            {figures['baseline_chars_per_s']:>10,.0f} chars/s")
    print(f"    ratio (a)/(b):                {figures['ratio_vs_baseline']:>10,.1f}x")
    print(f"(c) 64 samples at once:           {figures['batch64_chars_per_s']:>10,.0f} chars/s in total "
          f"({figures['batch64_chars_per_s'] / figures['single_chars_per_s']:.1f}x one sample)")
    print(f"(d) 10,000-character prompt:      {figures['prompt10k_seconds']:>10.3f} s")
    print(f"    (64x512)·(512x1024) fp32 matmul: {figures['matmul_gflops']:>7.1f} GFLOP/s "
          f"(bounds (c): a 2x256 LSTM step costs 1.6 MFLOP per sample)")
    print("first calls (tracing + compiling), s: " + ", ".join(f"{k} {v}" for k, v in first.items()))


if __name__ == "__main__":
    main()
