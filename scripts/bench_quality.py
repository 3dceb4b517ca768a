"""The validation loss M minutes of CPU training buy: charlm (defaults, best recipe) against an LSTM
and a GPT in PyTorch, trained one after another on the same machine, each in its own process, on
tiny-shakespeare.

    a  charlm-default  ``charlm train CORPUS --max-minutes M --val-fraction 0.05`` (charlm's defaults)
    b  charlm-best     the same with :data:`BEST_RECIPE`'s flags
    c  torch-lstm      charlm's default model in PyTorch with a standard recipe (scripts/torch_peers.py)
    d  torch-gpt       nanoGPT's laptop GPT for shakespeare_char (scripts/torch_peers.py)

Every system reads the same split: the last 5% of the file's characters validate (the cut
``charlm train --val-fraction 0.05`` makes, :func:`charlm.data.corpus.split_text`), the rest
trains, and the vocabulary is charlm's char vocabulary of the training part. The clock of each
starts with its training loop (after start-up, tokenization and model building; charlm's XLA
compilation falls inside it) and includes its periodic validations, as ``--max-minutes`` does; the
validation after the deadline and the evaluations below do not count. PyTorch uses as many threads
as the process has cores, as TensorFlow does. Run it on a quiet machine: on cores shared with other
work PyTorch's threads slow down far more than TensorFlow's (a step ten times slower with two
threads at a load of 8 on 2 cores, where one thread kept its pace).

How each figure validates (``best_val_nats``: the best of a run's validations, nats per character):

    charlm-*     its history's val_loss, at each epoch end: the validation text as --batch-size
                 streams, each from a zero state, in windows of --bptt with the state carried, the
                 tokens past the last whole window unscored (53,248 of the 55,770 at 64x64)
    torch-lstm   the same layout and reading (charlm.data.streams), at each tenth of the budget
    torch-gpt    non-overlapping blocks of 64 (a character sees 0-63 before it: nanoGPT's measure),
                 at each tenth of the budget; sliding_val_nats: its best weights on windows every
                 32 characters (32-63 characters of context each)
    eval_val_nats      charlm's saved (best) model through ``charlm eval MODEL VAL --json``: the
                       validation text as one stream (pieces read side by side, each warmed up on
                       the text before it), every character scored
    dynamic_val_nats   the same with ``--dynamic`` (dynamic evaluation), null with the reason where
                       it fails

Targets (2-core CPU): charlm-default at most 1.55 after 30 minutes; charlm-best at most 1.45 after
60 (static), 1.40 with dynamic evaluation; charlm ahead of both PyTorch systems at 10 and 30 minutes.

Each system takes M minutes and about 20-60 s more (start-up, the last validation, charlm's two
evaluations of the saved model):

    python scripts/bench_quality.py                           # 4 x 10 minutes: about 43 minutes
    python scripts/bench_quality.py --minutes 30 --json       # 4 x 30 minutes: about 2 h 3 min
    python scripts/bench_quality.py --minutes 60 --systems b  # the best recipe's target: about 61 minutes
    python scripts/bench_quality.py --minutes 0.3 --systems c,d --out /tmp/quality   # a check, 1-2 minutes
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
from charlm.data.corpus import read_corpus, split_text  # noqa: E402
from charlm.fileio import write_text  # noqa: E402
from charlm.nn.modelinfo import describe  # noqa: E402

# charlm's best recipe, tuned here and nowhere else: flags added to `charlm train` (system b). A wider
# model with AWD-LSTM's regularisers (locked dropout at three places, weight drop on the recurrent
# kernels) and an average of the weights (about the last thousand steps) validated and kept, since at
# a constant rate the raw weights' validation loss jitters. The clock ends the run and the default wsd
# schedule cools it down over its last fifth. BENCHMARKS.md has what stronger regularisation measured.
BEST_RECIPE = ["--hidden", "512", "--embedding", "128", "--locked-dropout", "--dropout-input", "0.1",
               "--dropout-hidden", "0.25", "--dropout-output", "0.1", "--weight-drop", "0.25", "--ema", "0.999"]

CORPUS = REPO.parent / "shared" / "data" / "corpora" / "tinyshakespeare.txt"
VAL_FRACTION = 0.05
SYSTEMS = {"a": "charlm-default", "b": "charlm-best", "c": "torch-lstm", "d": "torch-gpt"}
# (system, minutes of training, the most nats/char, which figure)
TARGETS = [("charlm-default", 30, 1.55, "best_val_nats"), ("charlm-best", 60, 1.45, "best_val_nats"),
           ("charlm-best", 60, 1.40, "dynamic_val_nats")]
AHEAD_AT = (10, 30)  # minutes at which charlm should beat both PyTorch systems


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def _run(argv) -> tuple[dict | None, str | None, float]:
    """Run ``argv``; (the JSON object its stdout ends with, None) on success, else (None, its last
    line of stderr), and the wall seconds it took."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return None, _last_line(done.stderr), seconds
    try:
        return json.loads(_last_line(done.stdout)), None, seconds
    except json.JSONDecodeError:
        return None, f"no JSON on stdout: {_last_line(done.stdout)}", seconds


def _dynamic_loss(result: dict):
    """The dynamic-evaluation loss in ``charlm eval --dynamic --json``'s output, or None."""
    dynamic = result.get("dynamic")
    if isinstance(dynamic, dict):
        return dynamic.get("loss")
    return result.get("dynamic_loss")


def charlm_system(name, flags, corpus, val_path, minutes, run_dir) -> dict:
    """Train with ``charlm train``, then evaluate the saved model on the validation text, statically
    and dynamically (not timed as training)."""
    charlm = [sys.executable, "-m", "charlm"]
    summary, error, wall = _run([*charlm, "train", str(corpus), "--max-minutes", f"{minutes:g}",
                                 "--val-fraction", f"{VAL_FRACTION:g}", *flags, "--json", "-q", "--out", str(run_dir)])
    row = {"name": name, "flags": flags, "wall_seconds": wall}
    if error:
        return {**row, "best_val_nats": None, "tokens": None, "steps": None, "error": error}
    model = summary["model_path"]
    row.update(best_val_nats=summary["best_val_loss"], tokens=summary["tokens_seen"], steps=summary["steps"],
               seconds=summary["seconds"], epochs=summary["epochs"], params=describe(model)["parameters"],
               final_train_nats=summary["final_train_loss"], stopped_by_time=summary["stopped_by_time"],
               validation="history val_loss: B streams from zero state, windows of T, state carried")
    static, error, row["eval_seconds"] = _run([*charlm, "eval", model, str(val_path), "--json"])
    row["eval_val_nats"] = static["loss"] if static else None
    if error:
        row["eval_error"] = error
    dynamic, error, row["dynamic_seconds"] = _run([*charlm, "eval", model, str(val_path), "--dynamic", "--json"])
    row["dynamic_val_nats"] = _dynamic_loss(dynamic) if dynamic else None
    if dynamic and row["dynamic_val_nats"] is None:
        error = f"charlm eval --dynamic --json printed no dynamic loss (keys: {', '.join(dynamic)})"
    if error:
        row["dynamic_error"] = error
    return row


def torch_system(name, kind, corpus, minutes, out_dir, threads, lstm_dropout) -> dict:
    """Train a PyTorch peer in its own process (scripts/torch_peers.py)."""
    argv = [sys.executable, str(Path(__file__).with_name("torch_peers.py")), kind, "--corpus", str(corpus),
            "--minutes", f"{minutes:g}", "--val-fraction", f"{VAL_FRACTION:g}", "--lstm-dropout", f"{lstm_dropout:g}"]
    if out_dir:
        argv += ["--out", str(out_dir)]
    if threads:
        argv += ["--threads", str(threads)]
    result, error, wall = _run(argv)
    if error:
        return {"name": name, "best_val_nats": None, "tokens": None, "steps": None, "wall_seconds": wall,
                "error": error}
    return {"name": name, **result, "wall_seconds": wall}


def _fmt(value, digits=4):
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(minutes, val_chars, systems):
    print(f"tiny-shakespeare: the last {VAL_FRACTION:.0%} ({val_chars:,} characters) validate; "
          f"{minutes:g} minutes of training each, one after another; nats per character")
    print(f"{'system':15s} {'best val':>8s} {'stream':>7s} {'dynamic':>7s} {'sliding':>7s} {'tokens':>12s} "
          f"{'steps':>7s} {'params':>10s} {'train s':>7s}  validated on")
    for s in systems:
        if s.get("error"):
            print(f"{s['name']:15s} FAILED: {s['error']}")
            continue
        print(f"{s['name']:15s} {_fmt(s['best_val_nats']):>8s} {_fmt(s.get('eval_val_nats')):>7s} "
              f"{_fmt(s.get('dynamic_val_nats')):>7s} {_fmt(s.get('sliding_val_nats')):>7s} {s['tokens']:>12,} "
              f"{s['steps']:>7,} {s.get('params', 0):>10,} {s.get('seconds', 0):>7.0f}  {s.get('validation', '')}")
        for key in ("eval_error", "dynamic_error"):
            if s.get(key):
                print(f"{'':15s} {key.split('_')[0]}: {s[key]}")
    print("best val: the best validation while training (read as 'validated on' says); stream: charlm eval "
          "of the saved model, the text as one stream; dynamic: the same with --dynamic; sliding: the GPT's "
          "best weights on windows every 32")
    done = {s["name"]: s for s in systems if s.get("best_val_nats") is not None}
    target = "" if minutes in AHEAD_AT else f"; the target compares at {' and '.join(map(str, AHEAD_AT))} minutes"
    for ours in ("charlm-default", "charlm-best"):
        for peer in ("torch-lstm", "torch-gpt"):
            if ours in done and peer in done:
                ratio = done[ours]["best_val_nats"] / done[peer]["best_val_nats"]
                print(f"{ours} / {peer} best val: {ratio:.3f} ({'ahead' if ratio < 1 else 'behind'}{target})")
    for name, at, most, figure in TARGETS:
        value = done.get(name, {}).get(figure)
        if value is None or minutes != at:
            verdict = "not measured" if value is None else f"this run trained {minutes:g} minutes"
        else:
            verdict = "met" if value <= most else "missed"
        print(f"target {name} {figure} <= {most} after {at} minutes: {_fmt(value)}, {verdict}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training minutes of each system")
    parser.add_argument("--systems", default="a,b,c,d",
                        help="which to run, comma-separated: " + ", ".join(f"{k} {v}" for k, v in SYSTEMS.items()))
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, help="folder to keep each system's run (models, histories) in")
    parser.add_argument("--threads", type=int, help="PyTorch's threads [default: the cores, as TensorFlow's]")
    parser.add_argument("--lstm-dropout", type=float, default=0.2, help="the PyTorch LSTM's dropout")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    letters = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in letters if s not in SYSTEMS]
    if unknown or not letters:
        sys.exit(f"--systems takes letters among {', '.join(SYSTEMS)}, got {args.systems!r}")
    if not args.corpus.exists():
        sys.exit(f"{args.corpus} is absent (tiny-shakespeare lives in ../shared/data/corpora/)")
    if args.minutes <= 0:
        sys.exit(f"--minutes must be positive, got {args.minutes:g}")
    _, val_text = split_text(read_corpus([args.corpus]).text, VAL_FRACTION)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        val_path = write_text(work / "validation.txt", val_text)
        systems = []
        for i, letter in enumerate(letters, 1):
            name = SYSTEMS[letter]
            print(f"[{i}/{len(letters)}] {name}: {args.minutes:g} minutes of training", file=sys.stderr, flush=True)
            if letter in "ab":
                flags = BEST_RECIPE if letter == "b" else []
                row = charlm_system(name, flags, args.corpus, val_path, args.minutes, work / name)
            else:
                out = work / name if args.out else None
                row = torch_system(name, "lstm" if letter == "c" else "gpt", args.corpus, args.minutes, out,
                                   args.threads, args.lstm_dropout)
            systems.append(row)
    if args.json:
        print(json.dumps({"minutes": args.minutes, "systems": systems}))
    else:
        print_table(args.minutes, len(val_text), systems)


if __name__ == "__main__":
    main()
