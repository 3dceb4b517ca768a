"""Tokenizers: exact round trips, unknown symbols, normalization, vocabulary from the training split."""

import numpy as np
import pytest

from charlm.config import TokenizerConfig, TrainConfig
from charlm.errors import CharlmError
from charlm.data.tokenizers import (
    ByteTokenizer, CharTokenizer, WordTokenizer, build_tokenizer, tokenizer_from_config,
)

MIXED = "Hello, wörld! 순환 신경망은 기억을 가진다. Ωμέγα — naïve café 🙂\n\ttabs and\r\nCRLF"


def test_char_round_trip_keeps_case_and_non_ascii():
    tok = CharTokenizer.build(MIXED)
    ids = tok.encode(MIXED)
    assert ids.dtype == np.int32 and len(ids) == len(MIXED)
    assert tok.decode(ids) == MIXED
    assert tok.encode("H")[0] != tok.encode("h")[0] if "h" in MIXED else True


def test_char_unknown_symbol_and_specials():
    tok = CharTokenizer.build("abc")
    assert tok.vocabulary[:2] == ["<pad>", "<unk>"] and tok.pad_id == 0
    ids = tok.encode("abz")
    assert list(ids[:2]) == list(tok.encode("ab")) and ids[2] == tok.unk_id
    assert tok.count_unknown("zzab") == 2
    assert set(tok.special_ids) == {tok.pad_id, tok.unk_id}


def test_char_normalization_merges_composed_and_decomposed():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    plain = CharTokenizer.build(composed)
    assert plain.count_unknown(decomposed) == 2  # neither "e" nor U+0301 was seen
    nfc = CharTokenizer.build(composed, normalization="NFC")
    assert list(nfc.encode(decomposed)) == list(nfc.encode(composed))
    nfkc = CharTokenizer.build("fi", normalization="NFKC")
    assert nfkc.decode(nfkc.encode("\ufb01")) == "fi"  # the ligature is folded


def test_byte_round_trip_and_fixed_vocabulary():
    tok = ByteTokenizer()
    assert tok.vocab_size == 257 and tok.unk_id is None
    ids = tok.encode(MIXED)
    assert len(ids) == len(MIXED.encode("utf-8"))
    assert tok.decode(ids) == MIXED
    assert tok.count_chars(ids) == len(MIXED)


def test_byte_refuses_lone_surrogate_clearly():
    with pytest.raises(CharlmError, match="surrogate"):
        ByteTokenizer().encode("ok\udc80")


def test_word_tokenizer_eol_max_vocab_and_unknown():
    text = "the cat sat\nthe dog sat\nthe cat ran\n"
    tok = WordTokenizer.build(text, max_vocab=5)
    assert tok.vocabulary[:3] == ["<pad>", "<unk>", "<eol>"]
    assert tok.vocabulary[3:] == ["the", "cat"]  # most frequent first, ties alphabetical
    ids = tok.encode("the cat sat\n")
    assert list(ids) == [3, 4, tok.unk_id, tok.index["<eol>"]]
    tok_all = WordTokenizer.build(text)
    assert tok_all.decode(tok_all.encode(text)) == text


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_config_round_trip(kind):
    tok = build_tokenizer(kind, MIXED)
    again = tokenizer_from_config(tok.get_config())
    assert type(again) is type(tok) and again.vocabulary == tok.vocabulary
    assert list(again.encode(MIXED)) == list(tok.encode(MIXED))


def test_vocabulary_comes_from_training_split_only(tmp_path):
    from charlm.data.prepare import prepare

    # "Z" occurs only in the last 10% of the text: the validation split.
    text = "abcab cabca " * 400 + "ZZZZ abc " * 40
    path = tmp_path / "c.txt"
    path.write_text(text)
    data = prepare([path], TokenizerConfig(), TrainConfig(batch_size=2, bptt=8, val_fraction=0.1))
    assert "Z" not in data.tokenizer.vocabulary
    assert data.tokenizer.unk_id in set(data.validation.streams.reshape(-1).tolist())
