"""Gate saturation: how often each unit's gate is nearly shut or nearly open.

A gate value is left-saturated below 0.1 and right-saturated above 0.9, the definition of
Karpathy, Johnson & Fei-Fei (2015). A forget gate that is right-saturated most of the time
keeps its cell's content over long stretches (an integrator); one that is often
left-saturated resets it. The gates are an LSTM's i, f and o and a GRU's z and r; a
SimpleRNN has no gates, so its h is counted instead, saturated where |h| > 0.9 (left below
-0.9, right above 0.9).
"""

from __future__ import annotations

import numpy as np

from charlm.inspect.activations import read_windows

LEFT, RIGHT = 0.1, 0.9
GATES = {"lstm": ("i", "f", "o"), "gru": ("z", "r"), "rnn": ("h",)}


def saturation(lm, text: str) -> dict:
    """Each unit's fraction of ``text``'s tokens at which each gate of each layer of ``lm`` is
    left- and right-saturated (see the module docstring), read window by window.

    Returns a JSON-ready dict: ``cell``, ``tokens``, ``thresholds``, and ``layers``: per layer
    (bottom first) a dict from gate name to ``{"left": [H fractions], "right": [H fractions],
    "median_left", "median_right"}``.
    """
    cell = lm.config.cell
    gates = GATES[cell]
    ids = lm.tokenizer.encode(text)
    low, high = (-RIGHT, RIGHT) if cell == "rnn" else (LEFT, RIGHT)
    left = np.zeros((lm.config.layers, len(gates), lm.config.hidden), np.int64)
    right = np.zeros_like(left)
    for window in read_windows(lm, ids, names=gates):
        for layer, values in enumerate(window.values):
            for g, name in enumerate(gates):
                left[layer, g] += np.count_nonzero(values[name] < low, axis=0)
                right[layer, g] += np.count_nonzero(values[name] > high, axis=0)
    n = len(ids)
    layers = []
    for layer in range(lm.config.layers):
        per_gate = {}
        for g, name in enumerate(gates):
            fractions_left, fractions_right = left[layer, g] / n, right[layer, g] / n
            per_gate[name] = {"left": fractions_left.tolist(), "right": fractions_right.tolist(),
                              "median_left": float(np.median(fractions_left)),
                              "median_right": float(np.median(fractions_right))}
        layers.append(per_gate)
    return {"cell": cell, "tokens": n, "thresholds": {"left": low, "right": high}, "layers": layers}
