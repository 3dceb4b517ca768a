"""charlm.nn.kernels against the Keras layers it replaces: outputs, final states and gradients."""

import numpy as np
import pytest

from charlm.runtime import import_keras

keras = import_keras()  # TensorFlow started as charlm starts it
import tensorflow as tf  # noqa: E402

from charlm.nn import kernels  # noqa: E402
from charlm.nn.kernels import rnn_inference, rnn_sequence  # noqa: E402

LAYERS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
N_STATES = {"lstm": 2, "gru": 1, "rnn": 1}
B, D, H = 3, 5, 4
TOL = 1e-5


def _setup(cell, steps, seed=0):
    """A built Keras layer with non-trivial weights, random inputs, states and loss weights."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[cell](H, return_sequences=True, return_state=True)
    layer.build((B, steps, D))
    for v in layer.weights:  # random biases too (Keras initialises them to zeros/ones)
        v.assign(rng.normal(scale=0.5, size=v.shape).astype("float32"))
    x = tf.constant(rng.normal(size=(B, steps, D)).astype("float32"))
    states = [tf.constant(rng.normal(size=(B, H)).astype("float32"))
              for _ in range(N_STATES[cell])]
    # Loss weights for the outputs and for every final state, so each upstream gradient counts.
    r_out = tf.constant(rng.normal(size=(B, steps, H)).astype("float32"))
    r_states = [tf.constant(rng.normal(size=(B, H)).astype("float32")) for _ in states]
    return layer, x, states, r_out, r_states


def _loss_and_grads(run, layer, x, states, r_out, r_states):
    """(outputs, final states, gradients of a random scalar loss wrt x, states and weights)."""
    with tf.GradientTape() as tape:
        tape.watch([x, *states])
        outputs, finals = run(x, states)
        loss = tf.reduce_sum(outputs * r_out)
        for s, r in zip(finals, r_states):
            loss += tf.reduce_sum(s * r)
    grads = tape.gradient(loss, [x, *states, *layer.trainable_variables])
    return outputs, finals, grads


def _keras_run(layer):
    def run(x, states):
        outputs, *finals = layer(x, initial_state=states)
        return outputs, finals
    return run


def _charlm_run(cell, layer):
    kernel, recurrent_kernel, bias = (layer.cell.kernel, layer.cell.recurrent_kernel,
                                      layer.cell.bias)

    def run(x, states):
        return rnn_sequence(cell, x, states, kernel, recurrent_kernel, bias)
    return run


def _assert_close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=TOL, atol=TOL,
                               err_msg=what)


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("steps", [1, 7])
@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
def test_matches_keras(cell, steps, mode):
    layer, x, states, r_out, r_states = _setup(cell, steps)
    expected = _loss_and_grads(_keras_run(layer), layer, x, states, r_out, r_states)

    def fast(x, states, r_out, r_states):
        return _loss_and_grads(_charlm_run(cell, layer), layer, x, states, r_out, r_states)

    if mode != "eager":
        fast = tf.function(fast, jit_compile=(mode == "jit"))
    outputs, finals, grads = fast(x, states, r_out, r_states)

    _assert_close(outputs, expected[0], "outputs")
    assert len(finals) == len(expected[1])
    for i, (a, e) in enumerate(zip(finals, expected[1])):
        _assert_close(a, e, f"final state {i}")
    names = ["inputs"] + [f"initial state {i}" for i in range(len(states))] + [
        v.path for v in layer.trainable_variables]
    for name, a, e in zip(names, grads, expected[2]):
        assert a is not None, name
        _assert_close(a, e, f"gradient wrt {name}")


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("mode", ["eager", "function", "jit"])
def test_lstm_gate_gradients_written_over_the_gates_match_keras(in_place, mode, monkeypatch):
    """The LSTM backward pass writes its gate gradients over the gates where XLA's region
    analysis is in force, into a new array otherwise: the same gradients either way, compiled or
    not (the suite's process may have either, so both are forced here)."""
    monkeypatch.setattr(kernels, "xla_region_analysis", lambda: in_place)
    layer, x, states, r_out, r_states = _setup("lstm", 6, seed=3)
    expected = _loss_and_grads(_keras_run(layer), layer, x, states, r_out, r_states)

    def fast(x, states, r_out, r_states):
        return _loss_and_grads(_charlm_run("lstm", layer), layer, x, states, r_out, r_states)

    if mode != "eager":
        fast = tf.function(fast, jit_compile=(mode == "jit"))
    outputs, _, grads = fast(x, states, r_out, r_states)
    _assert_close(outputs, expected[0], "outputs")
    for a, e in zip(grads, expected[2]):
        _assert_close(a, e, "gradient")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_transposed_read_of_the_recurrent_kernel_matches_keras(cell, monkeypatch):
    """Wide layers' backward recurrence reads U transposed inside its product; same gradients."""
    monkeypatch.setattr(kernels, "TRANSPOSED_READ_MIN_UNITS", H)
    layer, x, states, r_out, r_states = _setup(cell, 5, seed=2)
    expected = _loss_and_grads(_keras_run(layer), layer, x, states, r_out, r_states)
    actual = _loss_and_grads(_charlm_run(cell, layer), layer, x, states, r_out, r_states)
    for a, e in zip(actual[2], expected[2]):
        _assert_close(a, e, "gradient")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_loss_on_one_final_state_only(cell):
    """Outputs (and the LSTM's h) unused: their upstream gradients arrive as None or zeros."""
    layer, x, states, _, r_states = _setup(cell, 4, seed=1)

    def grads(run):
        with tf.GradientTape() as tape:
            tape.watch(x)
            _, finals = run(x, states)
            loss = tf.reduce_sum(finals[-1] * r_states[-1])
        return tape.gradient(loss, [x, *layer.trainable_variables])

    for a, e in zip(grads(_charlm_run(cell, layer)), grads(_keras_run(layer))):
        _assert_close(a, e, "gradient")


@pytest.mark.parametrize("cell", list(LAYERS))
@pytest.mark.parametrize("jit", [False, True])
def test_inference_matches_keras(cell, jit):
    """The forward-only kernels give Keras' outputs and final states, compiled or not."""
    layer, x, states, _, _ = _setup(cell, 7, seed=2)
    expected_outputs, *expected_finals = layer(x, initial_state=states)
    run = tf.function(lambda x, states: rnn_inference(
        cell, x, states, layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias),
        jit_compile=jit)
    outputs, finals = run(x, states)
    _assert_close(outputs, expected_outputs, "outputs")
    assert len(finals) == len(expected_finals)
    for i, (a, e) in enumerate(zip(finals, expected_finals)):
        _assert_close(a, e, f"final state {i}")


@pytest.mark.parametrize("run_layer", [rnn_sequence, rnn_inference])
def test_rejects_bad_arguments(run_layer):
    layer, x, states, _, _ = _setup("gru", 2)
    with pytest.raises(ValueError):
        run_layer("conv", x, states, layer.cell.kernel, layer.cell.recurrent_kernel,
                  layer.cell.bias)
    with pytest.raises(ValueError):
        run_layer("lstm", x, states, layer.cell.kernel, layer.cell.recurrent_kernel,
                  layer.cell.bias)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("run_layer", [rnn_sequence, rnn_inference])
def test_embedding_fold_matches_lookup_then_layer(cell, run_layer):
    """A first layer given token ids and the embedding (one lookup in E·W + b) = the layer on
    the looked-up inputs: outputs, final states, and the gradients for the embedding (repeated
    ids included), the weights and the states."""
    rng = np.random.default_rng(3)
    layer, _, states, r_out, r_states = _setup(cell, 6)
    embedding = tf.Variable(rng.normal(size=(7, D)).astype("float32"))
    ids = tf.constant(rng.integers(0, 7, size=(B, 6)), tf.int32)
    cell_ = layer.cell
    weights = (cell_.kernel, cell_.recurrent_kernel, cell_.bias)

    def run(folded):
        with tf.GradientTape() as tape:
            tape.watch(states)
            if folded:
                outputs, finals = run_layer(cell, ids, states, *weights, embedding=embedding)
            else:
                outputs, finals = run_layer(cell, tf.gather(embedding, ids), states, *weights)
            loss = tf.reduce_sum(outputs * r_out) + sum(tf.reduce_sum(s * r) for s, r in zip(finals, r_states))
        if run_layer is rnn_inference:
            return [outputs, *finals]
        grads = tape.gradient(loss, [embedding, *states, *weights])
        return [outputs, *finals, *(tf.convert_to_tensor(g) for g in grads)]

    for got, want in zip(run(True), run(False)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=TOL, atol=TOL)
