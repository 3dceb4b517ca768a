"""Pictures of what the inspection tools measure: gate saturation, feature correlations, gradient curves
and unit ablation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charlm.errors import CharlmError
from charlm.inspect.activations import NAMES
from charlm.plotting import plt, save_figure  # pyplot on the file-only backend


def check_png(path) -> Path:
    """``path`` as a PNG to write, or a one-line error before any work is done."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise CharlmError(f"--plot writes a PNG; give a file name ending in .png, not {path.name}")
    if not path.parent.is_dir():
        raise CharlmError(f"--plot: directory {path.parent} does not exist")
    return path


def plot_saturation(result: dict, path, title: str | None = None) -> Path:
    """Karpathy's saturation scatter of :func:`charlm.inspect.saturation.saturation`'s result:
    a panel per layer (rows) and gate (columns), a point per unit at (fraction left-saturated,
    fraction right-saturated)."""
    path = check_png(path)
    layers = result["layers"]
    gates = list(layers[0])
    figure, axes = plt.subplots(len(layers), len(gates), figsize=(3.2 * len(gates), 3.1 * len(layers)),
                                squeeze=False, constrained_layout=True)
    for row, per_gate in enumerate(layers):
        for column, gate in enumerate(gates):
            ax = axes[row][column]
            ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)  # left + right = 1: always saturated
            ax.scatter(per_gate[gate]["left"], per_gate[gate]["right"], s=9, alpha=0.6, color="#4c72b0")
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            name = NAMES[gate] if result["cell"] != "rnn" else "h, |h| > 0.9"
            ax.set_title(f"layer {row + 1}: {name}", fontsize=9)
            ax.set_xlabel(f"fraction left-saturated (< {result['thresholds']['left']:g})", fontsize=8)
            ax.set_ylabel(f"fraction right-saturated (> {result['thresholds']['right']:g})", fontsize=8)
            ax.grid(alpha=0.3)
    figure.suptitle(title or f"{result['cell'].upper()} gate saturation over {result['tokens']:,} tokens")
    return save_figure(figure, path)


def plot_features(result: dict, path, title: str | None = None) -> Path:
    """The units that track each feature of :func:`charlm.inspect.features.feature_correlations`'
    result: a panel per feature with every unit's correlation, sorted, and the strongest named."""
    path = check_png(path)
    features = result["features"]
    columns = min(3, len(features))
    rows = -(-len(features) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False,
                                constrained_layout=True)
    for index, feature in enumerate(features):
        ax = axes[index // columns][index % columns]
        entry = result["by_feature"][feature]
        for name, per_layer in entry["correlations"].items():
            for layer, values in enumerate(per_layer):
                r = np.sort(np.array([v for v in values if v is not None]))[::-1]
                ax.plot(np.arange(len(r)), r, lw=1.2, label=f"{name}, layer {layer + 1}")
        for best in entry["top"][:3]:
            ax.annotate(f"{best['layer']}:{best['unit']} ({best['r']:+.2f})", xy=(0.02, 0), xycoords="axes fraction",
                        fontsize=7, xytext=(0.02, 0.9 - 0.08 * entry["top"].index(best)), textcoords="axes fraction")
        if not entry["top"]:
            ax.text(0.5, 0.5, "does not vary in this text", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color="0.4")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_ylim(-1.02, 1.02)
        ax.set_title(feature.replace("_", " "), fontsize=9)
        ax.set_xlabel("units, by correlation", fontsize=8)
        ax.set_ylabel("Pearson r", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for index in range(len(features), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.suptitle(title or f"unit correlations with text features over {result['tokens']:,} tokens")
    return save_figure(figure, path)


def plot_gradients(results: list, path, title: str | None = None) -> Path:
    """The vanishing-gradient curves of :func:`charlm.inspect.gradients.gradient_curve`'s results
    (each with its ``model``), all on one log-scale figure: a line per model, layer and state (h
    solid, an LSTM's c dashed), the lag where each first falls to 1/10 of its value at lag 0
    marked with a circle, to 1/100 with a square."""
    path = check_png(path)
    figure, ax = plt.subplots(figsize=(8.5, 5.2), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    layer_color = {}  # (model, layer) -> color index: a layer's h and c share a color
    for number, result in enumerate(results):
        name = f"{_model_name(result)}: " if len(results) > 1 else ""
        for curve in result["curves"]:
            norm = np.asarray(curve["norm"], dtype=float)
            shown = np.where(norm > 0, norm, np.nan)  # a log scale has no zero
            lags = np.arange(len(norm))
            color = colors[layer_color.setdefault((number, curve["layer"]), len(layer_color)) % len(colors)]
            ax.plot(lags, shown, color=color, lw=1.4, ls="-" if curve["state"] == "h" else "--",
                    label=f"{name}layer {curve['layer']} {curve['state']}")
            for key, marker in (("lag_10", "o"), ("lag_100", "s")):
                if curve[key] is not None and np.isfinite(shown[curve[key]]):
                    ax.plot([curve[key]], [shown[curve[key]]], marker=marker, color=color, ms=6, mfc="none", mew=1.4)
    ax.plot([], [], "o", color="0.3", mfc="none", label="falls to 1/10 of lag 0")
    ax.plot([], [], "s", color="0.3", mfc="none", label="falls to 1/100 of lag 0")
    ax.set_yscale("log")
    ax.set_xlabel(r"lag $k$ (0: the state after reading $x_{t-1}$, which predicts $x_t$)")
    ax.set_ylabel(r"mean $\|\partial \log p(x_t) \,/\, \partial\, \mathrm{state}_{t-k}\|$")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2 if len(layer_color) > 6 else 1)
    positions = sorted({len(result["positions"]) for result in results})
    ax.set_title(title or r"gradient of $\log p(x_t)$ with respect to the state $k$ tokens back "
                          f"(mean over {'/'.join(map(str, positions))} positions)", fontsize=10)
    return save_figure(figure, path)


def _model_name(result: dict) -> str:
    """How a figure names a model: its file's name, or its run directory's for a run's
    ``model.keras``, and its cell ("lstm/ (LSTM)")."""
    path = Path(str(result["model"]))
    name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    return f"{name} ({result['cell'].upper()})"


TRACE_STYLES = {"SS": ("#4c72b0", "-"), "SP": ("#4c72b0", "--"), "PS": ("#c44e52", "--"), "PP": ("#c44e52", "-")}


def plot_ablation(result: dict, path, title: str | None = None, shown: int = 16) -> Path:
    """The figures of :func:`charlm.inspect.ablation_study.ablation_study`'s result (with its
    ``traces``, when present, from :func:`charlm.inspect.number_traces.number_traces`): the null's
    effects with the first ranked units marked; the ``shown`` first units' accuracy change per
    group; the cumulative curve beside random sets and whole-layer ablation; then a row per traced
    unit, its values per word averaged per subject × attractor number (Lakretz et al.'s figure)."""
    path = check_png(path)
    traces = result.get("traces")
    names = traces["shown"] if traces else []
    columns = max(4, len(names))
    rows = 1 + (len(traces["units"]) if traces else 0)
    figure = plt.figure(figsize=(4.0 * columns, 3.6 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows, columns)
    _plot_null(figure.add_subplot(grid[0, 0]), result)
    _plot_groups(figure.add_subplot(grid[0, 1:columns - 1]), result, shown)
    _plot_cumulative(figure.add_subplot(grid[0, columns - 1]), result)
    for row, unit in enumerate(traces["units"] if traces else [], 1):
        for column, name in enumerate(names):
            ax = figure.add_subplot(grid[row, column])
            for group, values in unit["values"][name].items():
                color, style = TRACE_STYLES[group]
                ax.plot(values, color=color, ls=style, marker=".", lw=1.4, label=f"{group} (n={traces['n'][group]})")
            for at in (traces["subject_index"], traces["verb_index"]):
                ax.axvline(at, color="0.7", lw=0.8)
            ax.set_xticks(range(len(traces["words"])))
            ax.set_xticklabels(traces["words"], rotation=45, ha="right", fontsize=7)
            ax.set_title(f"unit {unit['layer']}:{unit['unit']}: {NAMES[name]}", fontsize=9)
            ax.grid(alpha=0.3)
            if column == 0:
                ax.legend(fontsize=7)
    method = result["method"]["kind"]
    figure.suptitle(title or f"{result['cell'].upper()} {result['layers']}x{result['hidden']}: units ablated "
                             f"({method}) on {result['n']:,} items"
                    + (f"; traces: {traces['condition']} (the words of one of its items)" if traces else ""))
    return save_figure(figure, path)


def _effect_label(result: dict) -> str:
    return ("accuracy change on the unit's worst group" if result["rank_by"] == "worst"
            else "accuracy change, all items")


def _plot_null(ax, result: dict) -> None:
    """A histogram of the null's effects, the first ranked units marked."""
    null = result["null"]["effects"]
    if null:
        ax.hist(null, bins=min(40, max(5, len(null) // 4)), color="0.7", label=f"{result['null']['kind']} ({len(null)})")
    for rank, unit in enumerate(result["units"][:5]):
        ax.axvline(unit["effect"], color=plt.cm.viridis(rank / 5), lw=1.4, label=f"{unit['layer']}:{unit['unit']}")
    ax.set_xlabel(_effect_label(result), fontsize=8)
    ax.set_ylabel("units", fontsize=8)
    ax.set_title("ranked units against the null", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _plot_groups(ax, result: dict, shown: int) -> None:
    """A heat map of the first ``shown`` ranked units' accuracy change per group."""
    units = result["units"][:shown]
    groups = list(result["baseline"]["groups"])
    change = np.array([[unit["groups"][g] for g in groups] for unit in units]).reshape(len(units), len(groups))
    limit = max(0.05, float(np.abs(change).max())) if change.size else 1.0
    image = ax.imshow(change, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_yticks(range(len(units)))
    ax.set_yticklabels([f"{u['layer']}:{u['unit']}" for u in units], fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=60, ha="right", fontsize=6)
    ax.set_title("accuracy change per condition/subject number/attractors", fontsize=9)
    plt.colorbar(image, ax=ax, shrink=0.8)


def _plot_cumulative(ax, result: dict) -> None:
    """Accuracy with the first k ranked units ablated, beside random sets of k and whole layers."""
    cumulative = result["cumulative"]
    ks = cumulative["k"]
    ax.axhline(result["baseline"]["accuracy"], color="0.3", lw=1, label="intact")
    if ks:
        ax.plot(ks, [t["accuracy"] for t in cumulative["top"]], "o-", color="#c44e52", label="first k ranked")
        random = [r for r in cumulative["random"] if r]
        if random:
            ax.fill_between(ks, [min(r) for r in random], [max(r) for r in random], color="0.6", alpha=0.35)
            ax.plot(ks, [np.mean(r) for r in random], "s--", color="0.4", label="random k (range)")
        ax.set_xscale("log", base=2)
    for layer in result["layers_ablated"]:
        ax.axhline(layer["accuracy"], ls=":", color=plt.cm.tab10(layer["layer"] % 10),
                   label=f"all of layer {layer['layer']}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("units ablated together, k", fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_title("cumulative ablation", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_probe(result: dict, path, title: str | None = None) -> Path:
    """The figures of ``charlm probe``'s result: probe accuracy on the held-out lemmas against
    position (a line per layer and value, colour by value, line style by layer) beside the
    majority baseline; the same probes' selectivity; and with ``intervention``, agreement
    against the push's size for each layer and placement, the probe's direction beside random
    ones."""
    path = check_png(path)
    intervention = result.get("intervention")
    panels = 3 if intervention else 2
    figure, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 4.8), constrained_layout=True)
    positions = result["positions"]
    x = np.arange(len(positions))
    index = {p["name"]: k for k, p in enumerate(positions)}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    values = list(dict.fromkeys(e["value"] for e in result["probes"]))
    styles = ["-", "--", ":", "-."]
    for ax, key in zip(axes, ("accuracy", "selectivity")):
        lines = {}
        for entry in result["probes"]:
            lines.setdefault((entry["layer"], entry["value"]), []).append((index[entry["position"]], entry[key]))
        for (layer, value), points in lines.items():
            points = [(k, v) for k, v in points if v is not None]
            ax.plot([k for k, _ in points], [v for _, v in points], marker="o", ms=3, lw=1.3,
                    color=colors[values.index(value) % len(colors)], ls=styles[(layer - 1) % len(styles)],
                    label=f"layer {layer} {value}")
        if key == "accuracy":
            ax.plot(x, [p["majority"]["accuracy"] for p in positions], color="0.5", lw=2.5, alpha=0.6,
                    label="majority baseline")
            ax.set_ylabel("probe accuracy on held-out lemmas")
        else:
            ax.axhline(0, color="0.6", lw=0.8)
            ax.set_ylabel("selectivity (accuracy - control accuracy)")
        ax.set_xticks(x, [p["name"].replace("_", " ") for p in positions], rotation=30, ha="right", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    if intervention:
        _plot_intervention(axes[2], intervention, colors)
    figure.suptitle(title or f"subject number in a {result['layers']}x{result['units']} {result['cell'].upper()}: "
                             f"{result['split']['test_items']:,} held-out items")
    return save_figure(figure, path)


def _plot_intervention(ax, intervention: dict, colors):
    for number, layer in enumerate(intervention["layers"]):
        baseline = layer["baseline"]["accuracy"]
        for where, marker in (("subject", "o"), ("every_word", "s")):
            for kind, style in (("probe", "-"), ("random", ":")):
                entries = [e for e in layer["conditions"] if e["where"] == where and e["direction"] == kind]
                ax.plot([0] + [e["alpha"] for e in entries], [baseline] + [e["accuracy"] for e in entries],
                        marker=marker, ms=4, ls=style, color=colors[number % len(colors)],
                        label=f"layer {layer['layer']}, {where.replace('_', ' ')}, {kind}")
    ax.set_xlabel("push (alpha x the state's mean norm)")
    ax.set_ylabel("agreement accuracy on held-out items")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
