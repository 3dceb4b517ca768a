"""`charlm info` (charlm.nn.modelinfo) on a trained model and on files that are not charlm
models."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_one_line_error, invoke


def test_info_describes_the_tiny_model(tiny_model_path, tiny_run, lm):
    result = invoke("info", "--json", tiny_model_path)
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["parameters"] == lm.model.count_params()
    assert info["model"] == {"cell": "lstm", "layers": 2, "hidden": 32, "embedding": 16, "dropout": 0.0,
                             "tie_weights": False, "dropout_input": None, "dropout_hidden": None,
                             "dropout_output": None, "locked_dropout": False, "weight_drop": 0.0,
                             "embedding_dropout": 0.0}
    assert [layer["name"].split("_")[0] for layer in info["layers"]] == ["embedding", "lstm", "lstm", "dense"]
    assert info["tokenizer"]["kind"] == "char"
    assert info["tokenizer"]["vocab_size"] == lm.tokenizer.vocab_size == tiny_run["vocab_size"]
    assert info["tokenizer"]["symbols"] == lm.tokenizer.vocabulary
    assert info["best_val_loss"] == pytest.approx(tiny_run["best_val_loss"])
    assert info["best_val_bits_per_char"] == pytest.approx(tiny_run["best_val_bits_per_char"])
    assert info["train"]["bptt"] == 32 and len(info["corpus"]["sha256"]) == 64
    assert set(info["versions"]) == {"keras", "tensorflow"}

    text = invoke("info", tiny_model_path).stdout
    assert f"charlm 2x32 LSTM language model, {lm.model.count_params():,} parameters" in text
    assert "tokenizer:   char, vocabulary of" in text
    assert repr("".join(lm.tokenizer.vocabulary[2:])) in text  # the characters, newline visible
    assert f"{tiny_run['best_val_bits_per_char']:.4f} bits/char" in text


def test_info_on_files_that_are_not_charlm_models(tmp_path):
    import keras

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert_one_line_error(invoke("info", text), "not a Keras model file")
    plain = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(plain)
    assert_one_line_error(invoke("info", plain), "not a charlm model")
    assert_one_line_error(invoke("info", tmp_path / "none.keras"), "not found")


def test_info_shows_a_word_model_s_rules(tmp_path):
    from charlm.config import ModelConfig
    from charlm.data.tokenizers import WordTokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    tokenizer = WordTokenizer.build("the keys are old .\n", lowercase=True, split_punctuation=True,
                                    numbers_token="<num>")
    config = ModelConfig(cell="gru", layers=1, hidden=4, embedding=2)
    path = LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config).save(tmp_path / "w.keras")
    info = json.loads(invoke("info", "--json", path).stdout)["tokenizer"]
    assert (info["lowercase"], info["split_punctuation"], info["numbers_token"]) == (True, True, "<num>")
    assert "word, vocabulary of 8, lower-cased, punctuation split off, numbers as <num>" in invoke("info", path).stdout


def test_regularisers_are_described_in_words():
    from charlm.nn.modelinfo import regularisers_text

    assert regularisers_text({"dropout": 0.0}) == "dropout 0"
    assert regularisers_text({"dropout": 0.2, "locked_dropout": True}) == "dropout 0.2 (locked)"
    awd = {"dropout": 0.2, "dropout_input": 0.1, "dropout_hidden": 0.25, "dropout_output": None,
           "locked_dropout": True, "weight_drop": 0.5, "embedding_dropout": 0.1}
    assert regularisers_text(awd) == ("dropout input 0.1, hidden 0.25, output 0.2, locked, weight drop 0.5, "
                                      "embedding dropout 0.1")
