"""`charlm export`: the SavedModel's in-graph tokenizer agrees with charlm's, its greedy text
with charlm's sampler, and it loads and generates in a fresh process that cannot import charlm."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, invoke

PROMPTS = ["The ", "", "the dogs near the cat\n", "Ünïcode ✓ and \t tabs  ", "a\n\nb"]


def untrained(kind: str, cell: str = "gru"):
    """A small untrained model of ``kind`` (random weights suffice to compare two implementations)."""
    import keras

    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model
    from charlm.data.tokenizers import build_tokenizer

    keras.utils.set_random_seed(5)
    tokenizer = build_tokenizer(kind, "the dogs near the cat sleep .\nThe cats run ! é")
    config = ModelConfig(cell=cell, layers=2, hidden=16, embedding=8)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


def serve(module, prompts, length, temperature=1.0, seed=0):
    import tensorflow as tf

    out = module.serve(tf.constant(prompts), tf.constant(length, tf.int32), tf.constant(temperature, tf.float32),
                       tf.constant(seed, tf.int64))
    return [t.decode("utf-8") for t in out["generated"].numpy().tolist()], out


@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_in_graph_tokenizer_matches_charlm(kind):
    import tensorflow as tf

    from charlm.export import build_generator

    lm = untrained(kind)
    module = build_generator(lm)
    ids, lengths = module.tokenize(tf.constant(PROMPTS))
    for row, length, prompt in zip(ids.numpy(), lengths.numpy(), PROMPTS):
        np.testing.assert_array_equal(row[:length], lm.tokenizer.encode(prompt), err_msg=repr(prompt))
    # Detokenizing: every ordinary id, after a prompt ending in a word (word models join with a space).
    ordinary = [i for i in range(lm.tokenizer.vocab_size) if i not in lm.tokenizer.special_ids and i != 0]
    text = module.detokenize(tf.constant(["the"]), tf.constant([ordinary], tf.int32)).numpy()[0].decode()
    expected = lm.tokenizer.decode(ordinary)
    if kind == "word" and not expected.startswith("\n"):
        expected = " " + expected  # joined to the prompt's last word
    if kind == "byte":  # arbitrary byte runs: both replace invalid UTF-8 with U+FFFD
        assert text.replace("\ufffd", "") == expected.replace("\ufffd", "")
    else:
        assert text == expected


@pytest.mark.parametrize("kind,cell", [("char", "lstm"), ("byte", "rnn"), ("word", "gru")])
def test_greedy_text_matches_sampler(kind, cell):
    """Greedy decoding, prompts of different lengths in one batch: the same text as
    charlm.sample gives for each prompt alone."""
    from charlm.export import build_generator
    from charlm.sample import generate

    lm = untrained(kind, cell)
    texts, _ = serve(build_generator(lm), PROMPTS, 25, temperature=0.0)
    for prompt, text in zip(PROMPTS, texts):
        if prompt == "":
            continue  # no prompt: the first token is drawn at random, even greedily
        assert text == generate(lm, prompt, length=25, greedy=True)[0].text, repr(prompt)


def test_sampling_is_seeded_and_never_emits_specials():
    from charlm.export import build_generator

    lm = untrained("char")
    module = build_generator(lm, max_length=50)
    a, out = serve(module, ["The ", "The "], 40, seed=3)
    b, _ = serve(module, ["The ", "The "], 40, seed=3)
    c, _ = serve(module, ["The ", "The "], 40, seed=4)
    assert a == b and a != c
    assert all(len(t) == 40 for t in a)
    assert "\ufffd" not in "".join(a)  # the unknown symbol is never drawn
    assert [t.decode() for t in out["text"].numpy().tolist()] == ["The " + t for t in a]
    capped, _ = serve(module, ["x"], 500)
    assert len(capped[0]) == 50  # max_length caps the request
    empty, _ = serve(module, ["x"], 0)
    assert empty == [""]


FRESH = r"""
import json, sys
sys.modules["charlm"] = None  # importing charlm now fails: the SavedModel must not need it
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
out = serve(prompts=tf.constant(["The ", "the dogs\n", ""]), length=tf.constant(30),
            temperature=tf.constant(0.8), seed=tf.constant(11, tf.int64))
assert sys.modules["charlm"] is None and not any(m.startswith("charlm.") for m in sys.modules)
print(json.dumps({k: [t.decode("utf-8") for t in v.numpy().tolist()] for k, v in out.items()}))
"""


@pytest.mark.slow  # starts a subprocess
def test_saved_model_round_trip_in_a_fresh_process(tmp_path, tiny_model_path):
    import charlm
    from charlm.export import build_generator

    target = tmp_path / "served"
    result = invoke("export", tiny_model_path, "--saved-model", target)
    assert result.exit_code == 0, result.output
    assert (target / "saved_model.pb").exists()
    assert json.loads((target / "assets.extra" / "charlm.json").read_text())["signature"] == "serving_default"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind

    run = subprocess.run([sys.executable, "-c", FRESH, str(target)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert [len(t) for t in out["generated"]] == [30, 30, 30]  # char model: 30 characters each
    assert out["text"][:2] == ["The " + out["generated"][0], "the dogs\n" + out["generated"][1]]
    # The same as the module in this process (same weights, seed and inputs).
    expected, _ = serve(build_generator(charlm.load(tiny_model_path)), ["The ", "the dogs\n", ""], 30, 0.8, 11)
    assert out["generated"] == expected


def test_refuses_a_non_empty_directory_without_force(tmp_path):
    target = tmp_path / "served"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    # The target is checked before the model is even read.
    assert_one_line_error(invoke("export", tmp_path / "model.keras", "--saved-model", target), "--force")
    assert (target / "keep.txt").read_text() == "mine"


def test_force_replaces(tmp_path, tiny_model_path):
    target = tmp_path / "served"
    target.mkdir()
    (target / "old.txt").write_text("old")
    result = invoke("export", tiny_model_path, "--saved-model", target, "--force")
    assert result.exit_code == 0, result.output
    assert not (target / "old.txt").exists() and (target / "saved_model.pb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_export_of_a_non_model(tmp_path):
    bad = tmp_path / "notes.keras"
    bad.write_text("not a model")
    assert_one_line_error(invoke("export", bad, "--saved-model", tmp_path / "out"), "notes.keras")
    assert not (tmp_path / "out").exists()


def test_refuses_a_word_model_with_word_rules(tmp_path):
    from charlm.data.tokenizers import WordTokenizer
    from charlm.errors import CharlmError
    from charlm.export import export_saved_model

    lm = untrained("word")
    lm.tokenizer = WordTokenizer(lm.tokenizer.vocabulary, lowercase=True)
    with pytest.raises(CharlmError, match="cuts prompts at whitespace only.*--lowercase"):
        export_saved_model(lm, tmp_path / "out")
    assert not (tmp_path / "out").exists()
