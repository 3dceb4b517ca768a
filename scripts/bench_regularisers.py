"""What AWD-LSTM's regularisers cost a training step: the default model (LSTM 2x256, E=64) trained
without them and with each of dropout, locked dropout, weight drop and embedding dropout, and with
all of them, side by side in one process.

Every trainer is charlm's compiled step, the masks drawn just before it as ``charlm train`` draws
them; all start from the same weights and are timed in turn (``--rounds`` stretches of ``--steps``
steps after a warm-up) on the same windows. Printed: each one's median tokens/s and its step time
relative to the step without regularisers.

    python scripts/bench_regularisers.py
    python scripts/bench_regularisers.py --cell gru --batch 128 --json
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

VOCAB = 65
# Each case's ModelConfig settings (rates as AWD-LSTM's character-level recipe uses them).
CASES = {
    "none": {},
    "dropout 0.2": {"dropout": 0.2},
    "locked dropout 0.2": {"dropout": 0.2, "locked_dropout": True},
    "weight drop 0.5": {"weight_drop": 0.5},
    "embedding dropout 0.1": {"embedding_dropout": 0.1},
    "all four": {"dropout": 0.2, "locked_dropout": True, "weight_drop": 0.5, "embedding_dropout": 0.1},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=64)
    add_timing_arguments(parser, steps=6, warmup=3)
    args = parser.parse_args()

    start_tensorflow(args.threads)
    from charlm.config import ModelConfig, TrainConfig
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras
    from charlm.training.steps import CompiledSteps

    keras = import_keras()
    train_config = TrainConfig(batch_size=args.batch, bptt=args.bptt)
    trainers = {}
    for name, settings in CASES.items():
        keras.utils.set_random_seed(1)
        config = ModelConfig(cell=args.cell, layers=args.layers, hidden=args.hidden, **settings)
        trainers[name] = CompiledSteps(build_model(config, VOCAB), config, train_config)
    rates = time_in_turn(trainers, VOCAB, args)
    rows = [{"case": name, "settings": CASES[name], "tokens_per_s": rate,
             "step_time_ratio": rates["none"] / rate} for name, rate in rates.items()]
    if args.json:
        print(json.dumps({"cell": args.cell, "layers": args.layers, "hidden": args.hidden,
                          "batch": args.batch, "bptt": args.bptt, "rows": rows}))
        return
    print(f"{args.cell.upper()} {args.layers}x{args.hidden}, B={args.batch}, T={args.bptt}:")
    for row in rows:
        print(f"  {row['case']:<22} {row['tokens_per_s']:>8,.0f} tokens/s  step time {row['step_time_ratio']:.2f}x")


if __name__ == "__main__":
    main()
