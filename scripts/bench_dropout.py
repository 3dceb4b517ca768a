"""Training throughput of models with dropout: charlm's compiled step against the same step
uncompiled, side by side in one process.

With dropout the training step draws the masks with the model's own Dropout layers just before its
XLA-compiled step (XLA's CPU random generator is slow); before that, models with dropout trained
uncompiled. Both trainers here draw their masks the same way and start from the same weights and
random state; they are timed in turn (``--rounds`` stretches of ``--steps`` steps after a
warm-up), and the medians and their ratio are printed.

    python scripts/bench_dropout.py                      # LSTM and GRU 2x256, dropout 0.2 and 0.5
    python scripts/bench_dropout.py --configs lstm:2:512:0.5 --batch 128 --json
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

CONFIGS = ("lstm:2:256:0.2", "gru:2:256:0.5")
VOCAB = 65


def bench(config, args):
    """tokens/s of the uncompiled and the compiled training step for one ``cell:layers:hidden:dropout``."""
    from charlm.runtime import import_keras
    from charlm.config import ModelConfig, TrainConfig
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    keras = import_keras()
    cell, layers, hidden, dropout = config.split(":")
    model_config = ModelConfig(cell=cell, layers=int(layers), hidden=int(hidden), embedding=64,
                               dropout=float(dropout))
    train_config = TrainConfig(batch_size=args.batch, bptt=args.bptt, clipnorm=5.0)
    trainers = {}
    for compiled in (False, True):
        keras.utils.set_random_seed(1)
        model = build_model(model_config, VOCAB)
        trainers[compiled] = CompiledSteps(model, model_config, train_config, jit_compile=compiled)
    rates = time_in_turn(trainers, VOCAB, args)
    uncompiled, compiled = rates[False], rates[True]
    return {"config": config, "batch": args.batch, "bptt": args.bptt,
            "uncompiled_tokens_per_s": uncompiled, "compiled_tokens_per_s": compiled,
            "ratio": compiled / uncompiled}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated cell:layers:hidden:dropout")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=64)
    add_timing_arguments(parser, steps=6, warmup=3)
    args = parser.parse_args()

    start_tensorflow(args.threads)
    rows = []
    for config in args.configs.split(","):
        row = bench(config, args)
        rows.append(row)
        if not args.json:
            print(f"{config} B={args.batch}: compiled {row['compiled_tokens_per_s']:,.0f} tokens/s, "
                  f"uncompiled {row['uncompiled_tokens_per_s']:,.0f}, ratio {row['ratio']:.2f}x", flush=True)
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
