"""charlm eval --dynamic: dynamic evaluation checked against the Keras model's own forward pass
and gradients (the update rule worked in numpy), the gradient statistics against a direct
computation, the decay against its closed form, and the command line."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")[60_000:60_437]  # after the tiny corpus; 437 = 21 x 20 + 17


def small_lm(cell="lstm", kind="char", hidden=16):
    """An untrained two-layer model of ``cell`` over TEXT's characters or words (its own weights,
    free to change)."""
    from charlm.config import ModelConfig
    from charlm.data.tokenizers import CharTokenizer, WordTokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    source = BUNDLED_CORPUS.read_text(encoding="utf-8")[:20_000]
    tokenizer = WordTokenizer.build(source) if kind == "word" else CharTokenizer.build(source)
    config = ModelConfig(cell=cell, layers=2, hidden=hidden, embedding=8)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


def keras_segment(lm, x, y, states):
    """The Keras model itself on one segment (1, T): log p of each target (T,), the gradient of the
    segment's mean loss for every trainable variable (dense numpy arrays) and the final states."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits, *new_states = lm.model([tf.constant(x, tf.int32), *states], training=False)
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
        loss = tf.reduce_mean(nll)
    grads = tape.gradient(loss, lm.model.trainable_variables)
    return -nll.numpy()[0], [tf.convert_to_tensor(g).numpy() for g in grads], new_states


def weights(lm):
    return [v.numpy().astype(np.float64) for v in lm.model.trainable_variables]


def static_logprobs(lm, text):
    from charlm.config import StreamSettings
    from charlm.evaluate import text_logprobs

    return text_logprobs(lm, text, StreamSettings(streams=1, window=64, warmup=0))


# ---- the rule ------------------------------------------------------------------------------------


def test_decay_rates_are_ms_over_the_mean_of_tensor_means_clipped():
    from charlm.dynamic_eval import decay_rates

    ms = [np.array([1.0, 3.0]), np.array([[0.5, 0.5, 14.0]])]  # tensor means 2 and 5: mean 3.5
    rates = decay_rates(ms, 0.25)  # clipped at 1 / 0.25 = 4
    np.testing.assert_allclose(rates[0], [1 / 3.5, 3 / 3.5], rtol=1e-6)
    np.testing.assert_allclose(rates[1], [[0.5 / 3.5, 0.5 / 3.5, 4.0]], rtol=1e-6)
    np.testing.assert_allclose(decay_rates(ms, 0.0)[1], [[0.5 / 3.5, 0.5 / 3.5, 4.0]], rtol=1e-6)


@pytest.mark.parametrize("cell,kind", [("lstm", "char"), ("gru", "char"), ("rnn", "char"), ("lstm", "word")])
def test_two_segment_steps_follow_the_rule(cell, kind):
    """θ1 = θ0 - η g0/(MS+ε); θ2 = θ1 - η g1/(MS+ε) + λ r (θ0 - θ1), g from the Keras model's own
    gradient; each segment scored by the weights before its step, the state carried."""
    from charlm.dynamic_eval import EPSILON, DynamicEvaluator, decay_rates
    from charlm.evaluate import start_ids

    lm = small_lm(cell, kind)
    rng = np.random.default_rng(0)
    ms = [rng.uniform(1e-4, 1e-2, v.shape).astype(np.float32) for v in lm.model.trainable_variables]
    lr, decay = 3e-4, 0.6
    rates = decay_rates(ms, decay)
    assert any(np.any(r == 1 / np.float32(decay)) for r in rates)  # some rates clipped
    seq = np.concatenate([start_ids(lm.tokenizer), lm.tokenizer.encode(TEXT)])[None, :13]  # (1, 13)
    x0, y0, x1, y1 = seq[:, :6], seq[:, 1:7], seq[:, 6:12], seq[:, 7:13]
    evaluator = DynamicEvaluator(lm, ms, lr, decay)

    theta0 = weights(lm)
    logp0_ref, g0, states_ref = keras_segment(lm, x0, y0, lm.zero_states(1))
    logp0, states = evaluator.step(x0, y0, lm.zero_states(1))
    np.testing.assert_allclose(logp0[0], logp0_ref, atol=1e-5)
    for s, s_ref in zip(states, states_ref):
        np.testing.assert_allclose(s, s_ref, atol=1e-5)  # the state of the weights that scored
    theta1 = weights(lm)
    for t1, t0, g, m in zip(theta1, theta0, g0, ms):
        np.testing.assert_allclose(t1, t0 - lr * g / (m + EPSILON), atol=1e-6)
    assert max(np.abs(t1 - t0).max() for t1, t0 in zip(theta1, theta0)) > 1e-3  # it moved

    logp1_ref, g1, _ = keras_segment(lm, x1, y1, states_ref)
    logp1, _ = evaluator.step(x1, y1, states)
    np.testing.assert_allclose(logp1[0], logp1_ref, atol=1e-5)
    for t2, t1, t0, g, m, r in zip(weights(lm), theta1, theta0, g1, ms, rates):
        np.testing.assert_allclose(t2, t1 - lr * g / (m + EPSILON) + decay * r * (t0 - t1), atol=1e-6)
    evaluator.reset()
    for t, t0 in zip(weights(lm), theta0):
        np.testing.assert_array_equal(t, t0)


def test_decay_pulls_the_weights_back():
    """With η = 0, each step multiplies θ - θ0 by (1 - λ r); with λ = 1 the weights whose rate
    is clipped at 1 are back at θ0 after one step."""
    from charlm.dynamic_eval import DynamicEvaluator, decay_rates

    lm = small_lm()
    rng = np.random.default_rng(1)
    ms = [rng.uniform(1e-3, 1e-2, v.shape).astype(np.float32) for v in lm.model.trainable_variables]
    theta0 = weights(lm)
    evaluator = DynamicEvaluator(lm, ms, 0.0, 0.5)
    deltas = [rng.normal(0, 0.1, t.shape) for t in theta0]
    for v, t0, d in zip(lm.model.trainable_variables, theta0, deltas):
        v.assign(t0 + d)
    x = lm.tokenizer.encode(TEXT[:20])[None]
    states = lm.zero_states(1)
    for _ in range(3):
        _, states = evaluator.step(x[:, :-1], x[:, 1:], states)
    for t, t0, d, r in zip(weights(lm), theta0, deltas, decay_rates(ms, 0.5)):
        np.testing.assert_allclose(t - t0, d * (1 - 0.5 * r) ** 3, atol=1e-6)

    evaluator.set(0.0, 1.0)
    evaluator.step(x[:, :-1], x[:, 1:], states)
    for t, t0, r in zip(weights(lm), theta0, decay_rates(ms, 1.0)):
        np.testing.assert_allclose(t[r == 1.0], t0[r == 1.0], atol=1e-7)
    assert any(np.any(r == 1.0) for r in decay_rates(ms, 1.0))


# ---- the whole text ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lm", pytest.param("wide_lm", marks=pytest.mark.slow), "word"])  # wide: XLA
def test_zero_rate_is_the_static_figure(model, request):
    from charlm.config import DynamicEvalConfig
    from charlm.dynamic_eval import dynamic_evaluate
    from charlm.evaluate import text_figures

    lm = small_lm(kind="word") if model == "word" else request.getfixturevalue(model)
    ids, logp = static_logprobs(lm, TEXT)
    static = text_figures(lm, TEXT, ids, logp)
    train = BUNDLED_CORPUS.read_text(encoding="utf-8")[:20_000]
    dynamic = dynamic_evaluate(lm, TEXT, train, DynamicEvalConfig(0.0, 0.5, segment=20, stat_batches=2))
    assert dynamic["tokens"] == static["tokens"] and dynamic["chars"] == static["chars"]
    assert dynamic["loss"] == pytest.approx(static["loss"], abs=1e-5)
    assert dynamic["bits_per_char"] == pytest.approx(static["bits_per_char"], abs=1e-5)


def test_each_segment_is_scored_before_its_step(lm):
    """The first segment is the static one exactly; later ones differ; the weights come back."""
    from charlm.dynamic_eval import DynamicEvaluator

    _, static = static_logprobs(lm, TEXT)
    ms = [np.full(v.shape, 1e-3, np.float32) for v in lm.model.trainable_variables]
    before = weights(lm)
    evaluator = DynamicEvaluator(lm, ms, 1e-3, 0.01)
    try:
        dynamic = evaluator.logprobs(lm.tokenizer.encode(TEXT), segment=20)
    finally:
        evaluator.reset()
    assert len(dynamic) == len(static) == len(TEXT)
    np.testing.assert_allclose(dynamic[:20], static[:20], atol=1e-5)
    assert np.abs(dynamic[20:] - static[20:]).max() > 1e-2
    for t, t0 in zip(weights(lm), before):
        np.testing.assert_array_equal(t, t0)


def test_a_repeated_text_is_learnt(lm):
    """What dynamic evaluation is for: text that recurs is predicted better the second time."""
    from charlm.config import DynamicEvalConfig
    from charlm.dynamic_eval import dynamic_evaluate

    text = TEXT * 3
    static = -np.mean(static_logprobs(lm, text)[1])
    train = BUNDLED_CORPUS.read_text(encoding="utf-8")[:20_000]
    dynamic = dynamic_evaluate(lm, text, train, DynamicEvalConfig(3e-3, 0.002, stat_batches=5))["loss"]
    assert dynamic < static - 0.05  # 2.52 against 2.61 nats


def test_gradient_statistics_are_the_rms_of_batch_gradients(lm, monkeypatch):
    """MS = sqrt(mean over batches of g²): 3 rows read side by side, 4 tokens a batch, states
    carried; the same when each batch runs one row at a time (a tight logits budget)."""
    import tensorflow as tf

    from charlm import dynamic_eval

    ids = lm.tokenizer.encode(TEXT[:100])
    ms, batches = dynamic_eval.gradient_statistics(lm, ids, segment=4, batches=2, rows=3)
    assert batches == 2
    pieces = ids[:99].reshape(3, 33)
    states, squares = lm.zero_states(3), None
    for b in range(2):
        x, y = pieces[:, 4 * b : 4 * b + 4], pieces[:, 4 * b + 1 : 4 * b + 5]
        with tf.GradientTape() as tape:
            logits, *states = lm.model([tf.constant(x, tf.int32), *states], training=False)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = [tf.convert_to_tensor(g).numpy().astype(np.float64) ** 2
                 for g in tape.gradient(loss, lm.model.trainable_variables)]
        squares = grads if squares is None else [s + g for s, g in zip(squares, grads)]
    expected = [np.sqrt(s / 2) for s in squares]
    for m, e in zip(ms, expected):
        np.testing.assert_allclose(m, e, rtol=1e-4, atol=1e-5 * e.max())  # float32 round-off
    monkeypatch.setattr(dynamic_eval, "LOGITS_BUDGET", 4 * lm.tokenizer.vocab_size)  # one row a pass
    sliced, _ = dynamic_eval.gradient_statistics(lm, ids, segment=4, batches=2, rows=3)
    for m, e in zip(sliced, expected):
        np.testing.assert_allclose(m, e, rtol=1e-4, atol=1e-5 * e.max())  # float32 round-off
    assert dynamic_eval.gradient_statistics(lm, ids, segment=4, batches=50, rows=3)[1] == 8  # (33 - 1) // 4


def test_too_little_training_text_is_an_error(lm):
    from charlm.dynamic_eval import gradient_statistics
    from charlm.errors import CharlmError

    with pytest.raises(CharlmError, match="too short"):
        gradient_statistics(lm, lm.tokenizer.encode(TEXT[:100]), segment=20, batches=5)


def test_training_text_comes_from_the_recorded_corpus(lm, tiny_corpus, tmp_path):
    from charlm.data.corpus import split_text
    from charlm.dynamic_eval import training_text
    from charlm.errors import CharlmError
    from charlm.nn.lm import LanguageModel

    text, source = training_text(lm)
    assert text == split_text(tiny_corpus.read_text(encoding="utf-8"), lm.info["train"]["val_fraction"])[0]
    assert str(tiny_corpus) in source and "training split" in source
    other = tmp_path / "other.txt"
    other.write_text("some other text\n", encoding="utf-8")
    assert training_text(lm, [other]) == ("some other text\n", str(other))

    def variant(**corpus):
        return LanguageModel(lm.model, lm.tokenizer, lm.config, {**lm.info, "corpus": corpus})

    for info, message in [({}, "records no corpus"),
                          ({"files": [str(tmp_path / "gone.txt")], "sha256": "0"}, "gone.txt is not here"),
                          ({"files": [str(other)], "sha256": "0"}, "has changed since training")]:
        with pytest.raises(CharlmError, match=message) as error:
            training_text(variant(**info))
        assert "--train-text" in str(error.value)


# ---- the command line ----------------------------------------------------------------------------


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_eval_dynamic_cli(tiny_model_path, tmp_path):
    from charlm.config import DynamicEvalConfig

    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    before = sha256(tiny_model_path)
    static = json.loads(invoke("eval", tiny_model_path, path, "--json").stdout)
    result = invoke("eval", tiny_model_path, path, "--dynamic", "--stat-batches", 3, "--json")
    assert result.exit_code == 0, result.stderr
    both = json.loads(result.stdout)
    dynamic = both.pop("dynamic")
    assert both["loss"] == static["loss"] and both["tokens"] == static["tokens"]  # the static figures untouched
    defaults = DynamicEvalConfig()
    assert (dynamic["lr"], dynamic["decay"], dynamic["segment"]) == (defaults.dynamic_lr, defaults.dynamic_decay,
                                                                     defaults.segment)
    assert dynamic["statistics"]["batches"] == 3 and "training split" in dynamic["statistics"]["source"]
    assert dynamic["tokens"] == static["tokens"] and dynamic["loss"] != static["loss"]
    assert dynamic["bits_per_char"] == pytest.approx(dynamic["loss"] * dynamic["tokens"] / np.log(2) / len(TEXT))

    text = invoke("eval", tiny_model_path, path, "--dynamic", "--stat-batches", 3, "--dynamic-lr", 0,
                  "--segment", 7).stdout
    assert text.startswith(invoke("eval", tiny_model_path, path).stdout)  # the static lines first, as they were
    assert "dynamic evaluation (lr 0, decay 0.002, segment 7;" in text
    assert re.search(rf"\n  loss         {static['loss']:.4f} nats/token \([+-]0\.0000 from static\)\n", text)
    assert sha256(tiny_model_path) == before


def test_eval_dynamic_word_model_with_train_text(tmp_path):
    lm = small_lm(kind="word")
    model = lm.save(tmp_path / "words.keras")
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    train = tmp_path / "train.txt"
    train.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    assert_one_line_error(invoke("eval", model, text, "--dynamic"), "records no corpus", "--train-text")
    result = invoke("eval", model, text, "--dynamic", "--train-text", train, "--stat-batches", 2, "--json")
    assert result.exit_code == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["dynamic"]["tokenizer"] == "word" and figures["dynamic"]["statistics"]["source"] == str(train)
    assert figures["dynamic"]["tokens"] == figures["tokens"]


@pytest.mark.parametrize("args,message", [
    (["--dynamic-lr", "-1"], "--dynamic-lr must be 0 or more"),
    (["--dynamic-decay", "1.5"], "--dynamic-decay must be between 0 and 1"),
    (["--dynamic-decay", "-0.1"], "--dynamic-decay must be between 0 and 1"),
    (["--segment", "0"], "--segment must be at least 1"),
    (["--stat-batches", "0"], "--stat-batches must be at least 1"),
    (["--train-text", "{missing}"], "--train-text: corpus not found"),
])
def test_bad_input_is_one_line(tiny_model_path, tmp_path, args, message):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    args = [a.format(missing=tmp_path / "missing.txt") for a in args]
    assert_one_line_error(invoke("eval", tiny_model_path, path, "--dynamic", *args), message)


def test_dynamic_options_need_dynamic(tiny_model_path, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert_one_line_error(invoke("eval", tiny_model_path, path, "--segment", 5), "--segment", "add --dynamic", code=2)
