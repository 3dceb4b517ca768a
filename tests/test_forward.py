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
