"""Which units an agreement suite's decisions lean on, estimated from one backward pass: the
first-order (gradient) estimate of what ablating each unit would do, used to choose which units
to ablate when ablating every one would take too long.

Ablating unit j of layer l multiplies its outgoing weights by 0 (see
:func:`charlm.inspect.ablation.scaled_units`): the rows of the weights that read its h, i.e.
layer l's recurrent kernel, the next layer's input kernel, or, for the top layer, the output
map's kernel (:func:`charlm.nn.model.output_weights`: the Dense layer's, or a tied model's
[P·]Eᵀ). Scale those rows by a factor s_j instead, and the model is a smooth function of s
(s = 1 the model itself, s_j = 0 unit j ablated). For a group of items, let

    M(s) = sum over the group's items of (log p(correct | prefix) - log p(wrong | prefix)),

the summed margin by which the model prefers the correct form (:class:`~charlm.agreement.scoring.ItemScorer`'s
log-probabilities). The estimate of ablating unit j is the tangent at s = 1:

    M(s with s_j = 0) - M(1)  ~  -dM/ds_j,

and ``dM/ds_j = sum over items, sequences and positions t of dM/dh_read[t, j] · h[t, j]``: the
gradient of the margin with respect to the value of h_j that its readers read, times that value
(|·| of which is the common "gradient × activation" attribution; here the sign is kept, so that a
unit whose ablation would help is not mistaken for one whose ablation would hurt). One backward
pass through the model, with every unit's scale a watched variable, gives every unit's estimate
for a group at once; the forward pass is charlm's own kernels (:func:`charlm.nn.kernels.rnn_sequence`),
whose hand-written backward pass gives the weights' gradients, which TensorFlow carries on to s.
"""

from __future__ import annotations

import numpy as np

from charlm.nn.kernels import rnn_sequence
from charlm.nn.model import output_weights, recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

ROWS = 128  # sequences per backward pass, at most: bounds the memory the backward pass keeps


def margin_gradients(lm, scorer, items, group_of, n_groups: int) -> np.ndarray:
    """dM_g/ds (see the module docstring) for every group g of ``items``: an array
    (n_groups, layers, hidden), float64. ``scorer``: an :class:`~charlm.agreement.scoring.ItemScorer`
    of ``lm`` (its encoding of the items, so that exactly what it scores is differentiated);
    ``group_of[k]``: the group (0 ... n_groups - 1) of ``items[k]``; every item must be one the
    scorer can score."""
    config = lm.config
    gradient = _gradient_function(lm)
    out = np.zeros((n_groups, config.layers, config.hidden))
    by_group = [[] for _ in range(n_groups)]
    for item, group in zip(items, group_of):
        (good, start), (bad, _) = scorer.encode(item)[0]
        by_group[group] += [(good, start, 1.0), (bad, start, -1.0)]
    pad = lm.tokenizer.pad_id
    for group, sequences in enumerate(by_group):
        sequences.sort(key=lambda s: len(s[0]))
        for begin in range(0, len(sequences), ROWS):
            batch = sequences[begin : begin + ROWS]
            length = len(batch[-1][0])
            if length < 2:
                continue
            ids = np.full((len(batch), length), pad, np.int32)
            weights = np.zeros((len(batch), length - 1), np.float32)
            for row, (seq, start, sign) in enumerate(batch):
                ids[row, : len(seq)] = seq
                weights[row, start - 1 : len(seq) - 1] = sign  # logp[:, t] is that of ids[:, t + 1]
            out[group] += gradient(tf.constant(ids[:, :-1]), tf.constant(ids[:, 1:]), tf.constant(weights)).numpy()
    return out


def _gradient_function(lm):
    """``gradient(inputs (B, T), targets (B, T), weights (B, T)) -> (layers, H)``: the gradient,
    at s = 1, of sum(weights · log p(targets)) with respect to every unit's outgoing-weight scale s,
    compiled once for any B and T."""
    config, model = lm.config, lm.model
    embedding = model.get_layer("embedding").embeddings
    rnns = recurrent_layers(model)
    ids = tf.TensorSpec((None, None), tf.int32)

    @tf.function(input_signature=[ids, ids, tf.TensorSpec((None, None), tf.float32)])
    def gradient(inputs, targets, weights):
        scale = tf.ones((config.layers, config.hidden))
        zeros = tf.zeros((tf.shape(inputs)[0], config.hidden))
        with tf.GradientTape() as tape:
            tape.watch(scale)
            x = inputs
            for i, rnn in enumerate(rnns):
                cell = rnn.cell
                # The rows that read layer i-1's h (this layer's input kernel) and layer i's own
                # h (its recurrent kernel), scaled by their unit's s.
                kernel = tf.convert_to_tensor(cell.kernel)
                if i:
                    kernel = kernel * scale[i - 1][:, None]
                recurrent = tf.convert_to_tensor(cell.recurrent_kernel) * scale[i][:, None]
                x, _ = rnn_sequence(config.cell, x, [zeros] * config.states_per_layer, kernel, recurrent,
                                    cell.bias, embedding=embedding if i == 0 else None)  # (B, T, H)
            kernel, bias = output_weights(model)  # (H, V), (V,): read at each call, as the weights are now
            logits = tf.matmul(x, kernel * scale[-1][:, None]) + bias  # (B, T, V)
            logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)
            margin = tf.reduce_sum(weights * logp)
        return tape.gradient(margin, scale)

    return gradient
