"""The training-time forward pass: the model's own layers and weights, faster kernels.

:func:`make_forward` returns a function equivalent to calling the Keras model
(``[tokens, *states] -> [logits, *states]``) that reads the same variables, so
training updates the ordinary Keras model that is saved as ``model.keras``. With
``charlm_kernels=True`` each recurrent layer runs through :func:`charlm.nn.kernels.rnn_sequence`
(input projection and weight gradients as single large matrix products outside
the time loop; without dropout the first layer's projection is folded with the
embedding into one table lookup); otherwise it simply calls the model, which on a GPU
takes the Keras layers' cuDNN path (:func:`charlm.runtime.choose_kernels` decides).
With ``differentiable=False`` (evaluation) the layers run through
:func:`charlm.nn.kernels.rnn_inference`, which keeps nothing for a backward pass.

With dropout, the forward pass on charlm's kernels can take its masks from :func:`dropout_masks`,
drawn by the model's own Dropout layers (their seed generators, so a checkpoint resumes them) but
outside the function that applies them: the training step compiles that function with XLA, whose
CPU expansion of the stateless random generator is slow.
"""

from __future__ import annotations

from charlm.config import ModelConfig
from charlm.nn.kernels import rnn_inference, rnn_sequence
from charlm.nn.model import hidden_model, output_logits, recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

# The largest vocabulary whose embedding is folded into the first layer's projection when the
# number of rows a pass reads is not known when it is traced (see :func:`fold_embedding`).
FOLD_MAX_VOCAB = 4096


def _dropout_layers(model, config: ModelConfig):
    """The model's Dropout layers in the order it applies them: each recurrent layer's input,
    then the output. Empty without dropout."""
    if not config.dropout:
        return []
    names = [f"dropout_{i}" for i in range(config.layers)] + ["dropout_out"]
    return [model.get_layer(name) for name in names]


def dropout_masks(model, config: ModelConfig, tokens):
    """The dropout masks of one training window, drawn by the model's Dropout layers in the
    order the model applies them: a tuple of (B, T, E) for the first layer's input, (B, T, H) for
    each further layer's input and (B, T, H) for the output; each entry 0 (dropped) or
    1 / (1 - rate) (kept), in the layers' compute dtype. ``x * mask`` equals the layer's output
    on x for the same random state. tokens: (B, T) int ids; the model must have dropout."""
    shape = tf.shape(tokens)
    widths = [config.embedding] + [config.hidden] * config.layers
    return tuple(
        layer(tf.ones([shape[0], shape[1], width]), training=True)
        for layer, width in zip(_dropout_layers(model, config), widths)
    )


def make_forward(model, config: ModelConfig, charlm_kernels: bool = True, differentiable: bool = True):
    """A function ``forward(tokens, states, training, masks=None) -> (logits, new_states)``.

    tokens: (B, T) int32; states: a sequence of (B, H) tensors in the model's
    input order; logits: (B, T, V) float32. ``differentiable=False`` gives a
    faster forward pass that cannot be differentiated (on charlm's kernels only).
    masks: for a model with dropout in training, :func:`dropout_masks` of the
    window (charlm's kernels only); without them the Dropout layers draw their own.
    """
    output = output_logits(model)
    if not charlm_kernels:
        # The Keras layers up to the top layer's output (cuDNN on a GPU), then the output layer as
        # charlm computes it: for a tied model, without the Keras graph's detour for its bias.
        hidden = hidden_model(model)

        def keras_forward(tokens, states, training, masks=None):
            if masks is not None:
                raise ValueError("dropout masks are applied by the forward pass on charlm's kernels only")
            x, *new_states = hidden([tokens, *states], training=training)
            return output(x), list(new_states)

        return keras_forward

    embedding = model.get_layer("embedding")
    layers = recurrent_layers(model)
    k = config.states_per_layer
    run_layer = rnn_sequence if differentiable else rnn_inference
    dropouts = _dropout_layers(model, config)

    def drop(i, x, training, masks):
        """Dropout i (the last one: the output's) of x, with the given masks or by the layer."""
        if masks is not None:  # in the layer's compute dtype, as the layer would (mixed precision)
            return tf.cast(x, masks[i].dtype) * masks[i]
        return dropouts[i](x, training=training)

    def kernels_forward(tokens, states, training, masks=None):
        # The first layer looks the tokens up itself, folded into its input projection
        # (rnn_sequence's ``embedding``), unless dropout must see the embedded tokens first or
        # the vocabulary is too large for the table to pay.
        x, first_embedding = tokens, embedding.embeddings
        if dropouts or not fold_embedding(embedding.input_dim, tokens):
            x, first_embedding = tf.gather(embedding.embeddings, tokens), None  # (B, T, E)
        new_states = []
        for i, layer in enumerate(layers):
            if dropouts:
                x = drop(i, x, training, masks)
            cell = layer.cell
            x, final = run_layer(
                config.cell, x, list(states[i * k : (i + 1) * k]),
                cell.kernel, cell.recurrent_kernel, cell.bias,
                embedding=first_embedding if i == 0 else None,
            )  # x: (B, T, H)
            new_states.extend(final)
        if dropouts:
            x = drop(len(layers), x, training, masks)
        return output(x), new_states  # (B, T, V)

    return kernels_forward


def fold_embedding(vocab_size: int, tokens) -> bool:
    """Whether the first layer folds the embedding into its input projection (the (V, G) table
    E·W + b): it computes that table, and differentiates it, for every one of V symbols, where the
    unfolded projection works on the B*T rows of the window; so only a vocabulary no larger than
    the window's rows folds (:data:`FOLD_MAX_VOCAB` where the shape is open)."""
    rows = tf.TensorShape(tokens.shape).num_elements()
    return vocab_size <= (rows if rows is not None else FOLD_MAX_VOCAB)
