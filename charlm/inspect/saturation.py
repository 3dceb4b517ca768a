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


class SaturationCounts:
    """Counts of saturated gate values, window by window (:func:`read_windows`'s windows,
    which must hold the values :attr:`gates` of every layer)."""

    def __init__(self, cell: str, layers: int, hidden: int):
        self.cell = cell
        self.gates = GATES[cell]
        self.low, self.high = (-RIGHT, RIGHT) if cell == "rnn" else (LEFT, RIGHT)
        self.left = np.zeros((layers, len(self.gates), hidden), np.int64)  # (layers, gates, H)
        self.right = np.zeros_like(self.left)
        self.tokens = 0

    def add(self, window):
        for layer, values in enumerate(window.values):
            for g, name in enumerate(self.gates):
                self.left[layer, g] += np.count_nonzero(values[name] < self.low, axis=0)
                self.right[layer, g] += np.count_nonzero(values[name] > self.high, axis=0)
        self.tokens += window.at.stop - window.at.start

    def result(self) -> dict:
        """The JSON-ready summary: ``cell``, ``tokens``, ``thresholds``, and ``layers``: per
        layer (bottom first) a dict from gate name to ``{"left": [H fractions], "right": [H
        fractions], "median_left", "median_right"}``."""
        layers = []
        for left, right in zip(self.left / self.tokens, self.right / self.tokens):
            layers.append({name: {"left": l.tolist(), "right": r.tolist(), "median_left": float(np.median(l)),
                                  "median_right": float(np.median(r))}
                           for name, l, r in zip(self.gates, left, right)})
        return {"cell": self.cell, "tokens": self.tokens, "thresholds": {"left": self.low, "right": self.high},
                "layers": layers}


def saturation(lm, text: str) -> dict:
    """Each unit's fraction of ``text``'s tokens at which each gate of each layer of ``lm`` is
    left- and right-saturated (see the module docstring), read window by window; see
    :meth:`SaturationCounts.result` for what it returns."""
    counts = SaturationCounts(lm.config.cell, lm.config.layers, lm.config.hidden)
    for window in read_windows(lm, lm.tokenizer.encode(text), names=counts.gates):
        counts.add(window)
    return counts.result()
