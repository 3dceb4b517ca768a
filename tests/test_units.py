"""charlm units: gate saturation (a hand-set model whose gates are known) and the units'
correlations with text features (against NumPy's own correlation of the same arrays)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from charlm.config import ModelConfig
from charlm.data.tokenizers import build_tokenizer
from charlm.inspect.activations import activations
from charlm.inspect.features import feature_correlations, text_features
from charlm.inspect.saturation import saturation
from charlm.nn.lm import LanguageModel
from charlm.nn.model import build_model
from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")[:3000]


def lstm_with_known_gates(units: int = 4) -> LanguageModel:
    """A 1-layer LSTM whose gates ignore the input: every recurrent and input weight 0, so each
    gate is sigmoid(its bias). Input gate bias -10 (always below 0.1), forget gate +10 (always
    above 0.9), output gate 0 (0.5: never saturated)."""
    tokenizer = build_tokenizer("char", TEXT)
    config = ModelConfig(cell="lstm", layers=1, hidden=units, embedding=4)
    model = build_model(config, tokenizer.vocab_size)
    cell = model.get_layer("lstm_0").cell
    cell.kernel.assign(np.zeros(cell.kernel.shape, "float32"))
    cell.recurrent_kernel.assign(np.zeros(cell.recurrent_kernel.shape, "float32"))
    cell.bias.assign(np.concatenate([np.full(units, -10.0), np.full(units, 10.0), np.zeros(units),
                                     np.zeros(units)]).astype("float32"))
    return LanguageModel(model, tokenizer, config)


def test_saturation_of_gates_with_known_values():
    result = saturation(lstm_with_known_gates(), TEXT)
    gates = result["layers"][0]
    assert result["tokens"] == len(TEXT)
    assert gates["i"]["left"] == [1.0] * 4 and gates["i"]["right"] == [0.0] * 4
    assert gates["f"]["left"] == [0.0] * 4 and gates["f"]["right"] == [1.0] * 4
    assert gates["o"]["left"] == [0.0] * 4 and gates["o"]["right"] == [0.0] * 4
    assert gates["f"]["median_right"] == 1.0


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_saturation_counts_the_values_activations_gives(cell):
    tokenizer = build_tokenizer("char", TEXT)
    config = ModelConfig(cell=cell, layers=2, hidden=6, embedding=4)
    model = build_model(config, tokenizer.vocab_size)
    rng = np.random.default_rng(3)
    for weight in model.weights:
        weight.assign(rng.normal(0, 1.5, weight.shape).astype("float32"))  # large: values saturate
    lm = LanguageModel(model, tokenizer, config)
    result = saturation(lm, TEXT[:700])
    acts = activations(lm, TEXT[:700])
    low, high = (-0.9, 0.9) if cell == "rnn" else (0.1, 0.9)
    for layer in range(2):
        for gate in (("h",) if cell == "rnn" else ("z", "r")):
            values = acts.get(gate, layer)
            np.testing.assert_allclose(result["layers"][layer][gate]["left"], (values < low).mean(0))
            np.testing.assert_allclose(result["layers"][layer][gate]["right"], (values > high).mean(0))
    assert max(max(g["right"]) for per in result["layers"] for g in per.values()) > 0  # not all zeros


def test_text_features_worked_by_hand():
    tokenizer = build_tokenizer("char", 'ab "c" (d [e]).\nf')
    features = text_features(tokenizer, 'ab "c" (d [e]).\nf')
    assert features["position_in_word"].tolist() == [1, 2, 0, 1, 2, 3, 0, 1, 2, 0, 1, 2, 3, 4, 5, 0, 1]
    assert features["position_in_line"].tolist() == list(range(1, 16)) + [0, 1]
    assert features["inside_quotes"].tolist() == [0, 0, 0, 1, 1, 1] + [0] * 11
    assert features["bracket_depth"].tolist() == [0] * 7 + [1, 1, 1, 2, 2, 1, 0, 0, 0, 0]
    assert features["word_in_sentence"].tolist() == [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 0, 1]
    word = build_tokenizer("word", "the keys .\nit is")
    assert set(text_features(word, "the keys .\nit is")) == {"position_in_line", "inside_quotes", "bracket_depth",
                                                             "word_in_sentence"}


def test_correlations_equal_numpy_on_the_same_arrays(lm):
    text = TEXT[:1500]
    extra = {"mine": np.cos(np.arange(len(text)) / 7.0)}
    result = feature_correlations(lm, text, names=("h", "c"), extra=extra, top=5)
    acts = activations(lm, text)
    features = {**text_features(lm.tokenizer, text), **extra}
    assert result["features"] == list(features)
    for name, values in features.items():
        for value in ("h", "c"):
            for layer in range(2):
                x = acts.get(value, layer)
                got = result["by_feature"][name]["correlations"][value][layer]
                if np.std(values) == 0:
                    assert got == [None] * x.shape[1]
                else:
                    expected = [np.corrcoef(x[:, unit], values)[0, 1] for unit in range(x.shape[1])]
                    np.testing.assert_allclose(got, expected, atol=1e-6)
        top = result["by_feature"][name]["top"]
        assert [abs(t["r"]) for t in top] == sorted((abs(t["r"]) for t in top), reverse=True)


def test_units_command_json_plot_and_feature_file(tiny_model_path, tmp_path):
    result = invoke("units", tiny_model_path, "--saturation", "--max-tokens", 500, "--json",
                    "--plot", tmp_path / "sat.png")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tokens"] == 500 and len(data["layers"]) == 2 and set(data["layers"][0]) == {"i", "f", "o"}
    assert (tmp_path / "sat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = tmp_path / "features.tsv"
    table.write_text("mine\n" + "".join(f"{k % 5}\n" for k in range(300)), encoding="utf-8")
    result = invoke("units", tiny_model_path, "--features", "--text", TEXT[:300], "--feature-file", table,
                    "--plot", tmp_path / "feat.png")
    assert result.exit_code == 0, result.stderr
    assert "mine" in result.stdout and "position_in_word" in result.stdout
    assert (tmp_path / "feat.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    ([], "--saturation, --features or --ablate"),
    (["--saturation", "--text", ""], "empty"),
    (["--saturation", "--file", "missing.txt"], "not found"),
    (["--features", "--text", "the keys", "--feature-file", "FEATURES"], "has 2 rows but the text has 8 tokens"),
    (["--features", "--text", "the keys", "--values", "q"], "has no 'q'"),
    (["--saturation", "--text", "the keys", "--plot", "out.svg"], "PNG"),
])
def test_bad_input_is_one_line(tiny_model_path, tmp_path, args, message):
    features = tmp_path / "f.tsv"
    features.write_text("x\n1\n2\n", encoding="utf-8")
    args = [str(features) if a == "FEATURES" else a for a in args]
    assert_one_line_error(invoke("units", tiny_model_path, *args), message)


def test_a_file_that_is_not_a_model(tmp_path):
    path = tmp_path / "model.keras"
    path.write_text("not a model", encoding="utf-8")
    assert_one_line_error(invoke("units", path, "--saturation"), "not a Keras model file")


# ---- --ablate ---------------------------------------------------------------------------------


def write_suite(path, items=None):
    """The small suite of tests/test_ablation.py as a TSV with every annotation column."""
    from tests.test_ablation import suite_items

    rows = ["prefix\tcorrect\twrong\tsuffix\tcondition\tn_attractors\tsubj_number\tsubject_index"]
    for item in suite_items() if items is None else items:
        rows.append("\t".join([item.prefix, item.correct, item.wrong, item.after.strip(), item.condition,
                               str(item.n_attractors), item.subj_number, str(item.subject_index)]))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_units_ablate_json_plot_and_table(tiny_model_path, tmp_path):
    suite = write_suite(tmp_path / "suite.tsv")
    result = invoke("units", tiny_model_path, suite, "--ablate", "--json", "--plot", tmp_path / "ablation.png",
                    "--random-sets", 1, "--traces", 2)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"model", "suites", "method", "baseline", "units", "null", "cumulative", "layers_ablated",
            "traces"} <= set(data)
    assert data["method"]["kind"] == "full" and data["n"] == 36 and data["skipped"] == 0
    assert len(data["units"]) == 64 and len(data["null"]["effects"]) == 64  # a full sweep: every unit is the null
    assert set(data["baseline"]["groups"]) == {"simple/sg/0", "simple/pl/0", "pp/sg/0", "pp/sg/1", "pp/pl/0",
                                               "pp/pl/1"}
    unit = data["units"][0]
    assert {"layer", "unit", "effect", "accuracy", "change", "groups", "worst_group", "worst_change", "z",
            "as_harmful"} <= set(unit)
    assert set(unit["groups"]) == set(data["baseline"]["groups"])
    assert data["cumulative"]["k"] == [1, 2, 4, 8, 16, 32, 64]
    assert [len(r) for r in data["cumulative"]["random"]] == [1] * 7
    assert [layer["layer"] for layer in data["layers_ablated"]] == [1, 2]
    traces = data["traces"]
    assert [(u["layer"], u["unit"]) for u in traces["units"]] == [(u["layer"], u["unit"]) for u in data["units"][:2]]
    assert set(traces["units"][0]["values"]) == {"i", "f", "g", "o", "c", "h"}
    assert all(len(v) == 6 for v in traces["units"][0]["values"]["c"].values())
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "every unit ablated" in result.stderr

    table = invoke("units", tiny_model_path, suite, "--ablate", "--unit", "2:5", "--unit", "1:0", "--random-units", 4,
                   "--random-sets", 0, "--traces", 0)
    assert table.exit_code == 0, table.stderr
    assert "intact" in table.stdout and "method: given" in table.stdout and "all of layer 2 ablated" in table.stdout
    listed = [line.split()[1] for line in table.stdout.splitlines() if re.match(r"\s+\d+\s+\d+:", line)]
    assert sorted(listed) == ["1:0", "2:5"]


@pytest.mark.parametrize("args, message", [
    (["--ablate"], "needs an agreement SUITE"),
    (["SUITE", "--saturation"], "read by --ablate only"),
    (["SUITE", "--ablate", "--unit", "3:1"], "layer 3 does not exist"),
    (["SUITE", "--ablate", "--unit", "1:32"], "unit 32 does not exist"),
    (["SUITE", "--ablate", "--unit", "one"], "LAYER:UNIT"),
    (["SUITE", "--ablate", "--full", "--top-k", "8"], "either --full or --top-k"),
    (["SUITE", "--ablate", "--unit", "1:1", "--full"], "leave out --full"),
    (["SUITE", "--ablate", "--text", "the keys"], "not --file or --text"),
    (["SUITE", "--ablate", "--trace-condition", "nonesuch"], "of condition 'nonesuch'"),
    (["EMPTY", "--ablate"], "nothing to ablate units on"),
    (["UNKNOWN", "--ablate"], "no agreement item could be scored"),
    (["SUITE", "--ablate", "--plot", "out.svg"], "PNG"),
])
def test_ablate_bad_input_is_one_line(tiny_model_path, tmp_path, args, message):
    from charlm.agreement.formats import Item

    paths = {"SUITE": write_suite(tmp_path / "suite.tsv"), "EMPTY": write_suite(tmp_path / "empty.tsv", []),
             "UNKNOWN": write_suite(tmp_path / "unknown.tsv",
                                    [Item("x", 1, "ĳs", "ĳz", "the dog", " .", "simple", 0, "sg", 1)])}
    args = [str(paths.get(a, a)) for a in args]
    assert_one_line_error(invoke("units", tiny_model_path, *args), message)
