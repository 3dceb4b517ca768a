"""Which recurrent cell is best? SimpleRNN, LSTM and GRU of the same size, each trained the same
number of minutes on the bundled agreement corpus, then compared on everything charlm measures.

For each cell (2 layers x 256 units, embedding 64, --batch-size 16 --bptt 128, as
scripts/bench_agreement.py trains its LSTM, seed 0), trained --minutes minutes of wall clock:

    val_bits_per_char   the best validation loss, bits per character
    agreement           `charlm agree` on the bundled suites: overall, by attractors, by distance
    gradient lag        `charlm gradients`: the lag at which each layer's dL/dh falls to 1/10
    probe               `charlm probe`: the best layer and representation's accuracy at decoding
                        the subject's number just before the verb, on held-out lemmas
    units               `charlm units --ablate`: the strongest units' effects on agreement, and
                        whole-layer ablation

Each analysis runs as the user runs it, as a command with --json; the figures come from
that JSON. One table on stdout (or --json: {"minutes", "cells": {cell: {...}}}) and one figure
(--plot, default cells.png in --out).

    python scripts/bench_cells.py                    # 10 minutes a cell, about 45 minutes in all
    python scripts/bench_cells.py --minutes 1 --json
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

CORPUS = REPO / "corpora" / "agreement" / "data" / "train.txt"
SUITE = REPO / "corpora" / "agreement" / "data" / "agreement.tsv"
CELLS = ("rnn", "lstm", "gru")
NAMES = {"rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}
# No dropout and a constant rate, as the figures in BENCHMARKS.md were measured (not charlm's defaults).
SETTINGS = dict(layers=2, hidden=256, embedding=64, dropout=0.0, batch_size=16, bptt=128, lr=2e-3,
                lr_schedule="constant", seed=0)


def log(line):
    print(line, file=sys.stderr, flush=True)


def charlm_json(*args) -> dict:
    """Run `charlm ARGS --json` and return what it printed; exit with its error line if it failed."""
    command = [sys.executable, "-m", "charlm", *map(str, args), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        lines = result.stderr.strip().splitlines() or ["(nothing on stderr)"]
        raise SystemExit(f"bench: `charlm {' '.join(map(str, args))}` failed: {lines[-1]}")
    return json.loads(result.stdout)


def train(cell: str, minutes: float, folder: Path) -> dict:
    import charlm

    started = time.perf_counter()
    summary = charlm.train(CORPUS, folder / cell, progress=False, log=lambda line: None, cell=cell,
                           epochs=1000, max_minutes=minutes, **SETTINGS)
    log(f"bench: {NAMES[cell]} trained {summary['steps']} steps in {time.perf_counter() - started:.0f} s, "
        f"best val {summary['best_val_bits_per_char']:.4f} bits/char")
    return summary


def measure(cell: str, summary: dict) -> dict:
    """Every figure of one trained model, from the commands' JSON."""
    model = summary["model_path"]
    agree = charlm_json("agree", model, SUITE)
    gradients = charlm_json("gradients", model)
    probe = charlm_json("probe", model, SUITE)
    # A shorter study than the command's default (64 ranked units, 32 random ones), so that three
    # cells fit beside their training: the ranking still ablates the 16 strongest candidates.
    units = charlm_json("units", model, SUITE, "--ablate", "--top-k", 16, "--random-units", 16,
                        "--random-sets", 1, "--traces", 0)
    return {
        "steps": summary["steps"],
        "tokens_per_s": summary["tokens_per_s"],
        "val_bits_per_char": summary["best_val_bits_per_char"],
        "agreement": agree["accuracy"],
        "agreement_ci95": agree["ci95"],
        "by_attractors": {k: v["accuracy"] for k, v in agree["by_attractors"].items()},
        "by_distance": {k: v["accuracy"] for k, v in agree.get("by_distance", {}).items()},
        "by_condition": {k: v["accuracy"] for k, v in agree["by_condition"].items()},
        "gradient_lag_10": {f"{c['layer']}{c['state']}": c["lag_10"] for c in gradients["models"][0]["curves"]},
        "gradient_curves": gradients["models"][0]["curves"],
        "probe": probe_before_verb(probe),
        # the best layer and value's accuracy at each aligned position, before the subject to before the verb
        "probe_by_position": {position["label"]: probe["best"][position["name"]]["accuracy"]
                              for position in probe["positions"]},
        "ablation": strongest_units(units),
    }


def probe_before_verb(probe: dict) -> dict:
    """The best (layer, representation) at the position just before the verb."""
    best = max((row for row in probe["probes"] if row["position"] == "before_verb"), key=lambda row: row["accuracy"])
    return {"layer": best["layer"], "representation": best["value"], "accuracy": best["accuracy"],
            "ci95": best["ci95"], "selectivity": best["selectivity"]}


def strongest_units(units: dict) -> dict:
    """The three units whose ablation costs most agreement overall (with their z-scores against
    random units' effects), and each whole layer ablated."""
    ranked = sorted(units["units"], key=lambda unit: unit["change"])[:3]
    return {"method": units["method"]["kind"],
            "top": [{"layer": u["layer"], "unit": u["unit"], "change": u["change"], "worst_group": u["worst_group"],
                     "worst_change": u["worst_change"], "z": u["z"]} for u in ranked],
            "layers": {str(layer["layer"]): layer["accuracy"] for layer in units["layers_ablated"]}}


def table(report: dict) -> str:
    cells = report["cells"]
    columns = [NAMES[c] for c in cells]
    rows = [("steps", lambda r: f"{r['steps']:,}"),
            ("validation bits/char", lambda r: f"{r['val_bits_per_char']:.3f}"),
            ("agreement", lambda r: f"{r['agreement']:.3f}")]
    attractors = sorted({k for r in cells.values() for k in r["by_attractors"]}, key=_bucket_order)
    rows += [(f"  {k} attractors", _lookup("by_attractors", k)) for k in attractors]
    distances = list(dict.fromkeys(k for r in cells.values() for k in r["by_distance"]))
    rows += [(f"  distance {k}", _lookup("by_distance", k)) for k in distances]
    lags = list(dict.fromkeys(k for r in cells.values() for k in r["gradient_lag_10"]))
    rows += [(f"gradient 1/10 lag, layer {k[:-1]} {k[-1]}", lambda r, k=k: _text(r["gradient_lag_10"].get(k)))
             for k in lags]
    rows += [("probe before the verb", lambda r: f"{r['probe']['accuracy']:.3f} "
                                                 f"(L{r['probe']['layer']} {r['probe']['representation']})"),
             ("  selectivity", lambda r: _text(r["probe"].get("selectivity"))),
             ("strongest unit's ablation", lambda r: "{:+.3f} (L{}:{})".format(
                 r["ablation"]["top"][0]["change"], r["ablation"]["top"][0]["layer"], r["ablation"]["top"][0]["unit"])),
             ("whole layer 1 ablated", lambda r: _text(r["ablation"]["layers"].get("1"))),
             ("whole layer 2 ablated", lambda r: _text(r["ablation"]["layers"].get("2")))]
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"{report['minutes']:g} minutes a cell, 2 x 256, on the bundled agreement corpus",
             " " * width + "".join(f"{c:>22}" for c in columns)]
    for name, cell_text in rows:
        lines.append(f"{name:<{width}}" + "".join(f"{cell_text(r):>22}" for r in cells.values()))
    return "\n".join(lines)


def _lookup(group, key):
    return lambda r: _text(r[group].get(key))


def _text(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _bucket_order(key: str):
    return (0, int(key)) if key.isdigit() else (1, key)


def plot(report: dict, path: Path) -> Path:
    from charlm.plotting import plt, save_figure

    cells = report["cells"]
    figure, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    names = [NAMES[c] for c in cells]
    axes[0].bar(names, [r["val_bits_per_char"] for r in cells.values()], color=["C0", "C1", "C2"])
    axes[0].set_ylabel("validation bits per character")
    axes[0].set_ylim(bottom=min(r["val_bits_per_char"] for r in cells.values()) * 0.9)
    for axis, group, label in ((axes[1], "by_attractors", "attractors"), (axes[2], "by_distance", "distance")):
        for k, (cell, r) in enumerate(cells.items()):
            keys = [key for key in r[group] if key != "unknown"]
            axis.plot(range(len(keys)), [r[group][key] for key in keys], "o-", color=f"C{k}", label=NAMES[cell])
            axis.set_xticks(range(len(keys)), keys, rotation=30 if group == "by_distance" else 0)
        axis.axhline(0.5, color="grey", lw=0.8, ls=":")
        axis.set_ylim(0, 1.02)
        axis.set_xlabel(label)
        axis.set_ylabel("agreement accuracy")
        axis.legend()
    for k, (cell, r) in enumerate(cells.items()):
        for curve in r["gradient_curves"]:
            if curve["state"] != "h":
                continue
            norm = curve["norm"]
            axes[3].semilogy(range(len(norm)), [n / norm[0] for n in norm], color=f"C{k}",
                             ls="-" if curve["layer"] == 1 else "--", label=f"{NAMES[cell]} layer {curve['layer']}")
    axes[3].set_ylim(1e-8, 2)
    axes[3].set_xlabel("lag (tokens)")
    axes[3].set_ylabel("|dlog p / dh|, relative to lag 0")
    axes[3].legend(fontsize=7)
    for k, (cell, r) in enumerate(cells.items()):
        labels = [_short_position(label) for label in r["probe_by_position"]]
        axes[4].plot(range(len(labels)), list(r["probe_by_position"].values()), "o-", color=f"C{k}", label=NAMES[cell])
        axes[4].set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    axes[4].set_ylim(0.4, 1.02)
    axes[4].set_ylabel("number probe, best layer and value")
    axes[4].legend()
    figure.suptitle(f"SimpleRNN, LSTM and GRU, 2 x 256, {report['minutes']:g} minutes each on the bundled corpus")
    figure.tight_layout()
    return save_figure(figure, path)


def _short_position(label: str) -> str:
    """"between subject and verb, 0-25% of the way" -> "0-25%"; other labels as they are."""
    return label.split(", ")[1].replace(" of the way", "") if label.startswith("between") else label


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Training minutes per cell.")
    parser.add_argument("--cells", default=",".join(CELLS), help="Comma-separated cells to compare.")
    parser.add_argument("--out", help="Directory to keep the runs in (default: a temporary one).")
    parser.add_argument("--plot", help="The figure's PNG (default: cells.png in --out, none without --out).")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON object.")
    parser.add_argument("--replot", help="Draw --plot (and print the table) from a --json report instead of training.")
    args = parser.parse_args()
    if args.replot:
        report = json.loads(Path(args.replot).read_text())
        if args.plot:
            plot(report, Path(args.plot))
        print(table(report))
        return
    cells = [c.strip() for c in args.cells.split(",")]
    if not set(cells) <= set(CELLS):
        raise SystemExit(f"bench: --cells takes {', '.join(CELLS)}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.out or scratch)
        report = {"minutes": args.minutes, "cells": {}}
        for cell in cells:
            summary = train(cell, args.minutes, folder)
            report["cells"][cell] = measure(cell, summary)
            log(f"bench: {NAMES[cell]} measured")
        figure = args.plot or (str(folder / "cells.png") if args.out else None)
        if figure:
            plot(report, Path(figure))
            log(f"bench: figure {figure}")
    if args.json:
        print(json.dumps(report))
    else:
        print(table(report))


if __name__ == "__main__":
    main()
