"""charlm agree: item scoring against independently computed log-probabilities, the three
input formats, intervals and baselines on known numbers, the plot, the per-epoch observer,
bad input, and parsers that never crash on random or truncated rows."""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.agreement.formats import Item, english_verb_number, load, read_blimp, read_gulordava, read_tsv
from charlm.agreement.stats import baseline_scores, summarize, wilson
from tests.helpers import BUNDLED_SUITE, FIXTURES, REPO, assert_one_line_error, invoke, shared_data

TSV = (
    "prefix\tcorrect\twrong\tsuffix\tcondition\tn_attractors\tsubj_number\n"
    "the keys near the cabinet\tare\tis\told .\tpp\t1\tpl\n"
    "the key\tis\tare\t\tsimple\t0\tsg\n"
    "the key\tis\tare\ttoo\tmany\tcolumns\there\tx\n"
    "the boxes\tare\tare\told .\tsimple\t0\tpl\n"
    "the box\t\tare\told .\tsimple\t0\tsg\n"
    "the box\tis\tare\told .\tsimple\tmany\tsg\n"
)
BLIMP = [
    {"sentence_good": "the key is old .", "sentence_bad": "the key are old .", "one_prefix_prefix": "the key",
     "one_prefix_word_good": "is", "one_prefix_word_bad": "are", "UID": "sv"},
    {"sentence_good": "the keys are old .", "sentence_bad": "the keys is old .", "UID": "sv"},
]


def write_gulordava(folder: Path, text=True, tab=True) -> Path:
    stem = folder / "generated"
    if text:
        stem.with_suffix(".text").write_text(
            "the key near the boxes seems old . <eos>\nthe keys to the cabinet runs fast . <eos>\n")
    stem.with_suffix(".eval").write_text("5\n5\n")
    gold = ["x\t0\t0\t4\tVERB\tNumber=Sing|Tense=Pres\tis\tare\tbe\t1\tNOUN\tthe key near the boxes",
            "x\t0\t1\t4\tVERB\tMood=Ind|Number=Plur\tare\tis\tbe\t1\tNOUN\tthe keys to the cabinet"]
    stem.with_suffix(".gold").write_text("\n".join(gold) + "\n")
    if tab:
        # len_context: the controller's distance to the target; a noun in the first pattern, a verb in the second.
        stem.with_suffix(".tab").write_text(
            "pattern\tconstr_id\tsent_id\tcorrect_number\tform\tclass\ttype\tn_attr\tlen_context\tlen_prefix\n"
            "L__NOUN_VERB_VERB\t0\t0\tsing\tis\tcorrect\toriginal\t1\t4\t5\n"
            "L__NOUN_VERB_VERB\t0\t0\tsing\tare\twrong\toriginal\t1\t4\t5\n"
            "R__VERB_NOUN_CCONJ_VERB\t0\t1\tplur\tare\tcorrect\tgenerated\t0\t4\t5\n"
            "R__VERB_NOUN_CCONJ_VERB\t0\t1\tplur\tis\twrong\tgenerated\t0\t4\t5\n")
    return stem


LINZEN = FIXTURES / "linzen" / "subj_agr"  # Linzen et al.'s layout: a four-field .gold


# ---- scoring, checked against the model's own logits -------------------------------------

_FORWARD = {}


def reference(lm, context: str, continuation: str) -> float:
    """log p(continuation | newline + context): one unbatched forward pass, softmax in numpy."""
    import tensorflow as tf

    ids = lm.tokenizer.encode("\n" + context + continuation)
    if id(lm) not in _FORWARD:  # one trace for all calls
        spec = [tf.TensorSpec((1, None), tf.int32), [tf.TensorSpec((1, lm.config.hidden))] * len(lm.zero_states(1))]
        _FORWARD[id(lm)] = tf.function(lambda tokens, states: lm.model([tokens, *states], training=False)[0],
                                       input_signature=spec)
    logits = np.asarray(_FORWARD[id(lm)](ids[None, :-1], lm.zero_states(1))[0], np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    targets = ids[1:]
    n = len(lm.tokenizer.encode(continuation))  # a character or a byte per token
    return float(sum(logp[t, targets[t]] for t in range(len(targets) - n, len(targets))))


def test_item_log_probabilities_match_the_logits(lm):
    from charlm.agreement.scoring import ItemScorer

    items = [
        Item("x", 1, "are", "is", "the keys near the cabinet", " old ."),
        Item("x", 2, "is", "are", "the key that the guards see", ""),  # end of sentence: boundary "\n"
        Item("x", 3, "the key is old .", "the key are old ."),  # a sentence pair
        Item("x", 4, "was", "were", "the boxes on the long table near the doors of the tall cities", " ."),
    ]
    scored, skips = ItemScorer(lm).score(items)
    assert not skips and [s.item for s in scored] == items
    expected = [
        (reference(lm, "the keys near the cabinet", " are "), reference(lm, "the keys near the cabinet", " is ")),
        (reference(lm, "the key that the guards see", " is\n"),
         reference(lm, "the key that the guards see", " are\n")),
        (reference(lm, "", "the key is old .\n"), reference(lm, "", "the key are old .\n")),
        (reference(lm, items[3].prefix, " was "), reference(lm, items[3].prefix, " were ")),
    ]
    for s, (good, bad) in zip(scored, expected):
        assert s.logp_correct == pytest.approx(good, abs=1e-3)
        assert s.logp_wrong == pytest.approx(bad, abs=1e-3)
        assert s.ok == (good > bad)


def test_boundary_keeps_short_forms_from_collecting_longer_words(lm):
    """Without the boundary, log p(" is") >= log p(" is" + anything); with it, the space counts."""
    from charlm.agreement.scoring import ItemScorer

    scored, _ = ItemScorer(lm).score([Item("x", 1, "is", "island", "the key", " old .")])
    assert scored[0].logp_correct == pytest.approx(reference(lm, "the key", " is "), abs=1e-3)
    assert scored[0].logp_correct < reference(lm, "the key", " is")


def untrained(kind: str, corpus: str):
    """A real, randomly initialised model with a word or byte tokenizer."""
    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model
    from charlm.data.tokenizers import build_tokenizer

    tokenizer = build_tokenizer(kind, corpus)
    config = ModelConfig(cell="gru", layers=1, hidden=8, embedding=4)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


def test_word_model_skips_out_of_vocabulary_forms():
    from charlm.agreement.scoring import ItemScorer

    lm = untrained("word", "the key keys is are old .\nthe keys are old .\n")
    items = [Item("x", 1, "are", "is", "the keys", " old ."),
             Item("x", 2, "seems", "seem", "the key", " old ."),
             Item("x", 3, "the key is old .", "the key iss old ."),
             Item("x", 4, "the keys seem old .", "the keys seems old .")]  # both <unk>, yet different
    scored, skips = ItemScorer(lm).score(items)
    assert [s.item.line for s in scored] == [1]
    assert [s.line for s in skips] == [2, 3, 4]
    assert all("outside the model's vocabulary" in s.reason for s in skips)
    ids = lm.tokenizer.encode("\nthe keys are")
    # A word model scores the form's word alone: no boundary token after it.
    direct = ItemScorer(lm).sequence_logprobs([(ids, 3)])[0]
    assert scored[0].logp_correct == pytest.approx(direct, abs=1e-5)


def test_byte_model_scores_bytes():
    from charlm.agreement.scoring import ItemScorer

    lm = untrained("byte", "")
    scored, skips = ItemScorer(lm).score([Item("x", 1, "été", "ete", "the key", " old .")])
    assert not skips and len(scored) == 1
    # The five bytes of " été" and the boundary after it, as one forward pass computes them.
    assert scored[0].logp_correct == pytest.approx(reference(lm, "the key", " été "), abs=1e-3)
    assert scored[0].logp_wrong == pytest.approx(reference(lm, "the key", " ete "), abs=1e-3)


# ---- formats ------------------------------------------------------------------------------

def test_tsv_prefix_format(tmp_path):
    path = tmp_path / "suite.tsv"
    path.write_text(TSV, encoding="utf-8")
    loaded = load([path])
    assert len(loaded.items) == 2
    first, second = loaded.items
    assert (first.prefix, first.correct, first.wrong, first.after) == ("the keys near the cabinet", "are", "is",
                                                                        " old .")
    assert (first.condition, first.n_attractors, first.subj_number) == ("pp", 1, "pl")
    assert second.after == ""
    reasons = sorted(s.reason for s in loaded.skips)
    assert len(reasons) == 4
    assert any("malformed row: 8 columns" in r for r in reasons)
    assert "correct and wrong forms are the same" in reasons and "empty form" in reasons
    assert any("n_attractors" in r for r in reasons)


def test_tsv_sentence_format(tmp_path):
    path = tmp_path / "pairs.txt"  # no telling extension: found by its header
    path.write_text("sentence_good\tsentence_bad\tsubj_number\nthe key is old .\tthe key are old .\tsg\n")
    loaded = load([path])
    assert loaded.items[0].is_pair and loaded.items[0].subj_number == "sg" and not loaded.skips


def test_tsv_subject_index_column(tmp_path):
    path = tmp_path / "s.tsv"
    path.write_text("prefix\tcorrect\twrong\tsubject_index\n"
                    "the keys to the cabinet\tare\tis\t1\nthe key\tis\tare\t2\nthe key\tis\tare\tNA\n")
    loaded = load([path])
    assert [item.subject_index for item in loaded.items] == [1, None]
    assert len(loaded.skips) == 1 and "subject_index" in loaded.skips[0].reason and loaded.skips[0].line == 3
    path.write_text("prefix\tcorrect\twrong\tsubject_index\nthe key\tis\tare\t\u00b2\n", encoding="utf-8")
    items, skips = read_tsv(path)
    assert not items and "subject_index" in skips[0].reason


def test_blimp_format(tmp_path):
    path = tmp_path / "sv.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in BLIMP) + "\n{not json\n", encoding="utf-8")
    items, skips = read_blimp(path)
    assert [i.correct for i in items] == ["the key is old .", "the keys are old ."]
    assert items[0].is_pair and items[0].condition == "sv"
    assert items[0].one_prefix == ("the key", "is", "are", " old .") and items[1].one_prefix is None
    assert len(skips) == 1 and skips[0].line == 3
    as_prefix = load([path], method="prefix").items
    assert (as_prefix[0].prefix, as_prefix[0].correct, as_prefix[0].after) == ("the key", "is", " old .")
    assert as_prefix[1].is_pair


@pytest.mark.parametrize("given", ["generated", "generated.text", "generated.gold", "generated.eval"])
def test_gulordava_format(tmp_path, given):
    write_gulordava(tmp_path)
    loaded = load([tmp_path / given])
    assert len(loaded.files) == 1 and not loaded.skips
    first, second = loaded.items
    assert (first.prefix, first.correct, first.wrong, first.after) == ("the key near the boxes", "is", "are",
                                                                        " old .")
    assert (first.subj_number, first.condition, first.n_attractors) == ("sg", "original", 1)
    assert (second.subj_number, second.condition, second.n_attractors) == ("pl", "nonce", 0)
    # The subject's index where the controller is a noun: 5 - 4 = 1, "key"; none where it is a verb.
    assert (first.subject_index, second.subject_index) == (1, None)
    # A directory finds the set once, with no .tab the annotations are absent.
    (tmp_path / "generated.tab").unlink()
    items = load([tmp_path]).items
    assert len(items) == 2 and items[0].condition is None and items[0].subj_number == "sg"


def test_linzen_four_field_gold():
    """The fixture in Linzen et al.'s layout: forms, attractors and the subject's number read
    off the correct form; the item whose two forms are equal is skipped and counted."""
    loaded = load([LINZEN])
    assert loaded.files == [str(LINZEN)]
    items = {item.line: item for item in loaded.items}
    assert sorted(items) == [1, 2, 3, 4, 5, 7, 8, 9]
    first = items[1]
    assert (first.prefix, first.correct, first.wrong, first.after) == ("the keys to the cabinet", "are", "is",
                                                                        " on the table .")
    assert [items[k].n_attractors for k in sorted(items)] == [1, 1, 1, 1, 1, 0, 0, 1]
    assert [items[k].subj_number for k in sorted(items)] == ["pl", "sg", "pl", "sg", "pl", "sg", None, "pl"]
    assert all(item.condition is None and item.subject_index is None for item in items.values())
    assert [(s.reason, s.count, s.line) for s in loaded.skips] == [("correct and wrong forms are the same", 1, 6)]


@pytest.mark.parametrize("correct, wrong, number", [
    ("is", "are", "sg"), ("are", "is", "pl"), ("Was", "Were", "sg"), ("have", "has", "pl"),
    ("sees", "see", "sg"), ("watch", "watches", "pl"), ("carries", "carry", "sg"), ("progress", "progresses", "pl"),
    ("does", "do", "sg"), ("am", "is", None), ("put", "put", None), ("ran", "run", None), ("", "s", None),
])
def test_english_verb_number(correct, wrong, number):
    assert english_verb_number(correct, wrong) == number


@pytest.mark.parametrize("gold, reason", [
    ("3\tis\tare\t0", "the .gold index differs from the .eval index"),
    ("2\tis\tare\tmany", "the .gold attractor count is not a non-negative integer"),
    ("2\tis\tare\t-1", "the .gold attractor count is not a non-negative integer"),
    ("2\tis\tare\t\u00b2", "the .gold attractor count is not a non-negative integer"),  # a digit to isdigit
    ("2\tis\tare\t0\tx", "the .gold line has 5 fields: 4 (Linzen) or 8 or more (Gulordava) expected"),
])
def test_linzen_gold_problems_are_skipped_by_line(tmp_path, gold, reason):
    stem = tmp_path / "set"
    stem.with_suffix(".text").write_text("the key is old . <eos>\nthe keys are old . <eos>\n")
    stem.with_suffix(".eval").write_text("2\n2\n")
    stem.with_suffix(".gold").write_text(gold + "\n2\tare\tis\t0\n")
    items, skips = read_gulordava(stem)
    assert [(s.reason, s.line) for s in skips] == [(reason, 1)]
    assert [(i.prefix, i.correct, i.subj_number) for i in items] == [("the keys", "are", "pl")]


def test_gold_without_text_is_counted(tmp_path):
    write_gulordava(tmp_path, text=False)
    items, skips = read_gulordava(tmp_path / "generated.gold")
    assert not items and skips[0].count == 2 and "generated.text missing" in skips[0].reason


@pytest.mark.shared_data
def test_real_sets_load():
    blimp = load([shared_data("agreement", "blimp", "distractor_agreement_relational_noun.jsonl")])
    assert len(blimp.items) == 1000 and not blimp.skips
    gulordava = load([shared_data("agreement", "gulordava") / "generated"])
    assert len(gulordava.items) == 410 and not gulordava.skips
    conditions = [i.condition for i in gulordava.items]
    assert conditions.count("original") == 41 and conditions.count("nonce") == 369
    # The subject's position from the .tab for the 250 noun-controlled items ("The thing to keep in mind is").
    located = [i for i in gulordava.items if i.subject_index is not None]
    assert len(located) == 250
    original = next(i for i in located if i.prefix == "The thing to keep in mind")
    assert original.subject_index == 1
    suite = load([BUNDLED_SUITE])
    assert len(suite.items) == 3600 and not suite.skips


# ---- statistics -----------------------------------------------------------------------------

def test_wilson_interval_known_values():
    assert wilson(8, 10) == pytest.approx([0.4902, 0.9433], abs=1e-4)
    assert wilson(0, 10) == pytest.approx([0.0, 0.2775], abs=1e-4)
    assert wilson(50, 100) == pytest.approx([0.4038, 0.5962], abs=1e-4)
    assert wilson(0, 0) == [0.0, 1.0]


def test_baselines_and_breakdowns():
    items = [
        Item("a", 1, "are", "is", "p", condition="c1", n_attractors=0, subj_number="pl"),  # shorter: wrong
        Item("a", 2, "is", "are", "p", condition="c1", n_attractors=1, subj_number="sg"),  # shorter: right
        Item("b", 3, "sees", "see", "p", condition="c2", n_attractors=1, subj_number="sg"),
        Item("b", 4, "has", "had", "p", condition="c2"),  # no number; a length tie
    ]
    assert baseline_scores(items[3]) == {"always_singular": None, "always_plural": None, "shorter_form": 0.5}
    summary = summarize(list(zip(items, [True, True, False, True])))
    assert (summary["accuracy"], summary["n"], summary["skipped"]) == (0.75, 4, 0)
    assert summary["ci95"] == pytest.approx(wilson(3, 4))
    assert summary["baselines"] == {"always_singular": pytest.approx(2 / 3), "always_plural": pytest.approx(1 / 3),
                                    "shorter_form": pytest.approx(1.5 / 4)}
    assert summary["baselines_n"]["always_singular"] == 3
    assert summary["by_condition"]["c2"]["accuracy"] == 0.5
    assert list(summary["by_attractors"]) == ["0", "1", "unknown"] and summary["by_attractors"]["1"]["n"] == 2
    assert summary["by_attractors"]["unknown"]["n"] == 1 and summary["by_subj_number"]["unknown"]["n"] == 1
    assert summary["by_file"]["a"]["baselines"]["shorter_form"] == 0.5
    assert summary["by_subj_number"]["sg"]["baselines"]["always_singular"] == 1.0


# ---- the command line and the observer ------------------------------------------------------

def test_agree_cli_json_and_plot(tiny_model_path, tmp_path):
    suite = tmp_path / "suite.tsv"
    suite.write_text(TSV, encoding="utf-8")
    blimp = tmp_path / "pairs.jsonl"
    blimp.write_text("\n".join(json.dumps(r) for r in BLIMP) + "\n", encoding="utf-8")
    plot = tmp_path / "acc.png"
    result = invoke("agree", tiny_model_path, suite, blimp, "--json", "--plot", plot)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 4 and summary["skipped"] == 4 and len(summary["ci95"]) == 2
    assert set(summary["by_condition"]) == {"pp", "simple", "sv"}
    assert set(summary["by_condition"]["pp"]) >= {"accuracy", "n", "ci95"}
    assert set(summary["baselines"]) == {"always_singular", "always_plural", "shorter_form"}
    assert summary["by_attractors"]["1"]["n"] == 1
    assert "skipped 4 items" in result.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    table = invoke("agree", tiny_model_path, suite)
    assert table.exit_code == 0 and "always-sg" in table.stdout and "simple" in table.stdout


def test_agree_full_suite_runs(tiny_model_path):
    result = invoke("agree", tiny_model_path, BUNDLED_SUITE, "--json", "--by", "distance")
    summary = json.loads(result.stdout)
    assert summary["n"] == 3600 and summary["skipped"] == 0 and len(summary["by_condition"]) == 9
    # Content-blind baselines on the balanced suite: every cell has as many sg as pl items.
    assert summary["baselines"]["always_singular"] == 0.5
    # Every item says where its subject is: no unknown distance.
    assert sum(g["n"] for g in summary["by_distance"].values()) == 3600 and "unknown" not in summary["by_distance"]


def test_agree_on_the_linzen_fixture(tiny_model_path):
    result = invoke("agree", tiny_model_path, LINZEN, "--json", "--by", "distance")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # Nine lines: one with equal forms, one whose "Are" the model has never seen.
    assert (summary["n"], summary["skipped"]) == (7, 2)
    assert summary["skipped_reasons"] == {"correct and wrong forms are the same": 1,
                                          "a form has a character outside the model's vocabulary": 1}
    assert {k: g["n"] for k, g in summary["by_attractors"].items()} == {"0": 2, "1": 5}
    assert {k: g["n"] for k, g in summary["by_subj_number"].items()} == {"pl": 3, "sg": 3, "unknown": 1}
    assert "by_distance" not in summary and "no breakdown by distance" in result.stderr


@pytest.mark.parametrize("content, name, message", [
    ("just some text\n", "notes.txt", "unknown format"),
    ("prefix\tcorrect\nthe key\tis\n", "bad.tsv", "unknown format"),
    ("prefix\tcorrect\twrong\nthe key\tis\n", "short.tsv", "malformed row"),
    ("prefix\tcorrect\twrong\nthe key\tis\tis\n", "same.tsv", "the same"),
    ("prefix\tcorrect\twrong\nthe key\tisé\tare\n", "unk.tsv", "outside the model's vocabulary"),
    (None, "missing.tsv", "no such file"),
    (None, "generated.gold", "generated.text missing"),
])
def test_agree_bad_input_is_one_line(tiny_model_path, tmp_path, content, name, message):
    if name == "generated.gold":
        write_gulordava(tmp_path, text=False)
    elif content is not None:
        (tmp_path / name).write_text(content, encoding="utf-8")
    assert_one_line_error(invoke("agree", tiny_model_path, tmp_path / name), message)


def test_agree_unknown_format_choice(tiny_model_path, tmp_path):
    assert_one_line_error(invoke("agree", tiny_model_path, tmp_path, "--format", "xml"), "--format", code=2)


def test_observer_adds_history_columns(lm, tmp_path):
    from charlm.agreement.observer import AgreementObserver

    suite = tmp_path / "suite.tsv"
    suite.write_text(TSV, encoding="utf-8")
    lines = []

    class Run:  # the attributes the training loop's run gives observers
        pass

    run_ = Run()
    run_.lm, run_.log = lm, lines.append
    observer = AgreementObserver(suite)
    observer.on_train_begin(run_)
    extra = observer.on_epoch_end(run_, 3, {})
    assert set(extra) == {"agreement_accuracy", "agreement_pp", "agreement_simple"}
    # The accuracies of the items scored one by one, overall and per condition.
    from charlm.agreement.scoring import ItemScorer

    scored, _ = ItemScorer(lm).score(observer.loaded.items)
    assert len(scored) == 2

    def accuracy(condition=None):
        oks = [s.ok for s in scored if condition in (None, s.item.condition)]
        return sum(oks) / len(oks)

    assert extra == {"agreement_accuracy": accuracy(), "agreement_pp": accuracy("pp"),
                     "agreement_simple": accuracy("simple")}
    assert lines[0].startswith(f"epoch 3: agreement accuracy {accuracy():.4f}") and "4 skipped" in lines[0]


def test_observer_refuses_unusable_file(tmp_path):
    from charlm.agreement.observer import AgreementObserver
    from charlm.errors import CharlmError

    bad = tmp_path / "bad.tsv"
    bad.write_text("prefix\tcorrect\twrong\n", encoding="utf-8")
    with pytest.raises(CharlmError, match="no usable agreement items"):
        AgreementObserver(bad)


@pytest.mark.slow  # trains
def test_train_with_agreement(tiny_corpus, tmp_path):
    out, corpus = tmp_path / "run", tmp_path / "small.txt"
    corpus.write_text(tiny_corpus.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    result = invoke("train", corpus, "-o", out, "--layers", 1, "--hidden", 16, "--embedding", 8,
                    "--batch-size", 4, "--bptt", 16, "--epochs", 2, "--val-fraction", 0.1,
                    "--agreement", BUNDLED_SUITE, "--quiet")
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
    assert "agreement_accuracy" in (out / "history.csv").read_text().splitlines()[0]
    # The epoch whose model was saved last is the model file: `charlm agree` scores it the same.
    saved = [row for row in history if row["saved"]][-1]
    agree = json.loads(invoke("agree", out / "model.keras", BUNDLED_SUITE, "--json").stdout)
    assert agree["n"] == 3600 and saved["agreement_accuracy"] == agree["accuracy"]
    assert all(round(row["agreement_accuracy"] * 3600, 6).is_integer() for row in history)


@pytest.mark.slow
def test_train_with_syntaxgym_suites(tiny_corpus, tmp_path):
    """--agreement takes SyntaxGym suites too: each epoch's row has the mean over suites, and the
    saved model's `charlm agree` score on the same suites equals the last saved epoch's."""
    suites = REPO / "corpora" / "agreement" / "data" / "agreement_syntaxgym"
    out, corpus = tmp_path / "run", tmp_path / "small.txt"
    corpus.write_text(tiny_corpus.read_text(encoding="utf-8")[:3000], encoding="utf-8")
    result = invoke("train", corpus, "-o", out, "--layers", 1, "--hidden", 16, "--embedding", 8,
                    "--batch-size", 4, "--bptt", 16, "--epochs", 2, "--val-fraction", 0.1,
                    "--agreement", suites / "simple.json", "--quiet")
    assert result.exit_code == 0, result.output
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all("syntaxgym_simple" in row for row in history)
    saved = [row for row in history if row["saved"]][-1]
    agree = json.loads(invoke("agree", out / "model.keras", suites / "simple.json", "--json").stdout)
    assert agree["syntaxgym"]["n_items"] == 400
    assert saved["syntaxgym_score"] == agree["syntaxgym"]["score"] == saved["syntaxgym_simple"]


# ---- parsers never crash on random or truncated input ----------------------------------------

FIELD = st.text(alphabet=string.ascii_letters + " \t.{}\"'\\:,é0123456789-", max_size=30)


def parse_text(reader, content: str, suffix: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_text(content, encoding="utf-8")
        items, skips = reader(path)
    assert all(isinstance(i, Item) for i in items)
    return items, skips


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(FIELD, max_size=9), max_size=6), cut=st.integers(0, 400))
def test_tsv_parser_never_crashes(rows, cut):
    header = "prefix\tcorrect\twrong\tsuffix\tcondition\tn_attractors\tsubj_number"
    content = "\n".join([header, *("\t".join(r) for r in rows)])
    items, skips = parse_text(read_tsv, content[: len(header) + cut], ".tsv")
    assert len(items) + sum(s.count for s in skips) <= len(rows)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.dictionaries(st.sampled_from(["sentence_good", "sentence_bad", "one_prefix_prefix",
                                                         "one_prefix_word_good", "one_prefix_word_bad", "UID"]),
                                        st.one_of(FIELD, st.integers(), st.none())), max_size=5),
       cut=st.integers(0, 600), noise=FIELD)
def test_blimp_parser_never_crashes(records, cut, noise):
    content = "\n".join([*(json.dumps(r) for r in records), noise])
    parse_text(read_blimp, content[:cut], ".jsonl")


@settings(max_examples=40, deadline=None)
@given(text=st.lists(FIELD, max_size=4), gold=st.lists(st.lists(FIELD, max_size=12), max_size=4),
       evals=st.lists(st.one_of(st.integers(-3, 12).map(str), FIELD), max_size=4))
def test_gulordava_parser_never_crashes(text, gold, evals):
    with tempfile.TemporaryDirectory() as folder:
        stem = Path(folder) / "set"
        stem.with_suffix(".text").write_text("\n".join(text), encoding="utf-8")
        stem.with_suffix(".gold").write_text("\n".join("\t".join(g) for g in gold), encoding="utf-8")
        stem.with_suffix(".eval").write_text("\n".join(evals), encoding="utf-8")
        items, skips = read_gulordava(stem)
    assert all(isinstance(i, Item) for i in items)
