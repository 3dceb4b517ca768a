"""The training forward pass (charlm.nn.forward): charlm's kernels compute what the Keras
model computes, and dropout masks drawn before the pass equal the Dropout layers' own draw."""

import numpy as np
import pytest

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

from charlm.config import ModelConfig  # noqa: E402
from charlm.nn.forward import dropout_masks, make_forward  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402


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


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_forward_with_drawn_masks_equals_the_dropout_layers_own_draw(policy):
    """x * mask, with the masks drawn first, is bit for bit what the Dropout layers give from
    the same random state, also in the compute dtype of mixed precision."""
    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.3)
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(4)
        model = build_model(config, 11)
        forward = make_forward(model, config, charlm_kernels=True)
        tokens = tf.constant(np.random.default_rng(0).integers(0, 11, (3, 5)), tf.int32)
        states = [tf.zeros((3, 16))] * 4
        generators = [layer.seed_generator.state for layer in model.layers if "dropout" in layer.name]
        start = [g.numpy() for g in generators]
        by_layers, _ = forward(tokens, states, True)
        for g, value in zip(generators, start):
            g.assign(value)
        with_masks, _ = forward(tokens, states, True, dropout_masks(model, config, tokens))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert len(generators) == 3
    np.testing.assert_array_equal(with_masks.numpy(), by_layers.numpy())


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
