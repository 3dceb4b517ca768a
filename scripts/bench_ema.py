"""What weight averaging (``--ema``) and AdamW (``--optimizer adamw``) cost per training step,
against the plain Adam step, side by side in one process. Target: each at least 0.97x the
plain step's tokens/s (the average's update is one multiply-add per weight, fused into the
compiled step).

The trainers run charlm's compiled step on the default model (``charlm train``'s defaults:
2x256 LSTM, E=64, B=64, T=64, Adam, global clipping at 5) at a character vocabulary of 65
(tiny-shakespeare's) on the same windows, timed in turn (``--rounds`` stretches of ``--steps``
steps after a warm-up); the medians and their ratios are printed.

    python scripts/bench_ema.py                    # about a minute on 2 cores
    python scripts/bench_ema.py --rounds 9 --json
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


def bench(args) -> dict:
    """tokens/s of the plain, the --ema and the --optimizer adamw training step."""
    from charlm.config import ModelConfig, TrainConfig
    from charlm.nn.model import build_model
    from charlm.runtime import import_keras
    from charlm.training.steps import CompiledSteps

    keras = import_keras()
    model_config = ModelConfig()
    settings = {"plain": {}, "ema": {"ema": args.ema}, "adamw": {"optimizer": "adamw"}}
    trainers = {}
    for key, extra in settings.items():
        keras.utils.set_random_seed(1)
        train_config = TrainConfig(batch_size=args.batch, bptt=args.bptt, **extra)
        trainers[key] = CompiledSteps(build_model(model_config, VOCAB), model_config, train_config)
    rates = time_in_turn(trainers, VOCAB, args)
    return {"batch": args.batch, "bptt": args.bptt, "ema": args.ema,
            **{f"{key}_tokens_per_s": rate for key, rate in rates.items()},
            "ema_ratio": rates["ema"] / rates["plain"], "adamw_ratio": rates["adamw"] / rates["plain"],
            "seconds_per_step": {key: args.batch * args.bptt / rate for key, rate in rates.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=64)
    add_timing_arguments(parser)
    args = parser.parse_args()

    start_tensorflow(args.threads)
    row = bench(args)
    if args.json:
        print(json.dumps(row))
        return
    seconds = row["seconds_per_step"]
    print(f"LSTM 2x256, E=64, V={VOCAB}, B={args.batch}, T={args.bptt}: plain Adam {row['plain_tokens_per_s']:,.0f} "
          f"tokens/s ({seconds['plain']:.4f} s/step); --ema {args.ema:g} {row['ema_tokens_per_s']:,.0f} "
          f"({seconds['ema']:.4f} s/step), {row['ema_ratio']:.3f}x; --optimizer adamw "
          f"{row['adamw_tokens_per_s']:,.0f} ({seconds['adamw']:.4f} s/step), {row['adamw_ratio']:.3f}x "
          "(target >= 0.97 each)")


if __name__ == "__main__":
    main()
