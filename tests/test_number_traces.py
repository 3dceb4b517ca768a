"""Number traces: the per-word means equal the activations read at each word's last character,
averaged by hand; words end where they should for every tokenizer; the layout is chosen as said."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from charlm.data.tokenizers import build_tokenizer
from charlm.errors import CharlmError
from charlm.inspect.activations import activations
from charlm.inspect.number_traces import GROUPS, number_group, number_traces, trace_layout, word_ends
from tests.test_ablation import suite_items


def test_word_ends_for_every_tokenizer():
    assert word_ends(build_tokenizer("char", "ab cd e"), "ab cd  e") == [1, 4, 7]
    assert word_ends(build_tokenizer("char", "ab cd e"), " ab ") == [2]
    assert word_ends(build_tokenizer("byte", "é a"), "é a") == [1, 3]  # é is two bytes, its second has piece ""
    assert word_ends(build_tokenizer("word", "the keys are"), "the keys are") == [0, 1, 2]


def test_number_groups():
    item = suite_items()[1]  # "the key near the story": singular subject, no attractor
    assert (item.subj_number, item.n_attractors, number_group(item)) == ("sg", 0, "SS")
    assert number_group(replace(item, n_attractors=1)) == "SP"
    assert number_group(replace(item, subj_number="pl", n_attractors=1)) == "PS"
    assert number_group(replace(item, subj_number="pl")) == "PP"
    assert number_group(replace(item, n_attractors=2)) is None
    assert number_group(replace(item, subj_number=None)) is None


@pytest.mark.slow
def test_traces_are_the_means_of_the_activations_at_word_ends(lm):
    layout = trace_layout(suite_items())
    assert (layout.condition, layout.subject_index) == ("pp", 1)
    assert {g: len(v) for g, v in layout.items.items()} == {g: 6 for g in GROUPS}
    units = [(0, 3), (1, 7)]
    result = number_traces(lm, layout, units)
    assert result["words"][-1] in ("is", "are") and len(result["words"]) == 6 and result["verb_index"] == 5
    assert result["n"] == {g: 6 for g in GROUPS} and result["shown"] == ["c", "i", "f", "o"]
    for group in GROUPS:
        read = []  # per item: its activations and its words' last characters
        for item in layout.items[group]:
            text = f"{item.prefix} {item.correct}"
            read.append((activations(lm, text), [m.end() - 1 for m in re.finditer(r"\S+", text)]))
        for name in ("c", "f", "h"):
            for k, (layer, unit) in enumerate(units):
                # A character model: token index = character index.
                by_hand = np.mean([acts.get(name, layer)[ends, unit] for acts, ends in read], axis=0)
                np.testing.assert_allclose(result["units"][k]["values"][name][group], by_hand, atol=1e-6)
    assert result["units"][1]["layer"] == 2 and result["units"][1]["unit"] == 7


def test_the_layout_whose_smallest_group_is_largest_is_chosen():
    items = suite_items()
    # Add a longer layout with more items in three groups but none in the fourth.
    longer = [replace(item, prefix=item.prefix + " here", line=1000 + k) for k, item in enumerate(items)
              if number_group(item) != "PP"] * 2
    layout = trace_layout([*longer, *items])
    assert all(len(item.prefix.split()) == 5 for group in layout.items.values() for item in group)


@pytest.mark.parametrize("change, condition, message", [
    ({"subject_index": None}, None, "need a subject_index"),
    ({"n_attractors": 2}, None, "0 or 1 attractors"),
    ({}, "simple", "of condition 'simple'"),  # no attractors in that condition: no SP or PS
])
def test_no_items_to_trace_is_one_error(change, condition, message):
    items = [replace(item, **change) for item in suite_items()]
    with pytest.raises(CharlmError, match=message):
        trace_layout(items, condition)
