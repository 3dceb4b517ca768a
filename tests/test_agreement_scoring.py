"""Agreement scoring with word models (charlm.agreement.scoring): items read with the word
rules the model was trained with (BLiMP's "The keys are old." as "the keys are old ."),
items whose forms the vocabulary lacks skipped and counted per condition, never scored as
<unk>, and items with other unknown words counted; the same through a saved model file and
the command line."""

import json

import numpy as np
import pytest

from charlm.agreement.formats import Item
from charlm.agreement.scoring import FORM_WORD_UNKNOWN, ItemScorer, run_agreement
from tests.helpers import invoke

CORPUS = "the keys to the cabinet are on the table .\nthe key is 3 years old .\nthe keys are n't old .\n"
RULES = {"lowercase": True, "split_punctuation": True}


def word_model(**rules):
    """A real, randomly initialised word model whose tokenizer has ``rules``."""
    from charlm.config import ModelConfig
    from charlm.data.tokenizers import WordTokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    tokenizer = WordTokenizer.build(CORPUS, **rules)
    config = ModelConfig(cell="gru", layers=1, hidden=8, embedding=4)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


ITEMS = [
    Item("b.jsonl", 1, "The keys are old.", "The keys is old.", condition="pairs"),  # scored
    Item("b.jsonl", 2, "The keys seem old.", "The keys seems old.", condition="pairs"),  # forms unknown
    Item("t.tsv", 2, "are", "is", "The keys to the cabinet", " on the table.", condition="prefix"),  # scored
    Item("t.tsv", 3, "are", "is", "The zebras", " old.", condition="prefix"),  # scored, "zebras" unknown
    Item("t.tsv", 4, "seems", "seem", "The key", " old.", condition="prefix"),  # forms unknown
    Item("t.tsv", 5, "aren't", "isn't", "The keys", " old."),  # scored: "are n't" / "is n't"
    Item("t.tsv", 6, "sleeps", "sleep", "The key", "."),  # forms unknown, no condition
]


def _logp(lm, words: list[str], first: int) -> float:
    """log p(words[first:] | words[:first]) from a zero state: one unbatched Keras call on
    ids looked up by hand, softmax in numpy."""
    ids = np.array([[lm.tokenizer.index[w] for w in words]], np.int32)
    states = [np.asarray(s) for s in lm.zero_states(1)]
    logits = np.asarray(lm.model([ids[:, :-1], *states], training=False)[0], np.float64)[0]
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return float(sum(logp[t - 1, ids[0, t]] for t in range(first, ids.shape[1])))


def test_word_model_reads_items_with_its_rules_and_skips_unknown_forms_per_condition():
    lm = word_model(**RULES)
    scored, skips = ItemScorer(lm).score(ITEMS)
    assert [(s.item.source, s.item.line) for s in scored] == [("b.jsonl", 1), ("t.tsv", 2), ("t.tsv", 3), ("t.tsv", 5)]
    assert [(s.line, s.condition, s.reason) for s in skips] == \
        [(2, "pairs", FORM_WORD_UNKNOWN), (4, "prefix", FORM_WORD_UNKNOWN), (6, None, FORM_WORD_UNKNOWN)]
    assert [s.unknown_context for s in scored] == [False, False, True, False]
    # The pair is the lower-cased, punctuation-split sentence: its log-probability by hand.
    pair = scored[0]
    good = ["<eol>", "the", "keys", "are", "old", ".", "<eol>"]
    bad = ["<eol>", "the", "keys", "is", "old", ".", "<eol>"]
    assert pair.logp_correct == pytest.approx(_logp(lm, good, 1), abs=1e-4)
    assert pair.logp_wrong == pytest.approx(_logp(lm, bad, 1), abs=1e-4)
    # A prefix item scores the form's words after the prefix's: "are n't" against "is n't".
    contracted = scored[3]
    prefix = ["<eol>", "the", "keys"]
    assert contracted.logp_correct == pytest.approx(_logp(lm, [*prefix, "are", "n't"], 3), abs=1e-4)
    assert contracted.logp_wrong == pytest.approx(_logp(lm, [*prefix, "is", "n't"], 3), abs=1e-4)

    summary = run_agreement(lm, loaded=_loaded(ITEMS)).summary
    assert summary["n"] == 4 and summary["skipped"] == 3
    assert summary["skipped_by_condition"] == {"pairs": {FORM_WORD_UNKNOWN: 1}, "prefix": {FORM_WORD_UNKNOWN: 1},
                                               "unknown": {FORM_WORD_UNKNOWN: 1}}
    assert summary["unknown_context"] == {"items": 1, "by_condition": {"prefix": 1}}


def test_without_the_rules_the_same_items_are_other_words():
    """A model trained on whitespace words knows "old" but not "old." nor "The": BLiMP's
    capitalised, punctuated sentence is then mostly unknown words."""
    plain = word_model()
    scored, skips = ItemScorer(plain).score(ITEMS[:1])
    assert len(scored) == 1 and not skips and scored[0].unknown_context  # "The", "old." are <unk>
    assert plain.tokenizer.split("The keys are old.") == ["The", "keys", "are", "old."]


def _loaded(items):
    from charlm.agreement.formats import Loaded

    return Loaded(list(items), [], ["b.jsonl", "t.tsv"])


@pytest.mark.slow
def test_saved_word_model_keeps_its_rules_for_agree_and_eval(tmp_path):
    import charlm

    path = word_model(**RULES, numbers_token="<num>").save(tmp_path / "word.keras")
    loaded = charlm.load(path)
    assert loaded.tokenizer.rules.lowercase and loaded.tokenizer.rules.split_punctuation
    assert loaded.tokenizer.rules.numbers_token == "<num>"
    blimp = tmp_path / "pairs.jsonl"
    rows = [{"sentence_good": "The keys are old.", "sentence_bad": "The keys is old.", "UID": "agr"},
            {"sentence_good": "The key seems old.", "sentence_bad": "The key seem old.", "UID": "agr"},
            {"sentence_good": "The zebras are old.", "sentence_bad": "The zebras is old.", "UID": "zoo"}]
    blimp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = invoke("agree", path, blimp, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n"] == 2 and summary["skipped_by_condition"] == {"agr": {FORM_WORD_UNKNOWN: 1}}
    assert summary["unknown_context"] == {"items": 1, "by_condition": {"zoo": 1}}
    assert "skipped 1 items" in result.stderr
    assert "1 scored item(s) read symbols outside the vocabulary as <unk> around their forms (zoo 1)" in result.stderr
    assert "  by condition: agr 1" in invoke("agree", path, blimp).stdout
    text = tmp_path / "text.txt"
    text.write_text("The keys are old.\nThe zebras are 42 years old.\n", encoding="utf-8")
    result = invoke("eval", path, text, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # Scored after the <eol> context: "the keys are old . <eol> the <unk> are <num> years old . <eol>".
    assert (report["tokens"], report["unknown"]) == (14, 1)
    assert report["oov_rate"] == pytest.approx(1 / 14)
