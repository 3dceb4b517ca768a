"""Tokenizers: exact round trips, unknown symbols, normalization; then properties on
arbitrary Unicode, lone surrogates included.

- char: text -> ids -> text is the identity for any text whose symbols are in the
  vocabulary (after normalization, if any); unknown symbols come back as U+FFFD,
  one per character; a lone surrogate is an ordinary code point.
- byte: the identity for any text UTF-8 can encode; a lone surrogate is refused
  with a CharlmError naming it; any ids decode without raising.
- word: the identity up to whitespace: words re-joined by one space, lines kept; with
  the word options (lower case, punctuation split off, numbers mapped) the rules on hand
  examples, and decoded text encodes to the same ids.
- every kind: the vocabulary survives its JSON round trip (what the model file
  stores), and encoding text the vocabulary never saw never raises.
"""

import json
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.data.tokenizers import (
    ByteTokenizer, CharTokenizer, WordTokenizer, build_tokenizer, tokenizer_from_config,
)
from charlm.data.words import WordRules
from charlm.errors import CharlmError

MIXED = "Hello, wörld! 순환 신경망은 기억을 가진다. Ωμέγα — naïve café 🙂\n\ttabs and\r\nCRLF"


def test_char_round_trip_keeps_case_and_non_ascii():
    tok = CharTokenizer.build(MIXED)
    ids = tok.encode(MIXED)
    assert ids.dtype == np.int32 and len(ids) == len(MIXED)
    assert tok.decode(ids) == MIXED
    assert tok.count_unknown("h") == 1 and tok.count_unknown("H") == 0  # no case folding
    cased = CharTokenizer.build("Hh")
    assert len({cased.encode("H")[0], cased.encode("h")[0], cased.unk_id}) == 3


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


# ---- properties on arbitrary text ------------------------------------------------------------

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


# ---- word options: lower case, punctuation, numbers (charlm.data.words) ----------------------

SPLIT = WordRules(split_punctuation=True)


@pytest.mark.parametrize("text,words", [
    ("the keys to the cabinet are on the table.", "the keys to the cabinet are on the table ."),
    ("The keys are old.", "The keys are old ."),  # case is kept unless --lowercase
    ('"Yes," she said (twice); ok?!', '" Yes , " she said ( twice ) ; ok ? !'),
    ("3,000 people paid $1.5 (or 1,5) at 10:30 on 2024-05-01.",
     "3,000 people paid $ 1.5 ( or 1,5 ) at 10 : 30 on 2024 - 05 - 01 ."),
    ("3,000. 1.5, 1,000,000 -4 3.x 1990s", "3,000 . 1.5 , 1,000,000 - 4 3 . x 1990s"),
    ("hasn't can't DON'T isn’t", "has n't ca n't DO N'T is n’t"),  # n't, straight or curly
    ("the cat's toy, they're here, dogs' bones", "the cat 's toy , they 're here , dogs ' bones"),
    ("don 't one 's n't 's", "don 't one 's n't 's"),  # already split (WikiText, Gulordava): kept
    ("... -- @-@ @,@ '' :)", "... -- @-@ @,@ '' :)"),  # punctuation alone stays whole
    ("word... well-known U.S. e.g.", "word . . . well - known U . S . e . g ."),
    ("<unk> <unk>, <eos>", "<unk> <unk> , <eos>"),
    ("naïve café. 日本語。 «Ça» x² e\u0301te", "naïve café . 日本語 。 « Ça » x² e\u0301te"),
    ("hi🙂 50% a/b", "hi 🙂 50 % a / b"),
    ("snake_case", "snake _ case"),  # "_" is punctuation (Pc)
])
def test_split_punctuation_rules_on_hand_examples(text, words):
    assert SPLIT.split(text) == words.split()


def test_lowercase_and_numbers_token():
    rules = WordRules(lowercase=True, split_punctuation=True, numbers_token="<num>")
    assert rules.split("The keys are old.") == ["the", "keys", "are", "old", "."]
    assert rules.split("ÉCOLE İstanbul ΣΟΦΟΣ") == ["école", "i̇stanbul", "σοφος"]
    assert rules.split("In 1990, 3,000 (1.5%) ٣ cats; 1990s 3rd") == \
        ["in", "<num>", ",", "<num>", "(", "<num>", "%", ")", "<num>", "cats", ";", "1990s", "3rd"]
    # Without --split-punctuation a number must be a whole whitespace-separated word.
    plain = WordRules(numbers_token="NUM")
    assert plain.split("42 3,000 3. 1.5\n") == ["NUM", "NUM", "3.", "NUM", "<eol>"]
    assert WordRules(lowercase=True).split("The Cat\nThe") == ["the", "cat", "<eol>", "the"]


def test_word_tokenizer_applies_its_options_to_every_text():
    tok = WordTokenizer.build("the keys are old .\nthe key is old .\n", lowercase=True, split_punctuation=True)
    assert tok.count_unknown("The keys are old.") == 0
    assert tok.decode(tok.encode("The keys are old.\n")) == "the keys are old .\n"
    assert list(tok.encode("The key is OLD.")) == list(tok.encode("the key is old ."))
    again = _json_round_trip(tok)
    assert again.rules == tok.rules and list(again.encode("The key is OLD.")) == list(tok.encode("the key is old ."))


def test_old_word_configs_load_with_the_options_off():
    tok = tokenizer_from_config({"kind": "word", "vocabulary": ["<pad>", "<unk>", "<eol>", "The", "old."]})
    assert tok.rules == WordRules() and tok.rules.plain
    assert list(tok.encode("The old.")) == [3, 4]


def test_min_count_and_max_vocab_choose_by_frequency():
    text = "a a a b b c\nd a b\n"  # a:4 b:3 c:1 d:1
    assert WordTokenizer.build(text, min_count=2).vocabulary[3:] == ["a", "b"]
    assert WordTokenizer.build(text).vocabulary[3:] == ["a", "b", "c", "d"]
    assert WordTokenizer.build(text, max_vocab=4, min_count=1).vocabulary[3:] == ["a"]
    assert WordTokenizer.build(text, max_vocab=10, min_count=5).vocabulary[3:] == []


RULES = st.builds(WordRules, st.booleans(), st.booleans(), st.sampled_from([None, "<num>"]))
# Text with plenty of what the rules act on.
RULE_TEXT = st.text(st.one_of(ANY_CHAR, st.sampled_from(list(".,'’-n't0123456789 \nABCabc<>@$"))), max_size=120)


@FAST
@given(RULE_TEXT, RULES)
def test_word_rules_round_trip_and_each_word_stays_itself(text, rules):
    words = rules.split(text)
    for word in words:
        assert word == "<eol>" or rules.words(word) == [word]
    if WORD_SPECIALS & set(words):
        return
    tok = _json_round_trip(WordTokenizer.build(text, lowercase=rules.lowercase,
                                               split_punctuation=rules.split_punctuation,
                                               numbers_token=rules.numbers_token))
    ids = tok.encode(text)
    assert len(ids) == len(words) and tok.unk_id not in ids
    assert [tok.vocabulary[i] for i in ids] == words
    assert list(tok.encode(tok.decode(ids))) == list(ids)  # decoded text reads back the same


# ---- the options through `charlm train` and the model file -------------------------------------


@pytest.mark.parametrize("args,fragments", [
    (["--lowercase"], ["--lowercase applies to words", "--tokenizer word", "char tokenizer"]),
    (["--tokenizer", "byte", "--split-punctuation"], ["--split-punctuation applies to words", "byte"]),
    (["--numbers-token", "<num>"], ["--numbers-token applies to words"]),
    (["--tokenizer", "word", "--max-vocab", "3"], ["--max-vocab must be between 5", "<pad>, <unk>, <eol>, <doc>"]),
    (["--tokenizer", "word", "--max-vocab", "5000000000"], ["2,147,483,647", "int32"]),
    (["--tokenizer", "word", "--min-count", "0"], ["--min-count must be at least 1, got 0"]),
    (["--tokenizer", "word", "--lowercase", "--numbers-token", "NUM"], ["--numbers-token 'NUM' must stay one word"]),
    (["--tokenizer", "word", "--numbers-token", "<eol>"], ["reserved symbol"]),
])
def test_bad_word_options_are_one_line_errors(tmp_path, args, fragments):
    from tests.helpers import assert_one_line_error, invoke

    result = invoke("train", "--out", tmp_path / "run", *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_word_model_trains_with_its_options_stores_them_and_reads_every_text_with_them(tmp_path):
    import charlm
    from tests.helpers import invoke

    corpus = tmp_path / "c.txt"
    corpus.write_text("The keys to the cabinet are old.\nThe key is 3 years old.\nThe keys aren't 42.\n" * 60,
                      encoding="utf-8")
    options = ["--tokenizer", "word", "--lowercase", "--split-punctuation", "--numbers-token", "<num>",
               "--min-count", "2"]
    tiny = ["--layers", "1", "--hidden", "8", "--embedding", "4", "--batch-size", "2", "--bptt", "8",
            "--max-steps", "3", "--val-fraction", "0.1", "--json"]
    result = invoke("train", corpus, "--out", tmp_path / "run", *options, *tiny)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["oov_rate"] == {"train": 0.0, "validation": 0.0}
    assert "0 training (0.00%) and 0 validation tokens (0.00%) are outside the vocabulary" in result.stderr
    lm = charlm.load(summary["model_path"])
    assert lm.tokenizer.rules == WordRules(True, True, "<num>")
    assert {"the", ".", "<num>", "n't", "are"} <= set(lm.tokenizer.vocabulary)
    assert not {"The", "old.", "42"} & set(lm.tokenizer.vocabulary)
    assert lm.info["tokenizer"]["split_punctuation"] and lm.info["tokenizer"]["min_count"] == 2
    assert lm.tokenizer.count_unknown("The Keys ARE 7.") == 0
    # Fine-tuning keeps the model's rules, and refuses a flag that contradicts them.
    again = invoke("train", corpus, "--out", tmp_path / "tuned", "--init-from", summary["model_path"],
                   "--max-steps", "2", "--batch-size", "2", "--bptt", "8", "--json")
    assert again.exit_code == 0, again.stderr
    assert charlm.load(json.loads(again.stdout.splitlines()[-1])["model_path"]).tokenizer.rules == lm.tokenizer.rules
    refused = invoke("train", corpus, "--out", tmp_path / "t2", "--init-from", summary["model_path"],
                     "--tokenizer", "word", "--lowercase", "--split-punctuation", "--numbers-token", "NUM")
    assert refused.exit_code == 1 and "--numbers-token NUM conflicts with" in refused.stderr
