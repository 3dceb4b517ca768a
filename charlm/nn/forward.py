"""The training-time forward pass: the model's own layers and weights, faster kernels.

:func:`make_forward` returns a function equivalent to calling the Keras model
(``[tokens, *states] -> [logits, *states]``) that reads the same variables, so
training updates the ordinary Keras model that is saved as ``model.keras``. With
``charlm_kernels=True`` each recurrent layer runs through :func:`charlm.nn.kernels.rnn_sequence`
(input projection and weight gradients as single large matrix products outside
the time loop; without input dropout the first layer's projection is folded with the
embedding into one table lookup); otherwise it simply calls the model, which on a GPU
takes the Keras layers' cuDNN path (:func:`charlm.runtime.choose_kernels` decides).
With ``differentiable=False`` (evaluation) the layers run through
:func:`charlm.nn.kernels.rnn_inference`, which keeps nothing for a backward pass.

In training, on charlm's kernels, the pass applies the random masks of :func:`dropout_masks`
(AWD-LSTM's regularisers, Merity et al. 2017): dropout at each place that has a rate (locked: one
mask per row for all steps), weight drop (each layer's recurrent kernel U times a mask, once per
window, before the time loop; the gradient reaches U through the mask) and embedding dropout (a
factor per vocabulary row, gathered per token). The masks are drawn outside the function that
applies them, because the training step compiles that function with XLA, whose CPU expansion of
the stateless random generator is slow; they come from random state the model already holds and
checkpoints save (the Dropout layers' seed generators for dropout, the recurrent cells' for the
other two), and none of them is in the saved model.
"""

from __future__ import annotations

from typing import NamedTuple

from charlm.config import ModelConfig
from charlm.errors import CharlmError
from charlm.nn.kernels import rnn_inference, rnn_sequence
from charlm.nn.model import dropout_name, hidden_model, output_logits, recurrent_layers
from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

# The largest vocabulary whose embedding is folded into the first layer's projection when the
# number of rows a pass reads is not known when it is traced (see :func:`fold_embedding`).
FOLD_MAX_VOCAB = 4096


class DropoutMasks(NamedTuple):
    """The random masks of one training window; every entry is 0 (dropped) or 1 / (1 - rate)
    (kept), so each preserves the expected activation."""

    places: tuple  # one per dropout place with a rate, in order: (B, T, D), or (B, 1, D) locked
    recurrent: tuple  # weight drop: one (H, G) mask per recurrent layer, like its kernel U; or ()
    tokens: object  # embedding dropout: (V,) one factor per vocabulary row; or None


def _dropout_layers(model, config: ModelConfig) -> list:
    """The model's Dropout layer at each place of :attr:`ModelConfig.dropout_rates`, or None
    where that rate is 0."""
    return [model.get_layer(dropout_name(place, config)) if rate else None
            for place, rate in enumerate(config.dropout_rates)]


def dropout_masks(model, config: ModelConfig, tokens) -> DropoutMasks:
    """The masks of one training window (tokens: (B, T) int ids). Dropout's are drawn by the
    model's Dropout layers, in the layers' compute dtype: ``x * mask`` equals the layer's output
    on x for the same random state. Weight drop's and embedding dropout's (float32) are drawn
    from the recurrent cells' own seed generators, which Keras uses only for its cells' dropout
    arguments (0 in charlm's models): the first layer's draws the token factors."""
    shape = tf.shape(tokens)
    steps = 1 if config.locked_dropout else shape[1]  # locked: one mask per row, for every step
    widths = [config.embedding] + [config.hidden] * config.layers
    places = tuple(
        layer(tf.ones([shape[0], steps, width]), training=True)
        for layer, width in zip(_dropout_layers(model, config), widths) if layer is not None
    )
    cells = [layer.cell for layer in recurrent_layers(model)]
    recurrent = ()
    if config.weight_drop:
        recurrent = tuple(_keep_mask(cell.recurrent_kernel.shape, config.weight_drop, cell.seed_generator)
                          for cell in cells)
    factors = None
    if config.embedding_dropout:
        vocab_size = model.get_layer("embedding").input_dim
        factors = _keep_mask((vocab_size,), config.embedding_dropout, cells[0].seed_generator)
    return DropoutMasks(places, recurrent, factors)


def _keep_mask(shape, rate: float, seed_generator):
    """A float32 mask of ``shape``: 0 with probability ``rate``, else 1 / (1 - rate)."""
    return keras.random.dropout(tf.ones(shape), rate, seed=seed_generator)


def make_forward(model, config: ModelConfig, charlm_kernels: bool = True, differentiable: bool = True):
    """A function ``forward(tokens, states, training, masks=None) -> (logits, new_states)``.

    tokens: (B, T) int32; states: a sequence of (B, H) tensors in the model's
    input order; logits: (B, T, V) float32. ``differentiable=False`` gives a
    faster forward pass that cannot be differentiated (on charlm's kernels only).
    masks: in training, the window's :func:`dropout_masks` (charlm's kernels only); without
    them a training pass draws its own.

    Weight drop and embedding dropout exist on charlm's kernels only: a differentiable pass on
    Keras' layers (a GPU's cuDNN path) refuses them with a :class:`CharlmError`.
    """
    output = output_logits(model)
    if not charlm_kernels:
        if differentiable and config is not None:
            _check_keras_layers_can_train(config)
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
    slots = {}  # place -> its index in DropoutMasks.places
    for place, layer in enumerate(dropouts):
        if layer is not None:
            slots[place] = len(slots)

    def drop(place, x, masks):
        """x after the dropout of ``place`` (the last: the output's), if it has one."""
        if dropouts[place] is None:
            return x
        if masks is None:  # no dropout, but the layer's cast to its compute dtype (mixed precision)
            return dropouts[place](x, training=False)
        mask = masks.places[slots[place]]
        return tf.cast(x, mask.dtype) * mask

    def kernels_forward(tokens, states, training, masks=None):
        if training and masks is None and config.draws_masks:
            masks = dropout_masks(model, config, tokens)
        factors = masks.tokens if masks is not None else None  # (V,) embedding dropout
        # The first layer looks the tokens up itself, folded into its input projection
        # (rnn_sequence's ``embedding``; with embedding dropout, the table's rows scaled), unless
        # dropout must see the embedded tokens first or the vocabulary is too large for the
        # table to pay.
        table = embedding.embeddings  # (V, E)
        if dropouts[0] is not None or not fold_embedding(embedding.input_dim, tokens):
            x, first_embedding = tf.gather(table, tokens), None  # (B, T, E)
            if factors is not None:  # one factor per token, gathered: no (V, E) product
                x = x * tf.cast(tf.gather(factors, tokens), x.dtype)[..., None]
        else:
            x, first_embedding = tokens, table if factors is None else table * factors[:, None]
        new_states = []
        for i, layer in enumerate(layers):
            x = drop(i, x, masks)
            cell = layer.cell
            recurrent_kernel = cell.recurrent_kernel  # (H, G)
            if masks is not None and masks.recurrent:  # one product per window, before the time loop
                recurrent_kernel = tf.convert_to_tensor(recurrent_kernel) * masks.recurrent[i]
            x, final = run_layer(
                config.cell, x, list(states[i * k : (i + 1) * k]),
                cell.kernel, recurrent_kernel, cell.bias,
                embedding=first_embedding if i == 0 else None,
            )  # x: (B, T, H)
            new_states.extend(final)
        x = drop(len(layers), x, masks)
        return output(x), new_states  # (B, T, V)

    return kernels_forward


def _check_keras_layers_can_train(config: ModelConfig):
    """Weight drop and embedding dropout live in charlm's kernels; Keras' layers cannot apply them."""
    given = [name for name, rate in (("--weight-drop", config.weight_drop),
                                     ("--embedding-dropout", config.embedding_dropout)) if rate]
    if given:
        raise CharlmError(f"{' and '.join(given)} run inside charlm's own kernels, which training on a GPU "
                          "does not use (it runs Keras' cuDNN layers): train with --device cpu, or without "
                          f"{' and '.join(given)}")


def fold_embedding(vocab_size: int, tokens) -> bool:
    """Whether the first layer folds the embedding into its input projection (the (V, G) table
    E·W + b): it computes that table, and differentiates it, for every one of V symbols, where the
    unfolded projection works on the B*T rows of the window; so only a vocabulary no larger than
    the window's rows folds (:data:`FOLD_MAX_VOCAB` where the shape is open)."""
    rows = tf.TensorShape(tokens.shape).num_elements()
    return vocab_size <= (rows if rows is not None else FOLD_MAX_VOCAB)
