"""The vanishing-gradient curve, measured: how strongly the prediction of a token depends on the
state the model was in k tokens earlier.

For a position t of a text and a lag k, the measure is the norm of the gradient of
log p(x_t | x_<t) with respect to layer l's hidden state h^l_{t-k} (and, in an LSTM, its cell
state c^l_{t-k}), averaged over many positions t, for k = 0 ... K and each layer.

Lags are counted from the state the prediction is made from: **lag 0 is the state after reading
x_{t-1}**, whose top layer's h the output layer turns into p(x_t), so the gradient at lag 0 is
never trivially zero; lag k is the state after reading x_{t-1-k}.

The gradient is the total derivative through the whole stack: h^l at step j reaches the
prediction both through layer l's next step and, at the same step, through the layers above
it. The stack is therefore unrolled here step by step with the kernels' cell arithmetic
(:func:`charlm.nn.kernels.cell_step`) and the model's own embedding, kernels, biases and output
layer, keeping each step's h (and c) as the one tensor that feeds both the next step and the
layer above, and the gradient is taken with respect to those tensors. An LSTM's c^l_j likewise
reaches the prediction through h^l_j = o tanh(c^l_j) of its own step and through the next
step's c: its gradient is what backpropagation carries along the cell state.

How it is computed: positions are drawn at random (seeded) among the text's predicted tokens.
Each becomes one row of a batch: the K+1 tokens x_{t-1-K} ... x_{t-1}, read from the model's
real state before them (found by reading the text once from its start, after the line-break
context ``charlm eval`` reads every text after, :func:`charlm.evaluate.start_ids`); the loss is the
sum over rows of log p(x_t) at each row's last step, and one backward pass gives every row's
gradient with respect to every state of its window. A position fewer than K tokens from the
start of what the model read has only the lags that reach back to its first token: it adds to
the mean of those lags and not to the others (the line-break context counts as read). Tokens
that are the unknown symbol are not drawn as positions t (they may be read before one).
"""

from __future__ import annotations

import numpy as np

from charlm.errors import CharlmError
from charlm.evaluate import start_ids
from charlm.nn.kernels import cell_step, rnn_inference
from charlm.nn.model import output_weights, recurrent_layers
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

MAX_LAG = 200
POSITIONS = 64
# At most about this many floats of forward values are held for one backward pass (512 MiB); more
# positions than fit are measured in several passes, each costing the same Python-level work.
TAPE_BUDGET = 1 << 27
# Per row, step and layer, about this many H-wide float32 values stay alive until the backward
# pass is done (measured: an LSTM's gates, their pre-activations and gradients, c, tanh c, h, ...).
_TAPE_WIDTH = {"lstm": 40, "gru": 32, "rnn": 10}
FRACTIONS = (10, 100)  # the 1/10 and 1/100 lags


def state_names(cell: str) -> tuple:
    """The states of one layer, in the model's order: ("h", "c") for an LSTM, ("h",) otherwise."""
    return ("h", "c") if cell == "lstm" else ("h",)


def state_gradients(lm, tokens, targets, states=None, pad=None) -> list:
    """The gradient of each row's log p(targets[b]) with respect to every state of the stack
    while ``lm`` reads ``tokens``.

    Args:
        lm: a :class:`charlm.nn.lm.LanguageModel`.
        tokens: (B, S) int token ids; row b reads tokens[b, 0], ..., tokens[b, S-1] and then
            predicts targets[b].
        targets: (B,) int token ids.
        states: the states before tokens[:, 0], in the model's input order, (B, H) each
            (default: zeros).
        pad: (B,) int, optional: the first pad[b] steps of row b are padding: row b starts
            from ``states`` at step pad[b], and the gradients of its padding steps are NaN.

    Returns:
        per layer (bottom first), a dict from "h" (and an LSTM's "c") to a (B, S, H) float32
        array whose [b, k] is the gradient with respect to that state after reading
        tokens[b, S-1-k]: lag k, lag 0 being the state the prediction is made from.
    """
    tokens = np.asarray(tokens, np.int32)
    targets = np.asarray(targets, np.int32)
    batch, steps = tokens.shape
    if states is None:
        states = lm.zero_states(batch)
    weights = _weights(lm)
    grads = _backward(lm.config.cell, weights, tf.constant(tokens), tf.constant(targets),
                      [tf.convert_to_tensor(s, tf.float32) for s in states], pad)
    names = state_names(lm.config.cell)
    out = []
    for per_step in grads:  # per layer: S tuples of per-state gradients, (B, H) each
        layer = {}
        for index, name in enumerate(names):
            values = np.stack([g[index].numpy() for g in per_step], axis=1)[:, ::-1]  # lag order
            if pad is not None:
                for b, p in enumerate(pad):
                    if p:
                        values[b, steps - p:] = np.nan
            layer[name] = np.ascontiguousarray(values)
        out.append(layer)
    return out


def gradient_curve(lm, text: str, max_lag: int = MAX_LAG, positions: int = POSITIONS, seed: int = 0) -> dict:
    """The vanishing-gradient curve of ``lm`` over ``text``: see the module docstring.

    Returns a JSON-ready dict: ``cell``, ``layers``, ``hidden``, ``tokens`` (the text's),
    ``max_lag`` (as asked), ``lags`` (the largest lag measured: ``max_lag``, or less where the
    text is shorter), ``positions`` (the text positions t measured, 0-based, sorted), ``seed``,
    and ``curves``: per layer (bottom first) and state ("h", an LSTM's "c"), ``{"layer" (1-based),
    "state", "norm": [mean gradient norm at lag k = 0 ... lags], "count": [positions that reach
    lag k], "lag_10", "lag_100"}``, where ``lag_10`` is the first lag at which the mean norm is at
    most 1/10 of its value at lag 0 (None when it never is, up to ``lags``), ``lag_100`` the same
    for 1/100.
    """
    if max_lag < 0:
        raise CharlmError(f"--max-lag must be at least 0, got {max_lag}")
    if positions < 1:
        raise CharlmError(f"--positions must be at least 1, got {positions}")
    if not text:
        raise CharlmError("the text is empty")
    cell, config = lm.config.cell, lm.config
    ids = lm.tokenizer.encode(text).astype(np.int32)
    start = start_ids(lm.tokenizer)
    seq = np.concatenate([start, ids]).astype(np.int32)
    first = len(start)
    # Text position t is seq index s = first + t, predicted from the state after reading seq[s-1].
    # Positions whose token is the unknown symbol (or another special one) are not measured.
    special = [lm.tokenizer.pad_id, *lm.tokenizer.special_ids]
    if lm.tokenizer.unk_id is not None:
        special.append(lm.tokenizer.unk_id)
    candidates = np.flatnonzero(~np.isin(ids, special))
    candidates = candidates[first + candidates >= 1]  # the first token is measured only after a context
    if len(candidates) == 0:
        raise CharlmError("the text has no token to measure: it needs at least one known token with a token "
                          "before it")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(candidates, size=min(positions, len(candidates)), replace=False))
    ends = first + chosen  # the seq index of each target
    lags = int(min(max_lag, ends.max() - 1))
    steps = lags + 1
    # Row b reads seq[ends[b] - steps .. ends[b] - 1]; its state before them is the one after
    # seq[ends[b] - steps - 1] (zeros where that index is below 0, with padding below index 0).
    initial = _states_after(lm, seq, ends - steps - 1)
    per_row = TAPE_BUDGET // (steps * config.layers * config.hidden * _TAPE_WIDTH[cell])
    per_row = max(1, min(len(chosen), per_row))
    per_row = -(-len(chosen) // -(-len(chosen) // per_row))  # the same number of passes, evenly filled
    names = state_names(cell)
    sums = np.zeros((config.layers, len(names), steps))
    for begin in range(0, len(chosen), per_row):
        rows = slice(begin, begin + per_row)
        row_ends = ends[rows]
        index = row_ends[:, None] - steps + np.arange(steps)[None, :]
        pad = np.maximum(0, -index.min(axis=1))
        grads = state_gradients(lm, seq[np.maximum(index, 0)], seq[row_ends],
                                [s[rows] for s in initial], pad if pad.any() else None)
        for layer, per_state in enumerate(grads):
            for k, name in enumerate(names):
                norms = np.linalg.norm(per_state[name].astype(np.float64), axis=2)  # (rows, steps)
                sums[layer, k] += np.nansum(norms, axis=0)
    count = np.array([(ends - 1 - k >= 0).sum() for k in range(steps)])
    curves = []
    for layer in range(config.layers):
        for k, name in enumerate(names):
            norm = sums[layer, k] / np.maximum(count, 1)
            curves.append({"layer": layer + 1, "state": name, "norm": norm.tolist(), "count": count.tolist(),
                           **{f"lag_{f}": falls_to(norm, 1 / f) for f in FRACTIONS}})
    return {"cell": cell, "layers": config.layers, "hidden": config.hidden, "tokens": len(ids),
            "max_lag": max_lag, "lags": lags, "positions": chosen.tolist(), "seed": seed, "curves": curves}


def falls_to(norm, fraction: float):
    """The first lag at which ``norm`` is at most ``fraction`` of ``norm[0]``, or None."""
    norm = np.asarray(norm)
    if not norm[0] > 0:
        return None
    below = np.flatnonzero(norm <= fraction * norm[0])
    return int(below[0]) if len(below) else None


# ---- the model's states at the windows' starts -------------------------------------------------


def _states_after(lm, seq, at):
    """The model's states after reading seq[0..at[b]] from fresh states, for each b (zeros
    where at[b] < 0): a list in the model's input order of (B, H) float32 arrays. The sequence
    is read once, as one stream, up to the last index asked for, in pieces cut where a state is
    wanted (:func:`charlm.nn.kernels.rnn_inference`, the arithmetic ``charlm eval`` reads with)."""
    config = lm.config
    out = [np.zeros((len(at), config.hidden), np.float32) for _ in range(config.layers * config.states_per_layer)]
    read = _reader(lm)
    states, done = lm.zero_states(1), 0  # the states after seq[:done]
    for b in sorted(np.flatnonzero(at >= 0), key=lambda b: at[b]):
        if at[b] + 1 > done:
            states = read(tf.constant(seq[None, done : at[b] + 1]), states)
            done = at[b] + 1
        for slot, state in enumerate(states):
            out[slot][b] = state.numpy()[0]
    return out


def _reader(lm):
    """``read(tokens (1, T), states) -> states``: the states after reading the tokens, compiled
    once for any T."""
    config, model = lm.config, lm.model
    embedding = model.get_layer("embedding").embeddings
    rnns, k = recurrent_layers(model), config.states_per_layer
    state = tf.TensorSpec([1, config.hidden], tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, None], tf.int32), [state] * (config.layers * k)])
    def read(tokens, states):
        x, first_embedding, final = tokens, embedding, []
        for i, rnn in enumerate(rnns):
            cell = rnn.cell
            x, layer_final = rnn_inference(config.cell, x, list(states[i * k : (i + 1) * k]), cell.kernel,
                                           cell.recurrent_kernel, cell.bias, embedding=first_embedding)
            first_embedding = None
            final.extend(layer_final)
        return final

    return read


# ---- the unrolled stack and its backward pass --------------------------------------------------


def _weights(lm) -> dict:
    """The model's weights as float32 tensors: per layer its input projection (the first
    layer's folded with the embedding into a (V, G) table looked up per token), recurrent kernel
    and a GRU's recurrent bias; the output layer's kernel and bias."""
    model, cell = lm.model, lm.config.cell
    embedding = tf.cast(model.get_layer("embedding").embeddings, tf.float32)
    layers = []
    for index, rnn in enumerate(recurrent_layers(model)):
        w = tf.cast(rnn.cell.kernel, tf.float32)
        b = tf.cast(rnn.cell.bias, tf.float32)
        b_in, b_rec = (b[0], b[1]) if cell == "gru" else (b, None)  # a GRU's bias: (2, 3H)
        layer = {"table": tf.matmul(embedding, w) + b_in} if index == 0 else {"w": w, "b": b_in}
        layer["u"] = tf.cast(rnn.cell.recurrent_kernel, tf.float32)
        layer["b_rec"] = b_rec
        layers.append(layer)
    kernel, bias = output_weights(model)  # (H, V), (V,)
    return {"layers": layers, "dense_w": kernel, "dense_b": bias}


def _backward(cell, weights, tokens, targets, states, pad):
    """Unrolls the stack over tokens (B, S), step by step and layer by layer in eager mode (a
    Python loop, so that every step's states are tensors of their own that the tape can
    differentiate with respect to), then one backward pass from the sum of the rows' log p.
    Returns per layer the S tuples of gradients, one per state, (B, H) each."""
    layers = weights["layers"]
    steps_of = [cell_step(cell, layer["u"], layer["b_rec"]) for layer in layers]
    per_layer = len(state_names(cell))
    n_steps = int(tokens.shape[1])
    pad = np.zeros(int(tokens.shape[0]), np.int64) if pad is None else np.asarray(pad)
    # A row with padding reads its first tokens anyway, from a state nothing depends on: at its
    # first real step its input state is reset to ``states``. The reset selects the step's input,
    # never its output, so that each kept state is the step's own tensor (an LSTM's c is the one
    # its h = o tanh(c) was computed from).
    resets = {j: tf.constant((pad == j)[:, None]) for j in np.unique(pad) if j > 0}
    # The first layer's input projections of all steps, looked up before the tape starts: the
    # tape records only what the watched initial states reach, and nothing is differentiated
    # with respect to the inputs.
    xw0 = tf.unstack(tf.gather(layers[0]["table"], tokens), axis=1)  # S x (B, G)
    with tf.GradientTape() as tape:
        for state in states:
            tape.watch(state)
        initial = [tuple(states[i * per_layer : (i + 1) * per_layer]) for i in range(len(layers))]
        current = list(initial)
        kept = [[] for _ in layers]
        for j in range(n_steps):
            x = None
            for i, (layer, step) in enumerate(zip(layers, steps_of)):
                xw = xw0[j] if i == 0 else tf.matmul(x, layer["w"]) + layer["b"]
                before = current[i]
                if j in resets:
                    before = tuple(tf.where(resets[j], s0, s) for s0, s in zip(initial[i], before))
                new, _ = step([xw], before)
                current[i] = tuple(new)
                kept[i].append(current[i])
                x = current[i][0]  # the same h feeds the layer above and the next step
        logits = tf.matmul(x, weights["dense_w"]) + weights["dense_b"]
        loss = -tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits))
    return tape.gradient(loss, kept, unconnected_gradients=tf.UnconnectedGradients.ZERO)
