"""The bundled suites as SyntaxGym JSON: written from the same items as agreement.tsv,
read back by charlm agree's SyntaxGym reader, and scored to the same decisions as the
TSV path where the two measure the same thing."""

from __future__ import annotations

import json

import pytest

from charlm.agreement.syntaxgym import read_suite as read_gym_suite
from corpora.agreement import DATA_DIR
from corpora.agreement.grammar import generate_suites
from corpora.agreement.suite_syntaxgym import PREDICTION, write_syntaxgym_suites
from corpora.agreement.suite_tsv import read_suite
from tests.helpers import BUNDLED_SUITE

GYM_DIR = DATA_DIR / "agreement_syntaxgym"


def test_written_suites_read_back(tmp_path):
    suites = generate_suites(8, seed=3)
    items = [item for condition_items in suites.values() for item in condition_items]
    paths = write_syntaxgym_suites(tmp_path, items)
    assert [p.stem for p in paths] == list(suites)
    for path, (condition, condition_items) in zip(paths, suites.items()):
        read, skips = read_gym_suite(path)
        assert not skips and read[0].name == condition and read[0].metric == "sum"
        assert [f.text for f in read[0].predictions] == [PREDICTION]
        for item, gym in zip(condition_items, read[0].items, strict=True):
            assert gym.conditions == {"grammatical": ((1, item.prefix), (2, item.correct), (3, item.suffix)),
                                      "ungrammatical": ((1, item.prefix), (2, item.wrong), (3, item.suffix))}
        records = json.loads(path.read_text(encoding="utf-8"))["items"]
        assert [r["subject_index"] for r in records] == [item.subject_index for item in condition_items]


def test_committed_json_matches_the_committed_tsv(tmp_path):
    write_syntaxgym_suites(tmp_path, read_suite(BUNDLED_SUITE))
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in GYM_DIR.iterdir()) and len(written) == 9
    for name in written:
        assert (tmp_path / name).read_bytes() == (GYM_DIR / name).read_bytes(), name


def compare(lm, items_tsv, gym_dir):
    """Per item, the TSV path's and the SyntaxGym path's decisions, in the same order."""
    from charlm.agreement.formats import load
    from charlm.agreement.gym_scoring import run_syntaxgym
    from charlm.agreement.scoring import run_agreement

    tsv = run_agreement(lm, [items_tsv])
    loaded = load([gym_dir])
    gym = run_syntaxgym(lm, loaded.suites, loaded.suite_skips)
    assert not tsv.skips and not gym.skips
    by_condition = {}
    for scored in tsv.scored:
        by_condition.setdefault(scored.item.condition, []).append(scored.ok)
    gym_by_condition = {suite["name"]: [item["correct"] for item in suite["items"]]
                        for suite in gym.summary["suites"]}
    assert by_condition.keys() == gym_by_condition.keys()
    return tsv.summary, gym.summary, by_condition, gym_by_condition


def test_same_accuracy_both_ways(lm):
    """The tiny character model scores the bundled suite to the same accuracy through the
    SyntaxGym files as through agreement.tsv, overall and per condition.

    The two measure nearly the same thing: the TSV path compares log p(" " + verb + boundary)
    (the boundary being the space or line break after the verb), the SyntaxGym region is
    " " + verb alone; after a whole verb the boundary is nearly certain either way."""
    tsv, gym, tsv_ok, gym_ok = compare(lm, BUNDLED_SUITE, GYM_DIR)
    assert gym["n_items"] == tsv["n"] == 3600 and gym["n_suites"] == 9
    assert gym["score"] == pytest.approx(tsv["accuracy"], abs=1e-12)
    for name, group in tsv["by_condition"].items():
        suite = next(s for s in gym["suites"] if s["name"] == name)
        assert (suite["n"], suite["correct"]) == (group["n"], group["correct"]), name
    differ = sum(a != b for name in tsv_ok for a, b in zip(tsv_ok[name], gym_ok[name], strict=True))
    assert differ == 0


def test_word_model_same_decisions_by_construction():
    """A word model scores the verb's word alone both ways: the decisions are the same item by item."""
    from tests.test_agreement import untrained

    corpus = (DATA_DIR / "train.txt").read_text(encoding="utf-8")[:400_000]
    lm = untrained("word", corpus)
    _, _, tsv_ok, gym_ok = compare(lm, BUNDLED_SUITE, GYM_DIR)
    assert tsv_ok == gym_ok


@pytest.mark.slow  # scores 3,400 sentences
def test_suites_the_size_of_hu_et_al_are_scored_whole(lm, tiny_model_path, tmp_path):
    """34 suites, 850 items, 3,400 sentences (the size of Hu et al. 2020's set, as
    scripts/bench_syntaxgym.py times them), with a compound prediction and empty regions: every
    item and sentence scored through the command line, none skipped."""
    from corpora.agreement.suite_syntaxgym import write_benchmark_suites
    from tests.helpers import invoke

    folder = write_benchmark_suites(tmp_path / "suites", read_suite(BUNDLED_SUITE))
    result = invoke("agree", tiny_model_path, folder, "--json")
    assert result.exit_code == 0, result.output
    gym = json.loads(result.stdout)["syntaxgym"]
    assert (gym["n_suites"], gym["n_items"], gym["skipped"]) == (34, 850, 0)
    assert sum(len(item["surprisals"]) for suite in gym["suites"] for item in suite["items"]) == 3400
