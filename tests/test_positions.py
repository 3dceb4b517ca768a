"""Where charlm probe reads an item (charlm.inspect.positions): numbers, lemmas, and token
positions worked by hand for character, byte and word models."""

from __future__ import annotations

import numpy as np
import pytest

from charlm.agreement.formats import Item
from charlm.data.tokenizers import build_tokenizer
from charlm.errors import CharlmError
from charlm.inspect.positions import (align, at_position, item_number, lemma, position_label, position_order,
                                      span_positions, word_ends)

TEXT = "\nthe keys to the cabinet are on the table .\nthe café near the boxes is old .\n"


def item(prefix, correct="is", wrong="are", subject_index=None, subj_number=None, line=1):
    return Item("suite.tsv", line, correct, wrong, prefix=prefix, after=" .", subj_number=subj_number,
                subject_index=subject_index)


@pytest.mark.parametrize("correct, wrong, number", [
    ("is", "are", "sg"), ("are", "is", "pl"), ("was", "were", "sg"), ("were", "was", "pl"), ("has", "have", "sg"),
    ("have", "has", "pl"), ("runs", "run", "sg"), ("run", "runs", "pl"), ("watches", "watch", "sg"),
    ("carries", "carry", "sg"), ("fly", "flies", "pl"), ("Is", "Are", "sg"), ("is here", "are here", "sg"),
])
def test_the_number_shows_in_the_verb_forms(correct, wrong, number):
    assert item_number(item("the key", correct, wrong)) == (number, "forms")


def test_the_number_column_comes_first_and_other_pairs_tell_nothing():
    assert item_number(item("the keys", "is", "are", subj_number="pl")) == ("pl", "column")
    assert item_number(item("the key", "big", "small")) == (None, "")
    assert item_number(item("the key", "ran", "run")) == (None, "")


@pytest.mark.parametrize("noun, expected", [
    ("knives", "knife"), ("wolves", "wolf"), ("leaves", "leaf"), ("men", "man"), ("children", "child"),
    ("cities", "city"), ("boxes", "box"), ("churches", "church"), ("cats", "cat"), ("Cats", "cat"),
    ("glass", "glass"), ("bus", "bus"), ("cat", "cat"), ("teeth", "tooth"), ("is", "is"),
])
def test_lemmas_are_singular_forms(noun, expected):
    assert lemma(noun) == expected


def test_word_ends_are_each_words_last_token():
    char = build_tokenizer("char", TEXT)
    assert word_ends(char, "the keys  to") == [2, 7, 11]  # two blanks before "to"
    byte = build_tokenizer("byte", TEXT)
    # "café" takes five bytes, é two of them: its last token is its fifth byte.
    assert word_ends(byte, "the café near") == [2, 8, 13]
    word = build_tokenizer("word", TEXT)
    assert word_ends(word, "the keys to") == [0, 1, 2]


def test_a_character_models_positions_are_the_last_characters_of_words():
    tokenizer = build_tokenizer("char", TEXT)
    context = tokenizer.encode("\n")
    prefix = "the keys to the cabinet"
    [a], skipped, sources = align([item(prefix, "are", "is", subject_index=1)], tokenizer, context)
    last = {word: 1 + prefix.index(word) + len(word) - 1 for word in ("keys", "to", "cabinet")}
    assert a.label == 1 and a.lemma == "key" and sources == {"forms": 1} and not skipped
    assert a.positions["before_subject"] == 1 + 2  # the "e" of "the"
    assert a.positions["subject"] == last["keys"]
    assert a.positions["before_verb"] == last["cabinet"]
    # Three words follow the subject up to the verb: "to" is 1/3 of the way (bin 2), "the" 2/3 (bin 3).
    assert a.positions["between_2"] == last["to"] and a.positions["between_3"] == 1 + prefix.rindex("the") + 2
    assert "between_1" not in a.positions and "between_4" not in a.positions
    assert a.steps == (last["keys"], last["to"], 1 + prefix.rindex("the") + 2, last["cabinet"])
    np.testing.assert_array_equal(a.ids, tokenizer.encode("\n" + prefix))
    assert tokenizer.decode(a.ids[a.positions["subject"] : a.positions["subject"] + 1]) == "s"


def test_a_word_models_positions_are_its_words():
    tokenizer = build_tokenizer("word", TEXT)
    context = tokenizer.encode("\n")  # <eol>
    [a], _, _ = align([item("the keys to the cabinet", "are", "is", subject_index=1)], tokenizer, context)
    assert (a.positions["before_subject"], a.positions["subject"], a.positions["before_verb"]) == (1, 2, 5)
    assert a.steps == (2, 3, 4, 5)


def test_a_first_word_subject_is_preceded_by_the_context_or_by_nothing():
    tokenizer = build_tokenizer("char", TEXT)
    [a], _, _ = align([item("keys", "are", "is", subject_index=0)], tokenizer, tokenizer.encode("\n"))
    assert a.positions["before_subject"] == 0 and a.positions["subject"] == a.positions["before_verb"] == 4
    [b], _, _ = align([item("keys", "are", "is", subject_index=0)], tokenizer, np.zeros(0, np.int32))
    assert "before_subject" not in b.positions and b.positions["subject"] == 3


def test_items_without_a_subject_have_the_word_before_the_verb_only():
    tokenizer = build_tokenizer("char", TEXT)
    [a], _, _ = align([item("the keys", "are", "is", line=7)], tokenizer, tokenizer.encode("\n"))
    assert a.positions == {"before_verb": 8} and a.steps == () and a.lemma == "item suite.tsv:7"


def test_equal_spans_are_offsets_and_unequal_ones_bins():
    tokenizer = build_tokenizer("char", TEXT)
    context = tokenizer.encode("\n")
    same, _, _ = align([item("the key to the cabinet", subject_index=1),
                        item("the keys on the table", "are", "is", subject_index=1)], tokenizer, context)
    assert span_positions(same) == ["subject+1", "subject+2"]
    assert position_order(same) == ["before_subject", "subject", "subject+1", "subject+2", "before_verb"]
    assert at_position(same, "subject+2") == [(0, same[0].steps[2]), (1, same[1].steps[2])]
    assert span_positions(same + align([item("the key", subject_index=1)], tokenizer, context)[0]) == \
        ["subject+1", "subject+2"]  # an item without words in between changes nothing
    mixed, _, _ = align([item("the key to the cabinet", subject_index=1), item("the key on tables", subject_index=1)],
                        tokenizer, context)
    assert span_positions(mixed) == ["between_1", "between_2", "between_3", "between_4"]
    assert at_position(mixed, "subject") == [(0, mixed[0].positions["subject"]), (1, mixed[1].positions["subject"])]
    assert position_label("between_2") == "between subject and verb, 25-50% of the way"
    assert position_label("subject+2") == "2 word(s) after the subject"


def test_what_cannot_be_probed_is_counted_with_its_reason():
    tokenizer = build_tokenizer("char", TEXT)
    pair = Item("s.tsv", 2, "the key is here", "the key are here")
    items = [pair, item("the key", "big", "small"), item("the key", subject_index=5), item("the key", subject_index=1)]
    aligned, skipped, sources = align(items, tokenizer, tokenizer.encode("\n"))
    assert len(aligned) == 1 and sources == {"forms": 1}
    assert skipped == {"a sentence pair, not a prefix item": 1, "no subject number": 1,
                       "subject_index beyond the prefix's words": 1}


def test_a_suite_without_any_number_is_one_error():
    tokenizer = build_tokenizer("char", TEXT)
    with pytest.raises(CharlmError, match="no subject number.*subj_number column.*is/are"):
        align([item("the key", "big", "small")], tokenizer, tokenizer.encode("\n"))
