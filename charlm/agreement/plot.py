"""A bar chart of agreement accuracy by condition, attractor count, file or distance, with 95%
intervals and the content-blind baselines beside each bar."""

from __future__ import annotations

from pathlib import Path

from charlm.errors import CharlmError
from charlm.plotting import plt, save_figure  # pyplot on the file-only backend

GROUPINGS = {"condition": "by_condition", "attractors": "by_attractors", "file": "by_file"}
# Distance is drawn in two panels, one a unit: (summary key, axis label).
DISTANCE_PANELS = (("by_distance", "distance from subject to verb (words)"),
                   ("by_char_distance", "distance from subject to verb (characters)"))
_MARKERS = {"always_singular": ("v", "always singular"), "always_plural": ("^", "always plural"),
            "shorter_form": ("D", "shorter form")}


def choose_grouping(summary: dict, by: str = "auto") -> str:
    """``by`` itself, or for ``auto`` the first of condition, attractors, file with
    more than one group (condition if none has)."""
    if by != "auto":
        return by
    for name in ("condition", "attractors", "file"):
        if len(summary[GROUPINGS[name]]) > 1:
            return name
    return "condition" if summary["by_condition"] else "file"


def plot_summary(summary: dict, path, by: str = "auto", title: str | None = None) -> Path:
    """Draw ``summary`` (from :func:`charlm.agreement.stats.summarize`) to the PNG
    ``path``, written atomically; returns the path. ``by`` ``distance`` draws two panels,
    accuracy by distance in words and in characters."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CharlmError(f"--plot writes a PNG; give a file name ending in .png, not {path.name}")
    if not path.parent.is_dir():
        raise CharlmError(f"--plot: directory {path.parent} does not exist")
    by = choose_grouping(summary, by)
    if by == "distance":
        if "by_distance" not in summary:
            raise CharlmError("--plot-by distance: no item gives its subject's position (a subject_index column)")
        panels = [(summary[key], label) for key, label in DISTANCE_PANELS]
    else:
        panels = [(summary[GROUPINGS[by]], by)]
    widths = [max(4.0, 0.7 * (len(groups) + 1) + 1) for groups, _ in panels]
    figure, axes = plt.subplots(1, len(panels), figsize=(sum(widths) + 2, 4.5), squeeze=False,
                                gridspec_kw={"width_ratios": widths})
    for ax, (groups, label) in zip(axes[0], panels):
        _bars(ax, {**groups, "all": summary}, label, file_names=by == "file")
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.suptitle(title or f"agreement accuracy by {by}")
    figure.tight_layout()
    return save_figure(figure, path)


def _bars(axes, groups: dict, xlabel: str, file_names: bool = False) -> None:
    """One bar a group with its 95% interval, and the baselines as markers."""
    names = list(groups)
    labels = [Path(n).stem if file_names and n != "all" else n for n in names]
    acc = [groups[n]["accuracy"] for n in names]
    low = [a - groups[n]["ci95"][0] for a, n in zip(acc, names)]
    high = [groups[n]["ci95"][1] - a for a, n in zip(acc, names)]
    positions = range(len(names))
    axes.bar(positions, acc, color="#4c72b0", yerr=[low, high], capsize=3, label="model (95% interval)")
    for key, (marker, label) in _MARKERS.items():
        xs = [x for x, n in zip(positions, names) if groups[n]["baselines"][key] is not None]
        ys = [groups[n]["baselines"][key] for n in names if groups[n]["baselines"][key] is not None]
        if xs:
            axes.scatter(xs, ys, marker=marker, color="#dd8452" if "always" in key else "#55a868",
                         zorder=3, label=label, edgecolors="black", linewidths=0.5)
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_ylim(0, 1.05)
    axes.set_xlabel(xlabel)
    axes.set_xticks(list(positions), [f"{label}\n(n={groups[n]['n']})" for label, n in zip(labels, names)],
                    rotation=30 if len(names) > 5 else 0, ha="right" if len(names) > 5 else "center", fontsize=8)
