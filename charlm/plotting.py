"""Pictures of training runs (``charlm plot``): loss against steps and tokens seen.

Reads a run directory's ``history.json`` (one row per epoch: training and
validation loss, and any accuracy columns observers added, e.g. agreement
accuracy) and, when the run wrote one, ``steps.csv`` (the training loss of every
step, see :class:`charlm.training.observers.StepLogObserver`). Several run directories share
one figure, one colour per run, to compare them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from charlm.errors import CharlmError
from charlm.fileio import atomic_path

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

FORMATS = (".png", ".svg", ".pdf")


@dataclass
class RunCurves:
    """What one run directory says about its training."""

    name: str
    history: list[dict]  # one row per epoch
    steps: list[int] = field(default_factory=list)  # per-step log, when present
    tokens: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)

    def accuracy_columns(self) -> list[str]:
        """History columns holding accuracies (agreement and the like), in order of appearance."""
        names = []
        for row in self.history:
            for key, value in row.items():
                if "accuracy" in key and _number(value) and key not in names:
                    names.append(key)
        return names


def read_run(run_dir) -> RunCurves:
    """The curves of one run directory; one-line errors for anything that is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CharlmError(f"run directory not found: {run_dir}")
    path = run_dir / "history.json"
    if not path.exists():
        raise CharlmError(f"{run_dir} has no history.json; give the directory of a charlm training run")
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CharlmError(f"cannot read {path}: {error}") from None
    if not isinstance(history, list) or not history or not all(isinstance(r, dict) and "step" in r for r in history):
        raise CharlmError(f"{path} holds no epochs yet; plot the run once it has finished an epoch")
    curves = RunCurves(run_dir.resolve().name, history)
    _read_step_log(run_dir / "steps.csv", curves)
    return curves


def _read_step_log(path: Path, curves: RunCurves):
    if not path.exists():
        return
    rows = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:  # the last line of a log being written may be incomplete
                    rows[int(row["step"])] = (int(row["tokens_seen"]), float(row["loss"]))
                except (KeyError, TypeError, ValueError):
                    continue
    except OSError:
        return
    for step in sorted(rows):  # a step logged twice (a resumed run): the last line wins
        curves.steps.append(step)
        curves.tokens.append(rows[step][0])
        curves.loss.append(rows[step][1])


def plot_runs(run_dirs, out=None, title: str | None = None) -> Path:
    """Draw the runs in ``run_dirs`` (one or more run directories) into the image file ``out``
    (.png, .svg or .pdf; default ``<first run>/curves.png``), written atomically. Returns its path.

    Top row: training loss (per step when the run logged it, smoothed, else per epoch) and
    validation loss (per epoch), against steps (left) and tokens seen (right). A second row
    shows accuracy columns of the history (agreement accuracy) when any run has one.
    """
    runs = [read_run(d) for d in ([run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs)]
    if not runs:
        raise CharlmError("give at least one run directory")
    out = Path(out) if out else Path(run_dirs if isinstance(run_dirs, (str, Path)) else run_dirs[0]) / "curves.png"
    if out.suffix.lower() not in FORMATS:
        raise CharlmError(f"-o {out}: the image must end in {', '.join(FORMATS)}")
    if out.is_dir():
        raise CharlmError(f"-o {out} is a directory; give an image file name")
    if not out.parent.is_dir():
        raise CharlmError(f"-o {out}: directory {out.parent} does not exist")

    accuracies = sorted({c for run in runs for c in run.accuracy_columns()})
    rows = 2 if accuracies else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.2 * rows), squeeze=False, sharex="col",
                             constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, run in enumerate(runs):
        colour = colours[index % len(colours)]
        label = run.name if len(runs) > 1 else None
        for column, x_key in enumerate(("step", "tokens_seen")):
            _draw_losses(axes[0][column], run, x_key, colour, label, show_raw=len(runs) == 1)
            for style, name in zip(("-", "--", ":", "-."), accuracies):
                xs, ys = _column(run.history, x_key, name)
                if xs:
                    axes[1][column].plot(xs, ys, style, marker="o", color=colour, ms=4,
                                         label=f"{run.name}: {name}" if len(runs) > 1 else name)
    for column, x_label in enumerate(("training steps", "tokens seen")):
        for ax in (row[column] for row in axes):
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 15k, 2M: readable at a glance
        ax = axes[0][column]
        ax.set_xlabel(x_label)
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        _legend(ax, runs)
        if accuracies:
            ax = axes[1][column]
            ax.set_xlabel(x_label)
            ax.set_ylabel("accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title or (runs[0].name if len(runs) == 1 else f"{len(runs)} runs"))
    return save_figure(fig, out)


def _draw_losses(ax, run: RunCurves, x_key: str, colour, label, show_raw: bool):
    if run.steps:
        xs = run.steps if x_key == "step" else run.tokens
        if show_raw:
            ax.plot(xs, run.loss, color=colour, alpha=0.2, lw=0.8)
        ax.plot(xs, _smooth(run.loss), color=colour, lw=1.3, alpha=0.9)
    else:
        xs, ys = _column(run.history, x_key, "train_loss")
        ax.plot(xs, ys, "--", marker=".", color=colour, alpha=0.8)
    xs, ys = _column(run.history, x_key, "val_loss")
    ax.plot(xs, ys, "-", marker="o", color=colour, lw=2, ms=5, label=label)


def _legend(ax, runs):
    handles = [Line2D([], [], color="0.3", lw=1.3, label="training"),
               Line2D([], [], color="0.3", lw=2, marker="o", ms=5, label="validation")]
    if len(runs) > 1:
        handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8)


def _column(history, x_key, y_key):
    points = [(r[x_key], r[y_key]) for r in history if _number(r.get(x_key)) and _number(r.get(y_key))]
    return [p[0] for p in points], [p[1] for p in points]


def _smooth(values, fraction: float = 0.02):
    """An exponential moving average spanning about ``fraction`` of the points, bias-corrected."""
    alpha = 1.0 / max(1.0, fraction * len(values))
    out, average, weight = [], 0.0, 0.0
    for value in values:
        average = (1 - alpha) * average + alpha * value
        weight = (1 - alpha) * weight + alpha
        out.append(average / weight)
    return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def save_figure(figure, path: Path) -> Path:
    """Write a matplotlib ``figure`` to ``path`` (its format from the suffix) atomically, and
    close it."""
    path = Path(path)
    try:
        with atomic_path(path, fsync=False) as tmp:
            figure.savefig(tmp, dpi=110, format=path.suffix[1:].lower())
    finally:
        plt.close(figure)
    return path
