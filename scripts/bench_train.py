"""charlm's training throughput against plain Keras and PyTorch on the same model, and against
the machine's own matrix-multiply ceiling, measured side by side in one run.

For each configuration (the character ones: embedding 64, 65 symbols, T=64; the word ones:
embedding and hidden 650, B=20, T=35, 10,000 and 33,000 words; Adam, global-norm clipping at 5;
the syntax is bench_kernels.py's, ``cell:layers:hidden:batch[:V=..][:E=..][:T=..][:opt=..]``):

    charlm      charlm's compiled steps, as `charlm train` runs them
    baseline    plain Keras: the same layers in a tf.function train step, nothing else
    torch       torch.nn.LSTM/GRU/RNN, hidden state detached between windows (when installed)
    eval        charlm's evaluation forward pass, as `charlm eval` runs a long text by default
                (its default streams as the batch, windows of its default length)

Each runs in its own process; the processes are timed in turn (A B C D A B C D ...) after a
warm-up, and the median of the rounds is reported, because the 2-core machine is shared and
noisy. The ceiling is the fp32 GFLOP/s of a 2048^3 product through TensorFlow, measured in the
same run (the better of a timing before and one after the configurations); the fraction of it
reached is tokens/s x FLOPs per token / ceiling, with the FLOPs of a training step (forward +
backward, 3x the forward; the embedding ignored):

    LSTM 24*H*(E+H) + 48*(L-1)*H^2 + 6*H*V;  GRU 18 and 36;  SimpleRNN 6 and 12.

Every variant's peak memory is its worker process's peak resident set size.

    python scripts/bench_train.py            # the reference configurations, a table
    python scripts/bench_train.py --json     # one object per configuration
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_kernels  # noqa: E402  (the shared timing machinery: worker processes, ceiling)

sys.path.insert(0, bench_kernels._REPO)

CONFIGS = ["lstm:2:256:64", "gru:2:256:64", "rnn:2:256:64", "lstm:2:512:128", "lstm:2:256:32",
           "lstm:2:650:20:V=10000:E=650:T=35", "lstm:2:650:20:V=33000:E=650:T=35"]
FLOP_FACTORS = {"lstm": (24, 48), "gru": (18, 36), "rnn": (6, 12)}


def flops_per_token(config):
    """FLOPs of a training step per token (see the module docstring) of a bench_kernels.Config."""
    first, rest = FLOP_FACTORS[config.cell]
    H = config.hidden
    return first * H * (config.embedding + H) + rest * (config.layers - 1) * H ** 2 + 6 * H * config.vocab


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated cell:layers:hidden:batch[:V=..][:E=..][:T=..][:opt=..]")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8, help="training steps per timed stretch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inter-op", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    variants = ["charlm", "keras", "charlm_eval"]
    try:
        import torch  # noqa: F401

        variants.append("torch")
    except ImportError:
        pass
    # The ceiling is timed before and after the configurations and the better timing kept: on a
    # shared machine one timing can read low, which would flatter every fraction.
    ceiling = bench_kernels._matmul_ceiling(args.threads)["2048x2048x2048"]
    medians = {}
    for config in args.configs.split(","):
        _, rates, _, peaks = bench_kernels._bench_config(config, variants, args)
        medians[config] = {v: statistics.median(r) for v, r in rates.items()}, rates, peaks
        if not args.json:
            print(f"{config}: measured", file=sys.stderr, flush=True)
    ceiling = max(ceiling, bench_kernels._matmul_ceiling(args.threads)["2048x2048x2048"])
    from charlm.config import StreamSettings
    from charlm.evaluate import pass_window

    streams = StreamSettings().streams
    results = []
    for config, (median, rates, peaks) in medians.items():
        parsed = bench_kernels._parse_config(config)
        torch_rate = median.get("torch")
        row = {
            "config": parsed.label(),
            "tokens_per_s": median["charlm"],
            "baseline_tokens_per_s": median["keras"],
            "ratio_vs_baseline": median["charlm"] / median["keras"],
            "torch_tokens_per_s": torch_rate,
            "ratio_vs_torch": median["charlm"] / torch_rate if torch_rate else None,
            "eval_tokens_per_s": median["charlm_eval"],
            "eval_ratio_vs_training": median["charlm_eval"] / median["charlm"],
            "eval_shape": [streams, pass_window(streams, parsed.vocab)],
            "ceiling_gflops": ceiling,
            "ceiling_fraction": median["charlm"] * flops_per_token(parsed) / (ceiling * 1e9),
            "spread": {v: [min(r), max(r)] for v, r in rates.items()},
            "peak_rss_mib": {v: peak / 2**20 for v, peak in peaks.items()},
        }
        results.append(row)
        if not args.json:
            torch_text = (f"torch {torch_rate:8,.0f} ({row['ratio_vs_torch']:.2f}x)" if torch_rate
                          else "torch not installed")
            memory = ", ".join(f"{v} {mib:,.0f}" for v, mib in row["peak_rss_mib"].items())
            print(f"{row['config']:20s} charlm {row['tokens_per_s']:8,.0f} tok/s | keras "
                  f"{row['baseline_tokens_per_s']:8,.0f} ({row['ratio_vs_baseline']:.2f}x) | {torch_text} | "
                  f"eval {row['eval_ratio_vs_training']:.2f}x training | "
                  f"{row['ceiling_fraction']:.0%} of {ceiling:.0f} GFLOP/s | peak MiB: {memory}", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
