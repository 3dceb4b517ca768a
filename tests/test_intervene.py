"""The intervention of charlm probe --intervene (charlm.inspect.intervene): the steered forward
pass against the Keras layers run in two pieces with the state edited between them, pushes of
zero against charlm agree's own scores, and the cost on text against the Keras model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from charlm.agreement.formats import load as load_suite
from charlm.agreement.scoring import ItemScorer, run_agreement
from charlm.evaluate import start_ids
from charlm.inspect.intervene import Steered, TextCost, intervene, item_logprobs
from charlm.inspect.probe import read_items, split_by_lemma
from charlm.nn.model import recurrent_layers
from charlm.runtime import import_keras
from tests.helpers import assert_one_line_error, invoke
from tests.test_activations import TEXT, untrained
from tests.test_probe import write_suite

keras = import_keras()
import tensorflow as tf  # noqa: E402


def keras_logp(lm, ids, layer=None, t=None, deltas=None):
    """log p of ids[:, 1:] after ids[:, :-1] (B, T) from zero states, by the Keras layers; with
    ``layer``, that layer's states after token t are moved by ``deltas`` (h, then c): the layer
    reads tokens ..t, its states are edited, the edited h replaces its output at t, and it
    reads the rest from the edited states."""
    model = lm.model
    tokens = tf.constant(ids[:, :-1], tf.int32)
    x = model.get_layer("embedding")(tokens)
    zeros = lm.zero_states(ids.shape[0])[: lm.config.states_per_layer]
    for i, rnn in enumerate(recurrent_layers(model)):
        if i != layer:
            x = rnn(x, initial_state=zeros)[0]
            continue
        head, *states = rnn(x[:, : t + 1], initial_state=zeros)
        states = [s + tf.constant(d[None, :], tf.float32) for s, d in zip(states, deltas)]
        tail = rnn(x[:, t + 1:], initial_state=states)[0]
        x = tf.concat([head[:, :t], states[0][:, None], tail], axis=1)
    logits = model.get_layer("logits")(x).numpy().astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("layer", [0, 1])
def test_a_push_equals_the_keras_layers_with_the_state_edited(cell, layer):
    lm = untrained(cell, "char")
    ids = np.stack([lm.tokenizer.encode(TEXT[:40]), lm.tokenizer.encode(TEXT[50:90])]).astype(np.int32)
    steered = Steered(lm, layer)
    inputs = steered.inputs(ids[:, :-1])
    k = lm.config.states_per_layer
    zero = [np.zeros(12)] * k
    base, base_states = steered.logp(inputs, ids[:, 1:], np.zeros((2, 39)), zero)
    np.testing.assert_allclose(base, keras_logp(lm, ids), atol=1e-5)
    rng = np.random.default_rng(1)
    deltas = [rng.normal(size=12) for _ in range(k)]
    push = np.zeros((2, 39))
    push[0, 12], push[1, 20] = 1.0, -0.5  # a different token and step in each row
    logp, states = steered.logp(inputs, ids[:, 1:], push, deltas)
    for row, t, step in ((0, 12, 1.0), (1, 20, -0.5)):
        expected = keras_logp(lm, ids[row : row + 1], layer, t, [step * d for d in deltas])[0]
        np.testing.assert_allclose(logp[row], expected, atol=1e-5)
        # Nothing before the push moves; at it, the state moves by exactly the push.
        np.testing.assert_array_equal(logp[row, :t], base[row, :t])
        assert np.abs(logp[row, t:] - base[row, t:]).max() > 1e-3
        for moved, before, delta in zip(states, base_states, deltas):
            np.testing.assert_array_equal(moved[row, :t], before[row, :t])
            np.testing.assert_allclose(moved[row, t] - before[row, t], step * delta, atol=1e-5)


def test_following_the_probe_takes_the_sign_of_its_reading():
    lm = untrained("lstm", "char", seed=2)
    ids = lm.tokenizer.encode(TEXT[:30])[None].astype(np.int32)
    steered = Steered(lm, 0)
    inputs = steered.inputs(ids[:, :-1])
    push = np.zeros((1, 29))
    push[0, 9] = 1.0
    deltas = [np.ones(12), np.full(12, 2.0)]
    plain = steered.logp(inputs, ids[:, 1:], push, deltas)[0]
    negative = steered.logp(inputs, ids[:, 1:], -push, deltas)[0]
    always_minus = [(np.zeros(12), -1.0)] * 2
    np.testing.assert_array_equal(steered.logp(inputs, ids[:, 1:], push, deltas, always_minus, follow=True)[0],
                                  negative)
    # Reading unit 0: the push takes the sign of h[0] (and of c[0]) at the token, before it moves.
    _, base = steered.logp(inputs, ids[:, 1:], np.zeros((1, 29)), deltas)
    unit = np.eye(12)[0]
    signs = [np.sign(base[0][0, 9, 0]), np.sign(base[1][0, 9, 0])]
    followed = steered.logp(inputs, ids[:, 1:], push, deltas, [(unit, 0.0)] * 2, follow=True)[0]
    expected = keras_logp(lm, ids, 0, 9, [s * d for s, d in zip(signs, deltas)])[0]
    np.testing.assert_allclose(followed[0], expected, atol=1e-5)
    assert not np.array_equal(plain, negative)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return write_suite(tmp_path_factory.mktemp("intervene") / "suite.tsv")


def test_pushes_of_zero_score_as_charlm_agree(lm, suite):
    items = load_suite([suite]).items
    scorer = ItemScorer(lm)
    scored, _ = scorer.score(items)
    sequences = [scorer.encode(item)[0] for item in items]
    sums = item_logprobs(Steered(lm, 1), sequences, [((), 0.0, [np.zeros(32)] * 2)])[0]
    np.testing.assert_allclose(sums, [[s.logp_correct, s.logp_wrong] for s in scored], atol=1e-5)
    assert list(sums[:, 0] > sums[:, 1]) == [s.ok for s in run_agreement(lm, [suite]).scored]


@pytest.mark.slow
def test_the_experiment_at_alpha_zero_is_the_models_agreement(lm, suite):
    reading = read_items(lm, load_suite([suite]).items, ("h", "c"))
    test = split_by_lemma([a.lemma for a in reading.aligned], reading.labels)
    text = "the keys to the cabinet are on the table .\n" * 20
    result = intervene(lm, reading, test, 0.01, alphas=(0.0, 2.0), random_directions=2, text=text)
    assert result["items"] == test.sum() and [layer["layer"] for layer in result["layers"]] == [1, 2]
    agree = np.mean(reading.ok[test])
    for layer in result["layers"]:
        assert layer["baseline"]["accuracy"] == agree and layer["values"] == ["h", "c"]
        assert len(layer["conditions"]) == 2 * 2 * 2  # placements x alphas x directions
        for entry in layer["conditions"]:
            if entry["alpha"] == 0:
                assert entry["accuracy"] == agree and entry["change"] == 0
                assert entry["cost_bits_per_char"] == 0
            assert sum(e["n"] for e in entry["by_condition"].values()) == entry["n"] == result["items"]
            if entry["direction"] == "random":
                assert entry["accuracy"] == pytest.approx(np.mean(entry["accuracies"]))
        assert layer["text"]["chars"] == len(text)


def test_the_text_cost_reads_bits_per_character_as_the_keras_model(lm):
    text = "the keys to the cabinet are on the table .\nthe key is here .\n" * 8
    steered = Steered(lm, 0)
    rates = {"subject": 1 / 3, "every_word": 1.0}
    cost = TextCost(lm, steered, text, [(np.zeros(32), 0.0)] * 2, rates)
    context = start_ids(lm.tokenizer)
    ids = lm.tokenizer.encode(text)
    total = 0.0
    for piece in np.array_split(np.arange(len(ids)), 32):
        seq = np.concatenate([context, ids[piece]])[None].astype(np.int32)
        total -= keras_logp(lm, seq).sum()
    assert cost.baseline == pytest.approx(total / np.log(2) / len(text), rel=1e-5)
    # Pushes fall after the last character of words: every third word, or every word.
    for where, rate in rates.items():
        push = cost.pushes(where)
        rows, columns = np.nonzero(push)
        words = len(text.split())
        assert rate * words - 32 <= len(rows) <= rate * words  # one may fall after a row's last token
        for b, t in zip(rows, columns):
            token = cost.pieces[b][t - len(context)]
            assert not text[token].isspace() and (token + 1 == len(text) or text[token + 1].isspace())


@pytest.mark.slow
def test_the_command_reports_the_intervention(tiny_model_path, suite, tmp_path):
    plot = tmp_path / "probe.png"
    result = invoke("probe", tiny_model_path, suite, "--values", "h,c", "--intervene", "--alpha", "0.5",
                    "--random-directions", "1", "--layer", "2", "--max-tokens", "2000", "--json", "--plot", plot)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)["intervention"]
    assert out["alphas"] == [0.5] and [layer["layer"] for layer in out["layers"]] == [2]
    assert out["text"].startswith("the held-out end of") and out["layers"][0]["text"]["tokens"] == 2000
    assert {(e["where"], e["direction"]) for e in out["layers"][0]["conditions"]} == {
        ("subject", "probe"), ("subject", "random"), ("every_word", "probe"), ("every_word", "random")}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = invoke("probe", tiny_model_path, suite, "--values", "h", "--intervene", "--alpha", "0.5",
                  "--random-directions", "1", "--max-tokens", "500")
    assert text.exit_code == 0 and "Intervention on" in text.stdout and "every_word" in text.stdout


def test_intervening_needs_items_that_name_their_subject(tiny_model_path, tmp_path):
    suite = write_suite(tmp_path / "s.tsv", subject_index=False)
    assert_one_line_error(invoke("probe", tiny_model_path, suite, "--intervene"), "--intervene", "subject_index")
