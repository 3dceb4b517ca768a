"""Pictures of what the inspection tools measure: gate saturation and feature correlations."""

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
