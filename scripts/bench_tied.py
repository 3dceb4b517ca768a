"""Training throughput of a model with tied output weights (``--tie-weights``) against the same
model untied, side by side in one process. Target: the tied step at least as fast (ratio >= 1).

Both trainers run charlm's compiled step (SGD, global clipping, as the word-level recipes of
docs/training.md) on the same windows; they are timed in turn (``--rounds`` stretches of
``--steps`` steps after a warm-up), and the medians and their ratio are printed.

    python scripts/bench_tied.py                               # 2x128 at V=2,000 and 2x650 at V=33,278, B=20, T=35
    python scripts/bench_tied.py --configs 650:650:33278 --rounds 3 --json
"""

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_steps import add_timing_arguments, start_tensorflow, time_in_turn  # noqa: E402  (the shared timing)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONFIGS = ("128:128:2000", "650:650:33278")


def bench(config, args):
    """tokens/s of the untied and the tied training step for one ``hidden:embedding:vocab``."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras
    from charlm.training.steps import CompiledSteps

    keras = import_keras()
    hidden, embedding, vocab = (int(n) for n in config.split(":"))
    train_config = TrainConfig(batch_size=args.batch, bptt=args.bptt, optimizer="sgd", lr=1.0, clipnorm=0.25)
    trainers = {}
    for tied in (False, True):
        keras.utils.set_random_seed(1)
        model_config = ModelConfig(cell="lstm", layers=2, hidden=hidden, embedding=embedding, tie_weights=tied)
        trainers[tied] = CompiledSteps(build_model(model_config, vocab), model_config, train_config)
    rates = time_in_turn(trainers, vocab, args)
    untied, tied = rates[False], rates[True]
    return {"config": config, "batch": args.batch, "bptt": args.bptt, "untied_tokens_per_s": untied,
            "tied_tokens_per_s": tied, "ratio": tied / untied}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated hidden:embedding:vocab")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    add_timing_arguments(parser)
    args = parser.parse_args()

    start_tensorflow(args.threads)
    rows = []
    for config in args.configs.split(","):
        row = bench(config, args)
        rows.append(row)
        if not args.json:
            hidden, embedding, vocab = config.split(":")
            print(f"LSTM 2x{hidden}, E={embedding}, V={vocab}, B={args.batch}, T={args.bptt}: "
                  f"tied {row['tied_tokens_per_s']:,.0f} tokens/s, "
                  f"untied {row['untied_tokens_per_s']:,.0f}, ratio {row['ratio']:.2f}x (target >= 1)", flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
