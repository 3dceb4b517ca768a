"""Lakretz et al.'s (2019) picture of a number unit: a unit's cell state and gates at each word
of a sentence, averaged over the items of each combination of subject number and attractor
number (SS, SP, PS, PP: singular or plural subject, singular or plural attractor).

Items are aligned word by word, so only items of one word layout are averaged: one condition,
the same number of words in the prefix and the subject's head noun at the same index
(``Item.subject_index``). An item's attractor number is its subject's when it counts no attractor
and the other number when it counts one (the bundled grammar's attractors are the intervening
nouns of the other number); items with more attractors are left out, since their intervening
nouns need not share a number. The layout shown is the one whose smallest group is largest.

Each item is read as the agreement scorer reads it (:class:`~charlm.agreement.scoring.ItemScorer`):
from a fresh state after the line-break context, its prefix then its correct form. A word's value
is the one after the model reads the word's last token (its last character in a character
model), from :func:`charlm.inspect.activations.activations`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from charlm.errors import CharlmError
from charlm.inspect.activations import activations, text_pieces
from charlm.nn.kernels import TRACED

GROUPS = ("SS", "SP", "PS", "PP")
MAX_ITEMS = 32  # per group: the traces' means settle well before, and each item is one forward pass
SHOWN = {"lstm": ("c", "i", "f", "o"), "gru": ("h", "z", "r"), "rnn": ("h",)}  # what the figure draws


def number_group(item) -> str | None:
    """SS, SP, PS or PP for an item whose subject number is known and that counts 0 or 1
    attractors; None otherwise."""
    if item.subj_number not in ("sg", "pl") or item.n_attractors not in (0, 1):
        return None
    subject = "S" if item.subj_number == "sg" else "P"
    attractor = subject if item.n_attractors == 0 else {"S": "P", "P": "S"}[subject]
    return subject + attractor


@dataclass
class Layout:
    """The items whose traces are averaged: one condition, one word layout, per group."""

    condition: str
    subject_index: int
    items: dict  # group (SS, SP, PS, PP) -> up to MAX_ITEMS items


def trace_layout(items, condition: str | None = None) -> Layout:
    """The items to average (see the module docstring): of ``condition``, or by default of the first
    condition, in the items' order, that has all four groups in one word layout; within it the
    layout whose smallest group is largest. A one-line error when there is none."""
    layouts = defaultdict(lambda: defaultdict(list))  # (condition, subject index, words) -> group -> items
    for item in items:
        group = number_group(item)
        if item.is_pair or item.subject_index is None or group is None:
            continue
        if condition is not None and item.condition != condition:
            continue
        layouts[(item.condition, item.subject_index, len(item.prefix.split()))][group].append(item)
    complete = [key for key, groups in layouts.items() if all(groups[g] for g in GROUPS)]
    if not complete:
        which = f"of condition {condition!r} " if condition else ""
        raise CharlmError(f"no items {which}for number traces: they need a subject_index, a subject number and "
                          "0 or 1 attractors, with all four of SS, SP, PS, PP in one word layout")
    first = next(key[0] for key in complete)
    key = max((k for k in complete if k[0] == first),
              key=lambda k: (min(len(layouts[k][g]) for g in GROUPS), sum(len(v) for v in layouts[k].values())))
    return Layout(key[0], key[1], {g: layouts[key][g][:MAX_ITEMS] for g in GROUPS})


def number_traces(lm, layout: Layout, units) -> dict:
    """The mean of every traced value (:data:`charlm.nn.kernels.TRACED`) of each of ``units``
    ((layer 0-based, unit) pairs) at each word, per group SS/SP/PS/PP, over the items of
    ``layout`` (:func:`trace_layout`). A JSON-ready dict: ``condition``, ``subject_index``,
    ``words`` (one item's words, the verb last), ``verb_index``, ``n`` (items per group), ``shown``
    (the values a figure draws) and ``units``: per unit ``{"layer" (1-based), "unit", "values":
    {name: {group: [mean per word]}}}``."""
    names = TRACED[lm.config.cell]
    layers = sorted({layer for layer, _ in units})
    read = {g: [] for g in GROUPS}  # group -> per item {name: (words, units)}
    for group, members in layout.items.items():
        for item in members:
            values = _word_values(lm, item, names, layers, units)
            if values is not None:
                read[group].append(values)
    example = layout.items["SS"][0]
    words = [*example.prefix.split(), example.correct]
    return {
        "condition": layout.condition, "subject_index": layout.subject_index, "words": words,
        "verb_index": len(words) - 1, "n": {g: len(read[g]) for g in GROUPS}, "shown": list(SHOWN[lm.config.cell]),
        "units": [{"layer": layer + 1, "unit": unit,
                   "values": {name: {g: np.mean([v[name][:, k] for v in read[g]], axis=0).tolist()
                                     for g in GROUPS if read[g]}
                              for name in names}}
                  for k, (layer, unit) in enumerate(units)],
    }


def _word_values(lm, item, names, layers, units) -> dict | None:
    """{name: (words, units)}: the values after the last token of each word of the item's prefix
    and correct form; None where the tokens do not split into those words."""
    text = f"{item.prefix} {item.correct}"
    acts = activations(lm, text, names=names, layers=layers)
    ends = word_ends(lm.tokenizer, text)
    if len(ends) != len(item.prefix.split()) + 1:
        return None
    return {name: np.stack([acts.get(name, layer)[ends, unit] for layer, unit in units], axis=1)
            for name in names}


def word_ends(tokenizer, text: str) -> list:
    """The index of the last token of each blank-separated word of ``text``: every token of a word
    model; in a character or byte model the token before each run of whitespace, and the last."""
    if tokenizer.kind == "word":
        return list(range(len(tokenizer.split(text))))
    ends, inside = [], False
    for index, piece in enumerate(text_pieces(tokenizer, text)):
        blank = piece != "" and piece.isspace()  # "" continues a byte model's character
        if blank and inside:
            ends.append(index - 1)
        inside = not blank
    if inside:
        ends.append(index)
    return ends
