"""The training-time forward pass: the model's own layers and weights, faster kernels.

:func:`make_forward` returns a function equivalent to calling the Keras model
(``[tokens, *states] -> [logits, *states]``) that reads the same variables, so
training updates the ordinary Keras model that is saved as ``model.keras``. With
``fast=True`` each recurrent layer runs through :func:`charlm.fast_rnn.rnn_sequence`
(input projection and weight gradients as single large matrix products outside
the time loop); with ``fast=False`` it simply calls the model. On a GPU the Keras
layers' own cuDNN path is faster than either, so the trainer keeps them there.
"""

from __future__ import annotations

from charlm.backend import import_keras
from charlm.config import ModelConfig
from charlm.model import recurrent_layers

keras = import_keras()
import tensorflow as tf  # noqa: E402

from charlm.fast_rnn import rnn_sequence  # noqa: E402


def make_forward(model, config: ModelConfig, fast: bool = True):
    """A function ``forward(tokens, states, training) -> (logits, new_states)``.

    tokens: (B, T) int32; states: a sequence of (B, H) tensors in the model's
    input order; logits: (B, T, V) float32.
    """
    if not fast:
        def keras_forward(tokens, states, training):
            logits, *new_states = model([tokens, *states], training=training)
            return logits, list(new_states)

        return keras_forward

    embedding = model.get_layer("embedding")
    layers = recurrent_layers(model)
    dense = model.get_layer("logits")
    k = config.states_per_layer
    dropouts = []
    if config.dropout:
        dropouts = [model.get_layer(f"dropout_{i}") for i in range(config.layers)]
        dropout_out = model.get_layer("dropout_out")

    def fast_forward(tokens, states, training):
        x = tf.gather(embedding.embeddings, tokens)  # (B, T, E)
        new_states = []
        for i, layer in enumerate(layers):
            if dropouts:
                x = dropouts[i](x, training=training)
            cell = layer.cell
            x, final = rnn_sequence(
                config.cell, x, list(states[i * k : (i + 1) * k]),
                cell.kernel, cell.recurrent_kernel, cell.bias,
            )  # x: (B, T, H)
            new_states.extend(final)
        if dropouts:
            x = dropout_out(x, training=training)
        return dense(x), new_states  # (B, T, V)

    return fast_forward
