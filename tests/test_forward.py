"""The training forward pass (charlm.nn.forward): charlm's kernels compute what the Keras
model computes; the regularisers' masks (dropout, locked or not, weight drop, embedding dropout)
each checked against its definition and against the Keras model given the masked weights."""

import numpy as np
import pytest

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

from charlm.config import ModelConfig  # noqa: E402
from charlm.nn.forward import dropout_masks, make_forward  # noqa: E402
from charlm.nn.model import build_model, recurrent_layers  # noqa: E402


def test_fast_forward_equals_the_keras_model(tiny_model_path):
    """The training forward pass (hand-written kernels) computes what the saved model computes."""
    import charlm
    from charlm.nn.forward import make_forward

    lm = charlm.load(tiny_model_path)
    tokens = lm.tokenizer.encode("the keys to the cabinet are here .\nthe key")[None, :]
    states = lm.zero_states(1)
    expected, expected_states = lm.logits(tokens, states)
    logits, new_states = make_forward(lm.model, lm.config, charlm_kernels=True)(tokens, states, False)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(expected_states, new_states):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_each_dropout_mask_times_x_is_its_layers_own_output_on_x(policy, locked):
    """x * mask, with the mask drawn first, is bit for bit what the model's Dropout layer gives on
    x from the same random state (locked: Keras' noise_shape (None, 1, D)), also in the compute
    dtype of mixed precision."""
    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.3, locked_dropout=locked)
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(4)
        model = build_model(config, 11)
        tokens = tf.zeros((3, 5), tf.int32)
        layers = [model.get_layer(name) for name in ("dropout_0", "dropout_1", "dropout_out")]
        start = [layer.seed_generator.state.numpy() for layer in layers]
        masks = dropout_masks(model, config, tokens)
        for layer, state, mask, width in zip(layers, start, masks.places, (8, 16, 16)):
            assert mask.shape == (3, 1 if locked else 5, width)
            layer.seed_generator.state.assign(state)
            x = tf.random.normal((3, 5, width), seed=width)
            np.testing.assert_array_equal((tf.cast(x, mask.dtype) * mask).numpy(),
                                          layer(x, training=True).numpy())
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _set_seed_states(model, states):
    for variable, value in zip([v for v in model.variables if "seed_generator" in v.path], states):
        variable.assign(value)


def _seed_states(model):
    return [v.numpy() for v in model.variables if "seed_generator" in v.path]


@pytest.mark.parametrize("rates,layers", [
    (dict(dropout=0.3, dropout_hidden=0.5, dropout_output=0.0), ["dropout_0", "dropout_1", "dropout_2"]),
    (dict(dropout=0.4, dropout_input=0.0), ["dropout_1", "dropout_2", "dropout_out"]),  # the embedding folds
])
@pytest.mark.parametrize("locked", [False, True])
def test_training_pass_with_dropout_equals_the_keras_model_in_training(locked, rates, layers):
    """In training, charlm's pass applies its masks where the Keras model's own Dropout layers
    apply theirs (per-place rates, a place without dropout), drawn from the same random state."""
    from charlm.nn.forward import fold_embedding

    config = ModelConfig(cell="gru", layers=3, hidden=16, embedding=8, locked_dropout=locked, **rates)
    keras.utils.set_random_seed(6)
    model = build_model(config, 11)
    assert [layer.name for layer in model.layers if "dropout" in layer.name] == layers
    tokens = tf.constant(np.random.default_rng(0).integers(0, 11, (4, 7)), tf.int32)
    assert fold_embedding(11, tokens)  # folded where the first layer's input has no dropout
    states = [tf.random.normal((4, 16), seed=i) for i in range(3)]
    start = _seed_states(model)
    expected = model([tokens, *states], training=True)[0].numpy()
    _set_seed_states(model, start)
    logits, _ = make_forward(model, config)(tokens, states, True, dropout_masks(model, config, tokens))
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-5)
    inference = model([tokens, *states], training=False)[0].numpy()
    assert np.abs(expected - inference).max() > 1e-2  # the masks did change the output


def test_locked_masks_are_one_per_row_for_every_step_and_keep_the_expected_activation():
    """Locked dropout: the mask is the same at every step of a row and differs between rows; the
    kept units are scaled by 1/(1-p), so the mean factor is 1. Unlocked, it differs between steps."""
    rate, batch, steps = 0.5, 64, 9
    locked = ModelConfig(layers=1, hidden=256, embedding=256, dropout=rate, locked_dropout=True)
    keras.utils.set_random_seed(7)
    model = build_model(locked, 5)
    tokens = tf.zeros((batch, steps), tf.int32)
    layer = model.get_layer("dropout_0")
    start = layer.seed_generator.state.numpy()
    masks = dropout_masks(model, locked, tokens)
    for mask in masks.places:  # (B, 1, 256)
        mask = mask.numpy()
        assert mask.shape == (batch, 1, 256)
        assert set(np.unique(mask)) == {0.0, np.float32(1 / (1 - rate))}
        assert abs(mask.mean() - 1.0) < 0.03  # 16,384 factors: the mean's spread is 0.008
        assert len({row.tobytes() for row in mask}) == batch  # every row its own mask
    # The model's layer, on a whole window, applies the first mask at every step.
    layer.seed_generator.state.assign(start)
    window = layer(tf.ones((batch, steps, 256)), training=True).numpy()
    np.testing.assert_array_equal(window, np.broadcast_to(masks.places[0].numpy(), window.shape))
    unlocked = ModelConfig(layers=1, hidden=256, embedding=256, dropout=rate)
    per_step = dropout_masks(build_model(unlocked, 5), unlocked, tokens).places[0].numpy()  # (B, T, 256)
    assert per_step.shape == (batch, steps, 256)
    assert not any(np.array_equal(per_step[:, 0], per_step[:, t]) for t in range(1, steps))


def _loss_and_grads(model, targets, logits_of):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits_of()))
    grads = tape.gradient(loss, model.trainable_variables)
    return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]


def _window(vocab, rows, seed=1):
    rng = np.random.default_rng(seed)
    tokens = tf.constant(rng.integers(0, vocab, rows), tf.int32)
    targets = tf.constant(rng.integers(0, vocab, rows), tf.int32)
    return tokens, targets


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_runs_the_window_on_u_times_its_mask(cell):
    """Weight drop: every step of the window uses U * mask / (1 - p) (the Keras layer given that
    kernel computes the same logits), and the gradient reaches U through the mask
    (dL/dU = dL/dU' * mask, U' the masked kernel)."""
    rate, vocab = 0.4, 13
    config = ModelConfig(cell=cell, layers=2, hidden=16, embedding=8, weight_drop=rate)
    keras.utils.set_random_seed(8)
    model = build_model(config, vocab)
    masked = build_model(config, vocab)
    tokens, targets = _window(vocab, (3, 7))
    states = [tf.random.normal((3, 16), seed=i) for i in range(2 * config.states_per_layer)]
    masks = dropout_masks(model, config, tokens)
    assert masks.places == () and masks.tokens is None
    masked.set_weights(model.get_weights())
    for layer, mask in zip(recurrent_layers(masked), masks.recurrent):
        values = mask.numpy()
        assert values.shape == layer.cell.recurrent_kernel.shape  # (H, G)
        assert set(np.unique(values)) == {0.0, np.float32(1 / (1 - rate))}
        layer.cell.recurrent_kernel.assign(layer.cell.recurrent_kernel * values)
    forward = make_forward(model, config)
    loss, grads = _loss_and_grads(model, targets, lambda: forward(tokens, states, True, masks)[0])
    expected_loss, expected = _loss_and_grads(masked, targets, lambda: masked([tokens, *states])[0])
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    recurrent = {id(layer.cell.recurrent_kernel): i for i, layer in enumerate(recurrent_layers(model))}
    for variable, g, e in zip(model.trainable_variables, grads, expected):
        if id(variable) in recurrent:
            e = e * masks.recurrent[recurrent[id(variable)]].numpy()  # the chain rule through the mask
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
    # Without masks (inference) the pass uses U itself.
    np.testing.assert_allclose(forward(tokens, states, False)[0].numpy(),
                               model([tokens, *states])[0].numpy(), rtol=1e-4, atol=1e-5)


def test_weight_drop_masks_are_new_each_window_and_per_layer_and_keep_the_expected_kernel():
    rate = 0.5
    config = ModelConfig(cell="lstm", layers=2, hidden=64, embedding=8, weight_drop=rate)
    keras.utils.set_random_seed(9)
    model = build_model(config, 5)
    tokens = tf.zeros((2, 3), tf.int32)
    first, second = (dropout_masks(model, config, tokens).recurrent for _ in range(2))
    values = np.stack([m.numpy() for m in first])  # (2, 64, 256)
    assert abs(values.mean() - 1.0) < 0.03  # 32,768 factors: the mean's spread is 0.006
    assert abs((values == 0).mean() - rate) < 0.02
    assert not np.array_equal(values[0], values[1])  # each layer its own mask
    assert not np.array_equal(values[0], second[0].numpy())  # a new mask for the next window


@pytest.mark.parametrize("rows,folded", [((4, 16), True), ((2, 10), False)])
def test_embedding_dropout_scales_whole_vocabulary_rows(rows, folded):
    """Embedding dropout: the pass computes what the Keras model computes with each embedding
    row scaled by its token's factor (0 or 1/(1-p)), so every occurrence of a token in the window
    shares it, folded into the first layer's table or not; the embedding's gradient is the scaled
    table's times the factor."""
    from charlm.nn.forward import fold_embedding

    rate, vocab = 0.5, 30  # 64 rows fold, 20 do not
    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8, embedding_dropout=rate)
    keras.utils.set_random_seed(10)
    model = build_model(config, vocab)
    tokens, targets = _window(vocab, rows)
    assert fold_embedding(vocab, tokens) is folded
    states = [tf.random.normal((rows[0], 16), seed=i) for i in range(4)]
    masks = dropout_masks(model, config, tokens)
    factors = masks.tokens.numpy()  # (V,)
    assert set(np.unique(factors)) == {0.0, np.float32(1 / (1 - rate))}
    used = factors[np.unique(tokens.numpy())]
    assert 0.0 in used and used.max() > 0  # some tokens of the window dropped, some kept
    scaled = build_model(config, vocab)
    scaled.set_weights(model.get_weights())
    table = scaled.get_layer("embedding").embeddings
    table.assign(table * factors[:, None])
    forward = make_forward(model, config)
    loss, grads = _loss_and_grads(model, targets, lambda: forward(tokens, states, True, masks)[0])
    expected_loss, expected = _loss_and_grads(scaled, targets, lambda: scaled([tokens, *states])[0])
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for variable, g, e in zip(model.trainable_variables, grads, expected):
        if variable is model.get_layer("embedding").embeddings:
            e = e * factors[:, None]
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_embedding_dropout_factors_keep_the_expected_activation():
    config = ModelConfig(layers=1, hidden=8, embedding=4, embedding_dropout=0.3)
    keras.utils.set_random_seed(11)
    model = build_model(config, 20_000)
    tokens = tf.zeros((2, 3), tf.int32)
    first, second = (dropout_masks(model, config, tokens).tokens.numpy() for _ in range(2))
    assert first.shape == (20_000,)
    assert abs(first.mean() - 1.0) < 0.03  # the mean's spread is 0.005
    assert abs((first == 0).mean() - 0.3) < 0.02
    assert not np.array_equal(first, second)  # a new draw for each window


def test_embedding_dropout_of_a_tied_model_drops_the_input_rows_only():
    """As in AWD-LSTM, the scaled table is the input's alone: the output still reads E itself,
    logits = h·Eᵀ + b, h the top layer's output on the scaled rows."""
    from charlm.nn.model import hidden_model

    vocab = 13
    config = ModelConfig(cell="lstm", layers=1, hidden=8, embedding=8, tie_weights=True, embedding_dropout=0.5)
    keras.utils.set_random_seed(12)
    model = build_model(config, vocab)
    tokens, _ = _window(vocab, (3, 6))
    states = [tf.random.normal((3, 8), seed=i) for i in range(2)]
    masks = dropout_masks(model, config, tokens)
    logits, _ = make_forward(model, config)(tokens, states, True, masks)
    scaled = build_model(config, vocab)
    scaled.set_weights(model.get_weights())
    table = scaled.get_layer("embedding").embeddings
    raw = table.numpy()
    table.assign(raw * masks.tokens.numpy()[:, None])
    h = hidden_model(scaled)([tokens, *states])[0].numpy()
    expected = h @ raw.T + model.get_layer("output_bias").kernel.numpy()[0]
    np.testing.assert_allclose(logits.numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("setting", ["weight_drop", "embedding_dropout"])
def test_keras_layers_refuse_weight_drop_and_embedding_dropout_in_training(setting):
    """Where Keras' layers train (a GPU's cuDNN path) these two cannot apply: one line saying so;
    evaluating such a model on them is fine (they are training-only)."""
    from charlm.errors import CharlmError

    config = ModelConfig(layers=1, hidden=8, embedding=4, **{setting: 0.2})
    model = build_model(config, 7)
    flag = "--" + setting.replace("_", "-")
    with pytest.raises(CharlmError, match=f"^{flag} run inside charlm's own kernels.*--device cpu") as error:
        make_forward(model, config, charlm_kernels=False)
    assert "\n" not in str(error.value)
    logits, _ = make_forward(model, config, charlm_kernels=False, differentiable=False)(
        tf.zeros((1, 2), tf.int32), [tf.zeros((1, 8))] * 2, False)
    assert logits.shape == (1, 2, 7)


@pytest.mark.parametrize("rows,folded", [((4, 16), True), ((2, 10), False)])
def test_folded_and_unfolded_embedding_give_the_keras_models_loss_and_gradients(rows, folded):
    """The first layer folds the embedding into its projection only for a vocabulary no larger
    than the window's rows (here 50 symbols: 64 rows fold, 20 do not); either way the loss and
    every weight's gradient are those of the Keras model."""
    from charlm.nn.forward import fold_embedding

    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8)
    keras.utils.set_random_seed(5)
    model = build_model(config, 50)
    tokens = tf.constant(np.random.default_rng(1).integers(0, 50, rows), tf.int32)
    targets = tf.constant(np.random.default_rng(2).integers(0, 50, rows), tf.int32)
    states = [tf.random.normal((rows[0], 16), seed=i) for i in range(4)]
    assert fold_embedding(50, tokens) is folded
    forward = make_forward(model, config, charlm_kernels=True)

    def loss_and_grads(logits_of):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits_of()))
        grads = tape.gradient(loss, model.trainable_variables)
        return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]

    loss, grads = loss_and_grads(lambda: forward(tokens, states, False)[0])
    expected_loss, expected = loss_and_grads(lambda: model([tokens, *states], training=False)[0])
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
