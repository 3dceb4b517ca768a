"""The values inside a model per token (charlm.inspect.activations), checked against the Keras
model's own outputs and against the cell equations worked in NumPy from the weights."""

from __future__ import annotations

import re

import numpy as np
import pytest

from charlm.config import ModelConfig
from charlm.data.tokenizers import build_tokenizer
from charlm.errors import CharlmError
from charlm.evaluate import start_ids
from charlm.inspect.activations import activations
from charlm.nn.lm import LanguageModel
from charlm.nn.model import build_model, recurrent_layers
from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402

TEXT = ("the keys to the cabinet are on the table .\nthe key to the cabinets is here .\n" * 6
        + "a cat near the dogs sleeps .\n")


def untrained(cell: str, kind: str, seed: int = 0) -> LanguageModel:
    """A 2 x 12 model of ``cell`` over a ``kind`` vocabulary of TEXT, weights drawn at random
    (larger than Keras' initialisers, so that gates move away from 0.5)."""
    keras.utils.set_random_seed(seed)
    tokenizer = build_tokenizer(kind, TEXT)
    config = ModelConfig(cell=cell, layers=2, hidden=12, embedding=6)
    model = build_model(config, tokenizer.vocab_size)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0, 0.6, weight.shape).astype("float32"))
    return LanguageModel(model, tokenizer, config)


def keras_pass(lm, ids):
    """Each recurrent layer's h at every step, the logits and the final states, from the Keras
    model itself, reading start + ids in one pass."""
    layers = recurrent_layers(lm.model)
    probe = keras.Model(lm.model.inputs, [layer.output[0] for layer in layers] + list(lm.model.outputs))
    seq = np.concatenate([start_ids(lm.tokenizer), ids])[None, :].astype(np.int32)
    outputs = probe([tf.constant(seq), *lm.zero_states(1)])
    n_layers = len(layers)
    return [o.numpy()[0] for o in outputs[:n_layers]], outputs[n_layers].numpy()[0], \
        [s.numpy()[0] for s in outputs[n_layers + 1:]]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("kind", ["char", "byte", "word"])
def test_hidden_states_and_final_states_equal_the_keras_model(cell, kind):
    lm = untrained(cell, kind)
    acts = activations(lm, TEXT, window=29, top_k=3)  # windows that cut the text anywhere
    hs, logits, finals = keras_pass(lm, acts.ids)
    first = len(start_ids(lm.tokenizer))
    for layer in range(2):
        np.testing.assert_allclose(acts.get("h", layer), hs[layer][first:], atol=1e-5)
    for ours, theirs in zip(acts.final_states, finals):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # log p of each token and the top-3 next tokens, from the Keras logits
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    seq = np.concatenate([start_ids(lm.tokenizer), acts.ids])
    expected = logp[np.arange(len(seq) - 1), seq[1:]][first - 1:] if first else logp[np.arange(len(seq) - 1), seq[1:]]
    got = acts.logp if first else acts.logp[1:]
    if not first:
        assert np.isnan(acts.logp[0])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    probs = np.exp(logp[first:])
    np.testing.assert_array_equal(acts.top_ids, np.argsort(-probs, axis=1, kind="stable")[:, :3])
    np.testing.assert_allclose(acts.top_probs, np.take_along_axis(probs, acts.top_ids, 1), atol=1e-6)
    if kind == "word":
        assert acts.pieces == re.findall(r"[^\s]+|\n", TEXT)
    else:
        assert "".join(acts.pieces) == TEXT


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_steps(lm, acts):
    """Every per-step value of every layer at tokens 1..N-1 of ``acts``, worked with NumPy in
    float64 from the weights and the cell equations as Keras writes them (LSTM gates i, f, c, o;
    GRU reset_after), each step from the states ``acts`` holds for the token before: so every
    step is checked on its own, and rounding does not compound through the recurrence."""
    emb = lm.model.get_layer("embedding").embeddings.numpy().astype(np.float64)
    out = []
    for index, layer in enumerate(recurrent_layers(lm.model)):
        w, u, b = (v.numpy().astype(np.float64) for v in (layer.cell.kernel, layer.cell.recurrent_kernel,
                                                         layer.cell.bias))
        x = emb[acts.ids] if index == 0 else acts.get("h", index - 1)  # (N, E or H)
        h_prev = acts.get("h", index)[:-1]
        x = x[1:]
        if lm.config.cell == "lstm":
            zi, zf, zg, zo = np.split(x @ w + h_prev @ u + b, 4, axis=1)
            i, f, g, o = sigmoid(zi), sigmoid(zf), np.tanh(zg), sigmoid(zo)
            c = f * acts.get("c", index)[:-1] + i * g
            out.append(dict(i=i, f=f, g=g, o=o, c=c, h=o * np.tanh(c)))
        elif lm.config.cell == "gru":
            xz, xr, xh = np.split(x @ w + b[0], 3, axis=1)
            hz, hr, hh = np.split(h_prev @ u + b[1], 3, axis=1)
            z, r = sigmoid(xz + hz), sigmoid(xr + hr)
            g = np.tanh(xh + r * hh)
            out.append(dict(z=z, r=r, g=g, h=z * h_prev + (1 - z) * g))
        else:
            a = x @ w + h_prev @ u + b
            out.append(dict(a=a, h=np.tanh(a)))
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_every_gate_and_state_equals_the_cell_equations(cell):
    lm = untrained(cell, "char", seed=1)
    acts = activations(lm, TEXT[:150], window=40)
    reference = numpy_steps(lm, acts)
    for layer in range(2):
        assert set(acts.values[layer]) == set(reference[layer])
        for name, expected in reference[layer].items():
            np.testing.assert_allclose(acts.get(name, layer)[1:], expected, atol=2e-5, err_msg=f"{name}{layer}")
    varied = acts.get("f", 0) if cell == "lstm" else acts.get("h", 0)
    assert varied.std() > 0.05  # the weights move the values: a comparison of constants would prove nothing


def test_restricting_names_and_layers_keeps_only_those():
    lm = untrained("lstm", "char")
    full = activations(lm, TEXT)
    part = activations(lm, TEXT, names=["f", "c"], layers=[1])
    assert part.values[0] == {} and set(part.values[1]) == {"f", "c"}
    np.testing.assert_array_equal(part.get("f", 1), full.get("f", 1))


def test_bad_requests_are_one_line_errors():
    lm = untrained("gru", "char")
    with pytest.raises(CharlmError, match="empty"):
        activations(lm, "")
    with pytest.raises(CharlmError, match="has no 'c'"):
        activations(lm, TEXT, names=["c"])
    acts = activations(lm, TEXT[:20])
    with pytest.raises(CharlmError, match="layer 3 does not exist"):
        acts.get("h", 2)


def test_language_model_method_and_unknown_characters(tiny_model_path):
    import charlm

    lm = charlm.load(tiny_model_path)
    acts = lm.activations("the keys \u2603 are")
    assert acts.tokens[9] == "<unk>" and acts.pieces[9] == "\u2603"
    assert len(acts) == len("the keys \u2603 are")
