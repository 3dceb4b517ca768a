"""charlm probe (charlm.inspect.probe and the command): the lemma split, the control task, the
intervals, the values read at each position against charlm's per-token activations, every
figure against a recomputation, and the command's output and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.agreement.formats import Item
from charlm.agreement.formats import load as load_suite
from charlm.agreement.scoring import run_agreement
from charlm.errors import CharlmError
from charlm.evaluate import start_ids
from charlm.inspect.activations import activations
from charlm.inspect.logistic import fit
from charlm.inspect.positions import at_position
from charlm.inspect.probe import accuracy, control_labels, probe_suite, read_items, split_by_lemma
from tests.helpers import assert_one_line_error, invoke
from tests.test_activations import untrained

NOUNS = [("key", "keys"), ("box", "boxes"), ("knife", "knives"), ("door", "doors"), ("lamp", "lamps"),
         ("coin", "coins"), ("table", "tables"), ("bench", "benches"), ("leaf", "leaves"), ("road", "roads")]
PLACES = ["near the chair", "on the tables", "behind the door", "in the boxes"]


def write_suite(path, nouns=NOUNS, subject_index=True, number_column=True) -> str:
    """A TSV suite of 'the NOUN [PLACE] is/are ...' items for each noun, in both numbers:
    the subject's head noun is word 1, followed by 0 or 3 words before the verb."""
    header = ["prefix", "correct", "wrong", "suffix", "condition", "subj_number", "subject_index"]
    rows = ["\t".join(header)]
    for sg, pl in nouns:
        for number, noun in (("sg", sg), ("pl", pl)):
            correct, wrong = ("is", "are") if number == "sg" else ("are", "is")
            for place in ["", *PLACES]:
                prefix = f"the {noun} {place}".strip()
                condition = "pp" if place else "simple"
                rows.append("\t".join([prefix, correct, wrong, "old .", condition,
                                       number if number_column else "NA", "1" if subject_index else "NA"]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("probe") / "suite.tsv")


@pytest.fixture(scope="module")
def reading(lm, suite):
    return read_items(lm, load_suite([suite]).items)


def test_the_split_keeps_every_lemma_on_one_side():
    rng = np.random.default_rng(0)
    lemmas = [f"noun{k % 23}" for k in range(400)]
    labels = rng.integers(0, 2, 400)
    for seed in range(5):
        test = split_by_lemma(lemmas, labels, 0.3, seed)
        train_lemmas = {lemma for lemma, t in zip(lemmas, test) if not t}
        test_lemmas = {lemma for lemma, t in zip(lemmas, test) if t}
        assert not train_lemmas & test_lemmas and len(train_lemmas | test_lemmas) == 23
        assert 0.3 <= test.mean() < 0.3 + 18 / 400  # whole lemmas, until there are enough
        assert set(labels[test]) == set(labels[~test]) == {0, 1}
    np.testing.assert_array_equal(split_by_lemma(lemmas, labels, 0.3, 1), split_by_lemma(lemmas, labels, 0.3, 1))
    assert not np.array_equal(split_by_lemma(lemmas, labels, 0.3, 1), split_by_lemma(lemmas, labels, 0.3, 2))


def test_too_few_lemmas_or_items_or_one_number_a_side_are_one_line_errors():
    with pytest.raises(CharlmError, match="3 lemma.*at least 4 subject lemmas and 20 items"):
        split_by_lemma(["a", "b", "c"] * 10, [0, 1] * 15)
    with pytest.raises(CharlmError, match="10 item.*at least 4 subject lemmas and 20 items"):
        split_by_lemma(list("abcdefghij"), [0, 1] * 5)
    with pytest.raises(CharlmError, match="one number only"):  # every lemma has a single number
        split_by_lemma([f"n{k % 6}" for k in range(60)], [k % 6 % 2 for k in range(60)], 0.1)


def test_the_control_task_gives_each_lemma_one_random_label():
    lemmas = [f"noun{k % 200}" for k in range(2000)]
    control = control_labels(lemmas, 0.3, seed=4)
    for lemma in set(lemmas):
        assert len({c for c, other in zip(control, lemmas) if other == lemma}) == 1
    np.testing.assert_array_equal(control, control_labels(lemmas, 0.3, seed=4))
    assert 0.2 < control.mean() < 0.4  # 200 lemmas drawn with probability 0.3


def test_accuracy_carries_the_hand_worked_wilson_interval():
    result = accuracy([True] * 8 + [False] * 2)
    assert result["accuracy"] == 0.8 and result["n"] == 10
    # p = 0.8, z = 1.96: centre (0.8 + 0.19208) / 1.38415, half 1.96 * sqrt(0.016 + 0.0096) / 1.38415
    np.testing.assert_allclose(result["ci95"], [0.49016, 0.94331], atol=1e-5)
    assert accuracy([])["accuracy"] is None


def test_the_values_read_are_those_of_each_item_read_alone(lm, reading):
    first = len(start_ids(lm.tokenizer))
    for k in (0, 7, len(reading.aligned) - 1):
        a = reading.aligned[k]
        acts = activations(lm, a.item.prefix)
        for layer in range(lm.config.layers):
            for name in ("h", "c", "f", "i", "g", "o"):
                for index in {*a.positions.values(), *a.steps}:
                    if index >= first:  # the context's own token is not in acts
                        np.testing.assert_allclose(reading.values[layer][name][reading.row[(k, index)]],
                                                   acts.get(name, layer)[index - first], atol=1e-5)


def test_right_and_wrong_are_charlm_agrees_decisions(lm, suite, reading):
    agree = run_agreement(lm, [suite])
    assert [s.ok for s in agree.scored] == list(reading.ok)
    assert len(reading.aligned) == agree.summary["n"] == 2 * len(NOUNS) * (1 + len(PLACES))


def test_every_figure_matches_a_recomputation(reading):
    labels = reading.labels
    test = split_by_lemma([a.lemma for a in reading.aligned], labels, 0.3, 0)
    result = probe_suite(reading, test, 0.01, 0.3, 0)
    assert [p["name"] for p in result["positions"]] == ["before_subject", "subject", "subject+1", "subject+2",
                                                        "before_verb"]
    assert result["split"]["train_items"] + result["split"]["test_items"] == result["items"] == len(labels)
    assert len(result["probes"]) == 5 * 2 * 6  # positions x layers x values
    for position in result["positions"]:
        pairs = at_position(reading.aligned, position["name"])
        items = np.array([k for k, _ in pairs])
        on_test = test[items]
        majority = int(labels[items][~on_test].mean() > 0.5)
        assert position["majority"]["accuracy"] == np.mean(labels[items][on_test] == majority)
        assert position["n_test"] == on_test.sum()
        entry = next(e for e in result["probes"] if e["position"] == position["name"] and e["layer"] == 2
                     and e["value"] == "c")
        x = reading.values[1]["c"][reading.rows(pairs)]
        probe = fit(x[~on_test], labels[items][~on_test], 0.01)
        right = probe.predict(x[on_test]) == labels[items][on_test]
        assert entry["accuracy"] == right.mean() and entry["n"] == on_test.sum()
        assert entry["ci95"] == accuracy(right)["ci95"]
        ok = reading.ok[items][on_test]
        assert entry["right"]["n"] == ok.sum() and entry["wrong"]["n"] == (~ok).sum()
        assert entry["right"]["n"] * (entry["right"]["accuracy"] or 0) + \
            entry["wrong"]["n"] * (entry["wrong"]["accuracy"] or 0) == pytest.approx(right.sum())
        assert entry["selectivity"] == pytest.approx(entry["accuracy"] - entry["control"]["accuracy"])


@pytest.mark.slow
def test_the_command_prints_json_and_draws_the_plot(tiny_model_path, suite, tmp_path):
    plot = tmp_path / "probe.png"
    result = invoke("probe", tiny_model_path, suite, "--values", "h,c", "--json", "--plot", plot)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"model", "suites", "cell", "layers", "units", "items", "split", "positions", "probes", "best", "l2",
            "agreement", "labels", "number_from", "without_subject_index"} <= out.keys()
    assert out["labels"] == {"sg": 50, "pl": 50} and out["number_from"]["subj_number column"] == 100
    entry = out["probes"][0]
    assert {"position", "layer", "value", "accuracy", "n", "ci95", "control", "selectivity", "right",
            "wrong"} <= entry.keys()
    assert {e["value"] for e in out["probes"]} == {"h", "c"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = invoke("probe", tiny_model_path, suite, "--values", "h")
    assert text.exit_code == 0 and "before verb (test n=" in text.stdout and "selectivity" not in text.stderr


def test_numbers_from_the_verb_forms_and_items_without_subjects(tiny_model_path, tmp_path):
    suite = write_suite(tmp_path / "s.tsv", subject_index=False, number_column=False)
    out = json.loads(invoke("probe", tiny_model_path, suite, "--values", "h", "--json").stdout)
    assert out["number_from"] == {"subj_number column": 0, "verb forms": 100}
    assert out["without_subject_index"] == 100 and [p["name"] for p in out["positions"]] == ["before_verb"]
    assert out["split"]["test_lemmas"] == out["split"]["test_items"]  # each item its own group


@pytest.mark.parametrize("args, fragments", [
    (["--alpha", "0.1,x"], ["--alpha"]),
    (["--alpha", "-1"], ["--alpha"]),
    (["--layer", "3"], ["--layer 3", "2 layer(s)"]),
    (["--plot", "out.svg"], ["PNG"]),
    (["--values", "h,z"], ["no 'z'"]),
])
def test_bad_options_are_one_line_errors(tiny_model_path, suite, args, fragments):
    assert_one_line_error(invoke("probe", tiny_model_path, suite, *args), *fragments)


def test_bad_suites_are_one_line_errors(tiny_model_path, tmp_path):
    bare = tmp_path / "bare.tsv"
    bare.write_text("prefix\tcorrect\twrong\nthe key\tbig\tsmall\nthe keys\tsmall\tbig\n", encoding="utf-8")
    assert_one_line_error(invoke("probe", tiny_model_path, bare), "no subject number", "subj_number")
    few = write_suite(tmp_path / "few.tsv", nouns=NOUNS[:3])
    assert_one_line_error(invoke("probe", tiny_model_path, few), "too few items", "3 lemma", "at least 4")
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("sentence_good\tsentence_bad\nthe key is old .\tthe key are old .\n", encoding="utf-8")
    assert_one_line_error(invoke("probe", tiny_model_path, pairs), "no agreement item can be probed", "sentence pair")
    assert_one_line_error(invoke("probe", tiny_model_path, tmp_path / "missing.tsv"), "no agreement items")


@pytest.mark.parametrize("cell, kind", [("gru", "byte"), ("rnn", "word"), ("lstm", "word")])
def test_other_cells_and_tokenizers_read_the_values_of_each_item_alone(cell, kind):
    lm = untrained(cell, kind)
    items = [Item("s", 1, "are", "is", prefix="the keys to the cabinet", after=" .", subject_index=1),
             Item("s", 2, "is", "are", prefix="the key to the cabinets", after=" .", subject_index=1),
             Item("s", 3, "is", "are", prefix="a cat near the dogs", after=" .", subject_index=1)]
    reading = read_items(lm, items)
    first = len(start_ids(lm.tokenizer))
    assert [a.label for a in reading.aligned] == [1, 0, 0]
    for k, a in enumerate(reading.aligned):
        acts = activations(lm, a.item.prefix)
        words = a.item.prefix.split()
        assert a.positions["subject"] - first == (1 if kind == "word" else len(" ".join(words[:2])) - 1)
        for layer in range(2):
            for name in acts.values[layer]:
                for index in a.steps:
                    np.testing.assert_allclose(reading.values[layer][name][reading.row[(k, index)]],
                                               acts.get(name, layer)[index - first], atol=1e-5)
