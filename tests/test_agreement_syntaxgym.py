"""SyntaxGym suites in charlm agree: the formula parser, reading suites, region surprisals
checked by hand against the model's per-token log-probabilities, results per item,
prediction and suite, and bad input (one line naming the file and the item)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlm.agreement.formats import detect, load
from charlm.agreement.stats import wilson
from charlm.agreement.syntaxgym import FormulaError, parse_formula, read_suite, sentence_pieces
from tests.helpers import FIXTURES, assert_one_line_error, invoke

SUITE = FIXTURES / "syntaxgym" / "number_agreement.json"


# ---- formulas -------------------------------------------------------------------------------

def test_formulas_parse_and_evaluate():
    s = {(6, "match_sing"): 3.0, (6, "mismatch_sing"): 5.0, (2, "cond_a"): 1.0, (3, "cond_a"): 2.0,
         (2, "cond_b"): 1.5, (3, "cond_b"): 1.0, (1, "x-y"): 0.0004}
    cases = {
        "[(6;%match_sing%) < (6;%mismatch_sing%)]": True,
        "(6;%match_sing%) > (6;%mismatch_sing%)": False,
        "(2;%cond_a%) + (3;%cond_a%) > (2;%cond_b%) + (3;%cond_b%)": True,
        "(2;%cond_a%) - (3;%cond_a%) < -0.5": True,
        "(2;%cond_a%)-(3;%cond_a%)<-1.5": False,
        "[(6;%match_sing%) < (6;%mismatch_sing%)] & [(2;%cond_a%) > (2;%cond_b%)]": False,
        "[(6;%match_sing%) < (6;%mismatch_sing%)] | [(2;%cond_a%) > (2;%cond_b%)]": True,
        "(1;%x-y%) = 0": True,  # equal within SyntaxGym's tolerance
        "(2;%cond_a%) = (2;%cond_b%)": False,
        "((2;%cond_a%) + 1) = 2 & ((3;%cond_a%) = 2.0 | (2;%cond_a%) > 9)": True,
        "(2;%cond_a%) < 2 | (2;%cond_a%) > 3 & (3;%cond_a%) > 9": True,  # & binds tighter than |
    }
    for text, expected in cases.items():
        formula = parse_formula(text)
        assert formula(s) is expected, text
    assert parse_formula("(2;%cond_a%) + (3;%cond_a%) > (2;%cond_b%)").references == (
        (2, "cond_a"), (3, "cond_a"), (2, "cond_b"))


@pytest.mark.parametrize("text", [
    "", "(6;%a%)", "(6;%a%) + 1", "(6;%a%) < ", "(6;%a% < 1", "[(6;%a%) < 1)", "(6;%a%) < 1 < 2",
    "(6;a) < 1", "(x;%a%) < 1", "(6;%%) < 1", "(1.5;%a%) < 1", "(6;%a%) < 1 &", "(6;%a%) << 1",
    "__import__('os').system('true')", "(6;%a%) < 1 ; 2", "((6;%a%) < 1) + 2 > 1", "(6;%a%) * 2 < 1",
])
def test_bad_formulas_do_not_parse(text):
    with pytest.raises(FormulaError):
        parse_formula(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="()[];%&|<>=+-0123456789.ab_ ", max_size=40))
def test_parser_never_crashes(text):
    try:
        formula = parse_formula(text)
    except FormulaError:
        return
    formula({ref: 1.0 for ref in formula.references})


def test_sentence_pieces_skip_empty_regions():
    regions = ((1, "the"), (3, ""), (2, "keys"), (4, "are"), (5, ""))
    assert sentence_pieces(regions, word=False) == ["the ", "keys ", "", "are\n", ""]
    assert sentence_pieces(((1, ""), (2, "the")), word=False) == ["", "the\n"]
    assert "".join(sentence_pieces(regions, word=False)) == "the keys are\n"
    assert sentence_pieces(regions, word=True) == ["the", "keys", "", "are", ""]


# ---- reading ------------------------------------------------------------------------------

def test_fixture_suite_is_read_and_detected(tmp_path):
    assert detect(SUITE) == "syntaxgym"
    suites, skips = read_suite(SUITE)
    assert not skips and len(suites) == 1
    suite = suites[0]
    assert (suite.name, suite.metric, len(suite.items), len(suite.predictions)) == (
        "number_agreement_fixture", "sum", 3, 2)
    assert set(suite.items[1].conditions) == {"match_sing", "mismatch_sing", "match_plur", "mismatch_plur"}
    # Found by structure whatever the name; a directory gives its suites.
    copy = tmp_path / "suite.txt"
    shutil.copy(SUITE, copy)
    assert detect(copy) == "syntaxgym"
    loaded = load([tmp_path])
    assert not loaded.suites and "the directory holds no" in loaded.skips[0].reason  # .txt is not listed
    shutil.copy(SUITE, tmp_path / "b.json")
    loaded = load([tmp_path])
    assert len(loaded.suites) == 1 and loaded.files == [str(tmp_path / "b.json")]


def edited(tmp_path, name, change):
    record = json.loads(SUITE.read_text(encoding="utf-8"))
    change(record)
    path = tmp_path / name
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def test_items_that_do_not_fit_are_skipped_by_name(tmp_path):
    def break_items(record):
        del record["items"][0]["conditions"][1]  # item 1 lacks mismatch_sing
        record["items"][2]["conditions"][0]["regions"].pop()  # item 3: region numbers differ

    path = edited(tmp_path, "broken.json", break_items)
    suites, skips = read_suite(path)
    assert [item.number for item in suites[0].items] == [2]
    assert len(skips) == 2
    assert f"{path}, item 1: prediction 1 names condition 'mismatch_sing', which the item lacks" == skips[0].reason
    assert skips[1].reason.startswith(f"{path}, item 3: conditions have different region numbers")

    def missing_region(record):
        record["predictions"].append({"type": "formula", "formula": "(9;%match_sing%) > 0"})

    suites, skips = read_suite(edited(tmp_path, "region.json", missing_region))
    assert not suites[0].items and len(skips) == 3
    assert "item 2: prediction 3 names region 9 of condition 'match_sing', which the item lacks" in skips[1].reason


def test_formula_that_does_not_parse_skips_the_suite(tmp_path):
    def bad(record):
        record["predictions"][1]["formula"] = "(4;%match_sing%) <"

    path = edited(tmp_path, "bad.json", bad)
    suites, skips = read_suite(path)
    assert not suites and skips[0].count == 3
    assert skips[0].reason.startswith(f"{path}: prediction 2 '(4;%match_sing%) <' does not parse")


# ---- scoring, checked by hand ---------------------------------------------------------------

def hand_surprisals(lm, regions, metric="sum"):
    """Region -> bits from charlm.evaluate.text_logprobs of the whole sentence, a character a token."""
    from charlm.evaluate import text_logprobs

    filled = [number for number, content in sorted(regions) if content]
    pieces = [(number, content + ("\n" if number == filled[-1] else " ") if content else "")
              for number, content in sorted(regions)]
    sentence = "".join(piece for _, piece in pieces)
    ids, logp = text_logprobs(lm, sentence)
    assert len(ids) == len(sentence)  # one token a character
    out, position = {}, 0
    for number, piece in pieces:
        bits = [-logp[t] / math.log(2) for t in range(position, position + len(piece))]
        out[number] = (sum(bits) / len(bits) if bits else 0.0) if metric == "mean" else sum(bits)
        position += len(piece)
    return out


@pytest.mark.parametrize("metric", ["sum", "mean"])
def test_region_surprisals_match_per_token_numbers(lm, tmp_path, metric):
    from charlm.agreement.gym_scoring import run_syntaxgym

    path = edited(tmp_path, "suite.json", lambda record: record["meta"].update(metric=metric))
    suites, _ = read_suite(path)
    result = run_syntaxgym(lm, suites)
    summary = result.summary
    assert not result.skips and summary["n_items"] == 3 and summary["n_suites"] == 1
    suite, = summary["suites"]
    formulas = suites[0].predictions
    correct = 0
    for item, got in zip(suites[0].items, suite["items"]):
        lookup = {}
        for name, regions in item.conditions.items():
            expected = hand_surprisals(lm, regions, metric)
            for number, bits in expected.items():
                assert got["surprisals"][name][str(number)] == pytest.approx(bits, abs=2e-3), (item.number, name)
                lookup[(number, name)] = bits
        # Empty regions cost nothing.
        if item.number == 2:
            assert got["surprisals"]["match_sing"]["3"] == 0.0 and got["surprisals"]["match_sing"]["5"] == 0.0
        held = [formula(lookup) for formula in formulas]
        assert got["predictions"] == held and got["correct"] == all(held)
        correct += all(held)
    assert suite["correct"] == correct and suite["ci95"] == pytest.approx(wilson(correct, 3))
    assert summary["score"] == suite["accuracy"] == correct / 3
    for j, prediction in enumerate(suite["predictions"]):
        k = sum(item["predictions"][j] for item in suite["items"])
        assert (prediction["n"], prediction["correct"]) == (3, k)
    # Item 2's modifier region is empty in every condition: its "=" holds.
    assert suite["items"][1]["predictions"][1] is True


def test_word_model_region_is_its_words():
    from charlm.agreement.gym_scoring import RegionScorer, run_syntaxgym
    from tests.test_agreement import untrained

    lm = untrained("word", "the key keys is are near cabinet to boxes old here .\n")
    suites, _ = read_suite(SUITE)
    summary = run_syntaxgym(lm, suites).summary
    scorer = RegionScorer(lm)
    ids = lm.tokenizer.encode("\nthe keys near the cabinet are old .")
    logp = scorer.token_logprobs([ids])[0]
    bits = -logp / math.log(2)
    got = summary["suites"][0]["items"][0]["surprisals"]["match_plur"]
    # Tokens: <eol> the keys near the cabinet are old . -> regions 1: [1], 2: [2], 3: [3:6], 4: [6], 5: [7:9]
    expected = {"1": bits[0], "2": bits[1], "3": bits[2:5].sum(), "4": bits[5], "5": bits[6:8].sum()}
    assert got == pytest.approx(expected, abs=1e-6)


# ---- the command line ----------------------------------------------------------------------

def test_agree_cli_with_a_suite(tiny_model_path, tmp_path):
    tsv = tmp_path / "suite.tsv"
    tsv.write_text("prefix\tcorrect\twrong\nthe key\tis\tare\n", encoding="utf-8")
    result = invoke("agree", tiny_model_path, SUITE, tsv, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 1 and summary["syntaxgym"]["n_items"] == 3
    suite = summary["syntaxgym"]["suites"][0]
    assert suite["name"] == "number_agreement_fixture" and len(suite["predictions"]) == 2
    only = invoke("agree", tiny_model_path, SUITE, "--format", "syntaxgym", "--json")
    assert only.exit_code == 0, only.output
    gym = json.loads(only.stdout)
    assert "n" not in gym and gym["syntaxgym"]["suites"][0]["items"] == suite["items"]
    table = invoke("agree", tiny_model_path, SUITE)
    assert table.exit_code == 0, table.output
    assert "number_agreement_fixture" in table.stdout and "score (mean over 1 suites)" in table.stdout
    assert "[(4;%match_sing%) < (4;%mismatch_sing%)]" in table.stdout


def test_agree_cli_bad_suites(tiny_model_path, tmp_path):
    good = tmp_path / "good.json"
    shutil.copy(SUITE, good)
    neither = tmp_path / "neither.json"
    neither.write_text('{"meta": {}, "items": []}', encoding="utf-8")
    unparsable = edited(tmp_path, "unparsable.json",
                        lambda r: r["predictions"][0].update(formula="(4;%match_sing%) < & 1"))
    lacking = edited(tmp_path, "lacking.json", lambda r: r["items"][2]["conditions"].pop())
    result = invoke("agree", tiny_model_path, tmp_path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["syntaxgym"]
    assert [(s["file"], s["n"]) for s in summary["suites"]] == [(str(good), 3), (str(lacking), 2)]
    assert summary["score"] == pytest.approx((summary["suites"][0]["accuracy"] + summary["suites"][1]["accuracy"]) / 2)
    err = result.stderr
    assert len(err.splitlines()) == 1 and "skipped 4 items" in err
    assert f"{lacking}, item 3: prediction 1 names condition 'mismatch_plur', which the item lacks" in err
    assert f"{unparsable}: prediction 1" in err and "does not parse" in err
    assert f"{neither}: unknown format: neither a SyntaxGym suite" in err
    # Nothing scorable: one line, non-zero exit.
    assert_one_line_error(invoke("agree", tiny_model_path, neither), "neither a SyntaxGym suite", str(neither))
    assert_one_line_error(invoke("agree", tiny_model_path, unparsable), "nothing could be scored", "does not parse")


def test_plot_of_suites_alone_is_refused_in_one_line(tiny_model_path, tmp_path):
    lacking = edited(tmp_path, "lacking.json", lambda r: r["items"][2]["conditions"].pop())
    result = invoke("agree", tiny_model_path, lacking, "--plot", tmp_path / "x.png")
    assert_one_line_error(result, "--plot draws agreement items")
    assert not (tmp_path / "x.png").exists()


def test_other_json_is_refused_in_one_line(tiny_model_path, tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2, 3]\n", encoding="utf-8")
    assert_one_line_error(invoke("agree", tiny_model_path, path), "neither a SyntaxGym suite")
    forced = invoke("agree", tiny_model_path, path, "--format", "syntaxgym")
    assert_one_line_error(forced, "neither a SyntaxGym suite")


@pytest.mark.slow  # starts a subprocess
def test_syntaxgym_reader_is_light():
    from tests.helpers import run_python
    from tests.test_cli import NO_TENSORFLOW

    run = run_python("import sys\nimport charlm.agreement.syntaxgym\n" + NO_TENSORFLOW)
    assert run.returncode == 0, run.stderr


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=20)


@settings(max_examples=80, deadline=None)
@given(items=st.lists(st.one_of(JSON_VALUES, st.fixed_dictionaries({
           "item_number": st.integers(0, 5),
           "conditions": st.lists(st.fixed_dictionaries({
               "condition_name": st.sampled_from(["a", "b", "match_sing"]),
               "regions": st.lists(st.fixed_dictionaries({"region_number": st.one_of(st.integers(0, 5), JSON_VALUES),
                                                          "content": st.one_of(st.text(max_size=6), JSON_VALUES)}),
                                   max_size=4)}), max_size=3)})), max_size=4),
       meta=JSON_VALUES, predictions=st.one_of(JSON_VALUES, st.lists(st.fixed_dictionaries(
           {"formula": st.sampled_from(["(1;%a%) < (1;%b%)", "(2;%a%) = 0 & (1;%b%) > 1", "(1;%a%"])}), max_size=2)))
def test_suite_reader_never_crashes(tmp_path_factory, items, meta, predictions):
    path = tmp_path_factory.mktemp("gym") / "suite.json"
    path.write_text(json.dumps({"meta": meta, "region_meta": {}, "predictions": predictions, "items": items}),
                    encoding="utf-8")
    suites, skips = read_suite(path)
    for suite in suites:
        for item in suite.items:
            for formula in suite.predictions:
                assert all(c in item.conditions for _, c in formula.references)
