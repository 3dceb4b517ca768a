"""charlm sample: the compiled sampler against the Keras model, samplers, seeds, stops, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from charlm.errors import CharlmError
from tests.helpers import REPO, assert_one_line_error, invoke

PROMPT = "the dogs near the "


def _untrained(tokenizer, cell, tmp_path):
    """A small untrained model of ``cell`` for ``tokenizer``, saved and loaded back."""
    from charlm.runtime import import_keras
    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel, load
    from charlm.nn.model import build_model

    keras = import_keras()
    keras.utils.set_random_seed(3)
    config = ModelConfig(cell=cell, layers=2, hidden=24, embedding=8)
    model = build_model(config, tokenizer.vocab_size)
    # A larger output layer than the initialiser gives, so the logits are far from uniform
    # (larger recurrent weights would make float32 rounding grow chaotically over time).
    dense = model.get_layer("logits")
    dense.set_weights([w * 4 for w in dense.get_weights()])
    path = LanguageModel(model, tokenizer, config).save(tmp_path / f"{cell}.keras")
    return load(path)


def _keras(lm, ids):
    """The Keras model on ids from zero states: logits (T, V) (row j predicts token j + 1) and
    the final states, as numpy. Through tf.function: eager Keras runs its time loop in Python."""
    import tensorflow as tf

    logits, *states = tf.function(lambda x: lm.model([x, *lm.zero_states(1)]))(np.asarray(ids, np.int32)[None])
    return logits.numpy()[0], [s.numpy() for s in states]


def _model_logits(lm, ids):
    return _keras(lm, ids)[0]


def _generated_with_context(lm, sample):
    """(ids of prompt + generated text, index of the first generated token)."""
    prompt_ids = lm.tokenizer.encode(sample.prompt)
    generated = lm.tokenizer.encode(sample.text)
    assert len(generated) == sample.tokens
    return np.concatenate([prompt_ids, generated]), len(prompt_ids)


def _ordinary_logits(lm, logits):
    logits = logits.copy()
    logits[..., lm.tokenizer.special_ids] = -np.inf
    return logits


# ---- the compiled step against Keras ------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_prime_matches_keras_model(cell, tmp_path):
    from charlm.sample import PRIME_CHUNK, sampler_for
    from charlm.data.tokenizers import CharTokenizer

    lm = _untrained(CharTokenizer.build("abcdefgh ij\n"), cell, tmp_path)
    ids = lm.tokenizer.encode(("abc def\ngh ij" * 100)[: PRIME_CHUNK + 37])  # two priming calls
    states, logits = sampler_for(lm).prime(ids)
    ref_logits, ref_states = _keras(lm, ids)
    # float32 rounding grows over 549 steps; a wrong gate or bias layout is off by O(1).
    np.testing.assert_allclose(logits.numpy()[0], ref_logits[-1], atol=1e-3)
    assert len(states) == len(ref_states)
    for ours, theirs in zip(states, ref_states):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-3)


def test_greedy_is_argmax_of_model_logits_step_by_step(lm):
    (sample,) = lm.generate(PROMPT, length=80, greedy=True)
    ids, start = _generated_with_context(lm, sample)
    logits = _ordinary_logits(lm, _model_logits(lm, ids))
    for j in range(start, len(ids)):
        row = logits[j - 1]
        # The token taken is the arg max (up to float32 rounding between the two computations).
        assert row[ids[j]] >= row.max() - 1e-4, f"step {j - start}"


# ---- samplers ---------------------------------------------------------------------------------


def test_top_k_never_leaves_the_k_most_likely(lm):
    k = 3
    (sample,) = lm.generate(PROMPT, length=150, top_k=k, temperature=1.5, seed=5)
    ids, start = _generated_with_context(lm, sample)
    logits = _ordinary_logits(lm, _model_logits(lm, ids))
    for j in range(start, len(ids)):
        row = logits[j - 1]
        kth = np.sort(row)[-k]
        assert row[ids[j]] >= kth - 1e-4, f"step {j - start}: token outside the top {k}"


def test_top_p_stays_in_the_nucleus(lm):
    p = 0.5
    (sample,) = lm.generate(PROMPT, length=150, top_p=p, seed=6)
    ids, start = _generated_with_context(lm, sample)
    logits = _ordinary_logits(lm, _model_logits(lm, ids))
    outside_possible = 0
    for j in range(start, len(ids)):
        probs = np.exp(logits[j - 1] - logits[j - 1].max())
        probs /= probs.sum()
        # Probability of the tokens more likely than the one taken: below p, else it was outside.
        before = probs[probs > probs[ids[j]] + 1e-6].sum()
        assert before < p + 1e-4, f"step {j - start}: token outside the nucleus"
        outside_possible += np.count_nonzero(np.cumsum(np.sort(probs)[::-1]) >= p) > 1
    assert outside_possible  # the nucleus excluded some tokens at some step: the test had teeth


def test_special_symbols_are_never_sampled(lm):
    (sample,) = lm.generate("", length=300, temperature=5.0, seed=2)
    ids = lm.tokenizer.encode(sample.text)
    assert not set(ids.tolist()) & set(lm.tokenizer.special_ids)
    assert "\ufffd" not in sample.text


def test_a_sampler_on_variables_follows_the_model_after_refresh(tiny_model_path):
    """Sampler(lm, variables=True) reads the weights once, into variables; refresh() re-reads
    them without recompiling (samples during training). Before it: the old weights' samples;
    after it: those of a sampler made afresh on the changed model."""
    import charlm
    from charlm.config import SampleConfig
    from charlm.sample import Sampler

    lm = charlm.load(tiny_model_path)  # a copy of its own: the shared model is not changed
    greedy = SampleConfig(length=60, greedy=True)
    live = Sampler(lm, variables=True)
    old = live.run(PROMPT, greedy)[0].text
    # Change the embedding (folded into the first layer's table), a recurrent kernel and the output layer.
    for weight, scale in [(lm.model.get_layer("embedding").embeddings, 1.5),
                          (lm.model.get_layer("lstm_1").cell.recurrent_kernel, 0.5),
                          (lm.model.get_layer("logits").kernel, -2.0)]:
        weight.assign(weight.numpy() * scale)
    new = Sampler(lm).run(PROMPT, greedy)[0].text
    assert new != old  # the change shows in greedy text: the test can tell the two apart
    assert live.run(PROMPT, greedy)[0].text == old  # not refreshed yet
    live.refresh()
    assert live.run(PROMPT, greedy)[0].text == new


# ---- seeds, batches, streaming, stops -------------------------------------------------------------


def test_seeded_determinism(lm):
    a = lm.generate(PROMPT, length=120, seed=11, temperature=0.9)[0].text
    b = lm.generate(PROMPT, length=120, seed=11, temperature=0.9)[0].text
    c = lm.generate(PROMPT, length=120, seed=12, temperature=0.9)[0].text
    assert a == b
    assert a != c
    assert len(a) == 120


def test_random_seed_is_reported_and_reproduces(lm):
    (first,) = lm.generate(PROMPT, length=60)
    (again,) = lm.generate(PROMPT, length=60, seed=first.seed)
    assert again.text == first.text


def test_num_samples_shapes(lm):
    samples = lm.generate(PROMPT, length=70, num_samples=4, seed=3)
    assert len(samples) == 4
    assert all(s.tokens == 70 and len(s.text) == 70 and s.prompt == PROMPT for s in samples)
    assert len({s.text for s in samples}) == 4  # independent samples
    assert len({s.seed for s in samples}) == 1


def test_streaming_gives_the_same_text(lm):
    from charlm.sample import CHUNK

    pieces = []
    (sample,) = lm.generate(PROMPT, length=2 * CHUNK + 88, seed=4, on_text=pieces.append)  # three chunks
    assert "".join(pieces) == sample.text
    # A char model: one piece of CHUNK characters per compiled chunk (no stop string holds any
    # back), then the rest, then the final call with nothing left.
    assert [len(p) for p in pieces] == [CHUNK, CHUNK, 88, 0]


def test_stop_string_ends_the_sample(lm):
    (full,) = lm.generate(PROMPT, length=400, seed=7)
    stop = full.text[150:152]  # a string that does occur; its first occurrence may be earlier
    at = full.text.index(stop)
    pieces = []
    (sample,) = lm.generate(PROMPT, length=400, seed=7, stop=[stop, "\x00never"], on_text=pieces.append)
    assert sample.text == full.text[:at]
    assert sample.stopped == stop
    assert sample.tokens == at + len(stop)
    assert "".join(pieces) == sample.text


def test_stop_across_chunk_boundary_is_not_streamed(lm):
    from charlm.sample import CHUNK

    (full,) = lm.generate(PROMPT, length=CHUNK + 50, seed=8)
    stop = full.text[CHUNK - 2 : CHUNK + 2]  # straddles the first and second chunk
    pieces = []
    (sample,) = lm.generate(PROMPT, length=CHUNK + 50, seed=8, stop=[stop], on_text=pieces.append)
    assert sample.stopped == stop
    assert stop not in "".join(pieces)
    assert "".join(pieces) == sample.text == full.text[: full.text.index(stop)]


def test_unknown_prompt_characters(lm):
    prompt = "the ☃ dogs €"
    assert lm.tokenizer.count_unknown(prompt) == 2
    (sample,) = lm.generate(prompt, length=30, seed=1)
    assert sample.unknown_prompt_chars == 2
    assert len(sample.text) == 30


def test_word_model_splits_the_prompt(tmp_path):
    from charlm.data.tokenizers import WordTokenizer

    tokenizer = WordTokenizer.build("the dog runs\nthe dogs run\na cat sleeps\n")
    lm = _untrained(tokenizer, "gru", tmp_path)
    pieces = []
    (sample,) = lm.generate("the  dog\tzebra quokka", length=40, seed=1, on_text=pieces.append)
    assert sample.unknown_prompt_chars == 2  # two unknown words
    assert sample.tokens == 40
    assert "".join(pieces) == sample.text
    assert sample.text.startswith(" ") or sample.text.startswith("\n")  # joined to the prompt
    (after_space,) = lm.generate("the dog ", length=5, seed=1)
    assert not after_space.text.startswith(" ")  # the prompt's own space joins them
    words = sample.text.split()
    assert len(words) == 40 - sample.text.count("\n")
    assert set(words) <= set(tokenizer.vocabulary) - {"<pad>", "<unk>", "<eol>"}


def test_byte_model_streams_whole_characters(tmp_path):
    from charlm.data.tokenizers import ByteTokenizer

    lm = _untrained(ByteTokenizer(), "rnn", tmp_path)
    pieces = []
    (streamed,) = lm.generate("é", length=700, seed=2, on_text=pieces.append)
    (plain,) = lm.generate("é", length=700, seed=2)
    assert "".join(pieces) == streamed.text == plain.text
    assert streamed.tokens == 700


# ---- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [dict(temperature=0), dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=0),
     dict(length=0), dict(num_samples=0), dict(greedy=True, top_k=3), dict(stop=[""])],
)
def test_bad_settings(settings):
    from charlm.config import SampleConfig

    with pytest.raises(CharlmError):
        SampleConfig(**settings)


def test_top_k_larger_than_vocabulary(lm):
    with pytest.raises(CharlmError, match="vocabulary size"):
        lm.generate(PROMPT, length=5, top_k=lm.tokenizer.vocab_size + 1)


# ---- the command line ------------------------------------------------------------------------------


def _run(*args):
    return invoke("sample", *args)


def test_cli_json(tiny_model_path, lm, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("the ☃ dogs ", encoding="utf-8")
    result = _run(tiny_model_path, "--prompt-file", prompt_file, "--length", 40, "--num-samples", 2,
                  "--seed", 9, "--json", "--top-k", 5, "--temperature", 0.8)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["prompt"] == "the ☃ dogs " and row["unknown_prompt_chars"] == 1
        assert row["tokens"] == 40 and len(row["text"]) == 40 and row["seed"] == 9
        assert row["seconds"] > 0
    api = lm.generate("the ☃ dogs ", length=40, num_samples=2, seed=9, top_k=5, temperature=0.8)
    assert [r["text"] for r in rows] == [s.text for s in api]


def test_cli_plain_text_is_prompt_and_sample(tiny_model_path, lm):
    result = _run(tiny_model_path, "--prompt", PROMPT, "--length", 50, "--seed", 1, "--stop", "zz")
    assert result.exit_code == 0, result.output
    (sample,) = lm.generate(PROMPT, length=50, seed=1, stop=["zz"])
    assert result.stdout == PROMPT + sample.text + "\n"


@pytest.mark.parametrize(
    "flags,fragment",
    [(["--temperature", "0"], "--temperature must be a positive number, got 0.0"),
     (["--temperature", "-0.5"], "--temperature must be a positive number, got -0.5"),
     (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"), (["--top-p", "1.01"], "--top-p must be in (0, 1]"),
     (["--top-k", "0"], "--top-k must be at least 1"), (["--length", "0"], "--length must be at least 1"),
     (["--top-k", "100000"], "--top-k must be at most the vocabulary size"),
     (["--prompt-file", "/nonexistent/p.txt"], "prompt file not found: /nonexistent/p.txt")],
)
def test_cli_bad_flags(tiny_model_path, flags, fragment):
    assert_one_line_error(_run(tiny_model_path, *flags), fragment)


def test_cli_bad_model_files(tmp_path):
    assert_one_line_error(_run(tmp_path / "missing.keras"), "model file not found")
    not_zip = tmp_path / "notzip.keras"
    not_zip.write_text("hello")
    assert_one_line_error(_run(not_zip), "notzip.keras is not a Keras model file")
    other = tmp_path / "other.keras"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("config.json", "{}")
    assert_one_line_error(_run(other), "other.keras", "not a charlm model")


@pytest.mark.slow  # starts a subprocess
def test_fresh_process_needs_only_the_model_file(tiny_model_path, lm, tmp_path):
    shutil.copy(tiny_model_path, tmp_path / "model.keras")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "charlm", "sample", "model.keras", "--prompt", PROMPT, "--length", "60",
         "--seed", "21", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    # The same text as this process makes: nothing but the file (and the seed) decides it.
    assert row["text"] == lm.generate(PROMPT, length=60, seed=21)[0].text
