"""Property-based tests of the tokenizers on arbitrary Unicode, lone surrogates included.

- char: text -> ids -> text is the identity for any text whose symbols are in the
  vocabulary (after normalization, if any); unknown symbols come back as U+FFFD,
  one per character; a lone surrogate is an ordinary code point.
- byte: the identity for any text UTF-8 can encode; a lone surrogate is refused
  with a CharlmError naming it; any ids decode without raising.
- word: the identity up to whitespace: words re-joined by one space, lines kept.
- every kind: the vocabulary survives its JSON round trip (what the model file
  stores), and encoding text the vocabulary never saw never raises.
"""

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.errors import CharlmError
from charlm.data.tokenizers import (ByteTokenizer, CharTokenizer, WordTokenizer, build_tokenizer,
                               tokenizer_from_config)

# Every code point, surrogates included (hypothesis leaves category Cs out by default).
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=200)
ENCODABLE_TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
WORD_SPECIALS = {"<pad>", "<unk>", "<eol>", "<doc>"}
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _json_round_trip(tokenizer):
    return tokenizer_from_config(json.loads(json.dumps(tokenizer.get_config())))


@FAST
@given(ANY_TEXT)
def test_char_round_trip_on_any_text(text):
    tokenizer = CharTokenizer.build(text)
    ids = tokenizer.encode(text)
    assert ids.dtype == np.int32 and len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert _json_round_trip(tokenizer).decode(ids) == text


@FAST
@given(ANY_TEXT, st.sampled_from(["NFC", "NFKC"]))
def test_char_round_trip_is_the_normal_form(text, form):
    tokenizer = CharTokenizer.build(text, form)
    assert tokenizer.decode(tokenizer.encode(text)) == unicodedata.normalize(form, text)


@FAST
@given(ANY_TEXT, ANY_TEXT)
def test_char_unknown_symbols_become_replacement_characters(seen, unseen):
    tokenizer = CharTokenizer.build(seen)
    ids = tokenizer.encode(unseen)
    assert ((0 <= ids) & (ids < tokenizer.vocab_size)).all()
    known = set(seen)
    assert tokenizer.decode(ids) == "".join(c if c in known else "\ufffd" for c in unseen)


@FAST
@given(ENCODABLE_TEXT)
def test_byte_round_trip_on_encodable_text(text):
    tokenizer = _json_round_trip(ByteTokenizer())
    ids = tokenizer.encode(text)
    assert len(ids) == len(text.encode("utf-8")) and ((1 <= ids) & (ids <= 256)).all()
    assert tokenizer.decode(ids) == text
    assert tokenizer.count_chars(ids) == len(text)


@FAST
@given(ENCODABLE_TEXT, SURROGATE, ENCODABLE_TEXT)
def test_byte_refuses_lone_surrogates_clearly(before, surrogate, after):
    with pytest.raises(CharlmError, match=f"U\\+{ord(surrogate):04X}.*--encoding-errors replace"):
        ByteTokenizer().encode(before + surrogate + after)


@FAST
@given(st.lists(st.integers(min_value=0, max_value=256), max_size=300))
def test_byte_decodes_any_ids(ids):
    text = ByteTokenizer().decode(np.array(ids, dtype=np.int32))
    assert isinstance(text, str)
    text.encode("utf-8")  # invalid sequences became U+FFFD, never lone surrogates


def _expected_words(text):
    return "\n".join(" ".join(line.split()) for line in text.split("\n"))


@FAST
@given(ANY_TEXT.filter(lambda t: not WORD_SPECIALS & set(t.split())))
def test_word_round_trip_up_to_whitespace(text):
    tokenizer = _json_round_trip(WordTokenizer.build(text))
    assert tokenizer.decode(tokenizer.encode(text)) == _expected_words(text)


@FAST
@given(ANY_TEXT, ANY_TEXT, st.sampled_from(["char", "byte", "word"]))
def test_encoding_unseen_text_never_raises_except_byte_surrogates(seen, unseen, kind):
    if kind == "byte":
        seen = seen.encode("utf-8", "replace").decode("utf-8")
        unseen = unseen.encode("utf-8", "replace").decode("utf-8")
    tokenizer = build_tokenizer(kind, seen)
    ids = tokenizer.encode(unseen)
    assert ((0 <= ids) & (ids < tokenizer.vocab_size)).all()
    assert isinstance(tokenizer.decode(ids), str)
