"""The training-time forward pass: the model's own layers and weights, faster kernels.

:func:`make_forward` returns a function equivalent to calling the Keras model
(``[tokens, *states] -> [logits, *states]``) that reads the same variables, so
training updates the ordinary Keras model that is saved as ``model.keras``. With
``fast=True`` each recurrent layer runs through :func:`charlm.fast_rnn.rnn_sequence`
(input projection and weight gradients as single large matrix products outside
the time loop; without dropout the first layer's projection is folded with the
embedding into one table lookup); with ``fast=False`` it simply calls the model.
On a GPU the Keras layers' own cuDNN path is faster than either, so the trainer
keeps them there.
With ``differentiable=False`` (evaluation) the layers run through
:func:`charlm.fast_rnn.rnn_inference`, which keeps nothing for a backward pass.
"""

from __future__ import annotations

from charlm.backend import import_keras
from charlm.config import ModelConfig
from charlm.model import recurrent_layers

keras = import_keras()
import tensorflow as tf  # noqa: E402

from charlm.fast_rnn import rnn_inference, rnn_sequence  # noqa: E402


# XLA fuses each step's gate arithmetic and removes the per-op cost of the time loop: evaluation
# ran 1.4-1.5x faster with it at 2x256 (LSTM, SimpleRNN) and 2x512 on a 2-core CPU, training
# about 1.4x for each cell at 2x256. It compiles once per batch shape (seconds), which small
# models do not win back.
JIT_MIN_HIDDEN = 128


def compile_with_xla(config: ModelConfig, fast: bool) -> bool:
    """Whether a pass of this model (forward only, or the trainer's whole step) should be
    compiled with XLA: on charlm's kernels (``fast``; XLA cannot compile Keras' cuDNN layers)
    and for models of at least :data:`JIT_MIN_HIDDEN` units."""
    return fast and config.hidden >= JIT_MIN_HIDDEN


def make_forward(model, config: ModelConfig, fast: bool = True, differentiable: bool = True):
    """A function ``forward(tokens, states, training) -> (logits, new_states)``.

    tokens: (B, T) int32; states: a sequence of (B, H) tensors in the model's
    input order; logits: (B, T, V) float32. ``differentiable=False`` gives a
    faster forward pass that cannot be differentiated (with ``fast`` only).
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
    run_layer = rnn_sequence if differentiable else rnn_inference
    dropouts = []
    if config.dropout:
        dropouts = [model.get_layer(f"dropout_{i}") for i in range(config.layers)]
        dropout_out = model.get_layer("dropout_out")

    def fast_forward(tokens, states, training):
        # The first layer looks the tokens up itself, folded into its input projection
        # (rnn_sequence's ``embedding``), unless dropout must see the embedded tokens first.
        x, first_embedding = tokens, embedding.embeddings
        if dropouts:
            x, first_embedding = tf.gather(embedding.embeddings, tokens), None  # (B, T, E)
        new_states = []
        for i, layer in enumerate(layers):
            if dropouts:
                x = dropouts[i](x, training=training)
            cell = layer.cell
            x, final = run_layer(
                config.cell, x, list(states[i * k : (i + 1) * k]),
                cell.kernel, cell.recurrent_kernel, cell.bias,
                embedding=first_embedding if i == 0 else None,
            )  # x: (B, T, H)
            new_states.extend(final)
        if dropouts:
            x = dropout_out(x, training=training)
        return dense(x), new_states  # (B, T, V)

    return fast_forward
