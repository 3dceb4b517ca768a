"""charlm's own forward and backward passes for Keras' built-in LSTM, GRU and SimpleRNN layers.

Plain Keras on CPU computes ``x_t · W`` inside its time loop and lets TensorFlow differentiate
through that loop. The kernels here follow the cuDNN/oneDNN recipe instead:

* forward: one large matrix product projects the inputs of all T steps at once; the time loop
  only does the recurrent product ``h_{t-1} · U`` and the gate arithmetic, and keeps the gate
  activations it computed;
* backward (hand written, ``tf.custom_gradient`` around the recurrence): the time loop only
  propagates the state gradients and does ``dGates_t · U^T``; the recurrent weights' gradient of
  all T steps is then one large product over all B*T rows (``dU = H_{t-1}^T · dGates``), and
  TensorFlow differentiates the one projection product (``dW = X^T · dGates``,
  ``db = sum(dGates)``, ``dX = dGates · W^T``, each one product).

A first layer that reads an embedding can take the token ids and the embedding matrix instead of
the embedded inputs; the lookup and the projection are then one lookup in the (V, G) table
``E · W + b`` (see :func:`rnn_sequence`).

Inside the loops every tensor is time major, (T, B, ·), so that step t is a contiguous slice.
:func:`rnn_inference` is the forward pass alone, for evaluation: the same step functions, keeping
only the hidden states instead of everything the backward pass reads. :func:`cell_step` is the
one definition of each cell's step: these loops, the sampler (:mod:`charlm.sample`) and the
SavedModel (:mod:`charlm.export`) all run it.

The weights are those of ``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN`` built with default
arguments (tanh activation, sigmoid recurrent activation, ``use_bias=True``, GRU
``reset_after=True``), in exactly Keras' layout and gate order:

* LSTM: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,), gates [i, f, c, o];
* GRU: kernel (D, 3H), recurrent_kernel (H, 3H), bias (2, 3H) = [input bias; recurrent bias],
  gates [z, r, h];
* SimpleRNN: kernel (D, H), recurrent_kernel (H, H), bias (H,).
"""

from charlm.runtime import import_keras, xla_region_analysis

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

CELLS = ("lstm", "gru", "rnn")
# From this many units the backward recurrence reads U transposed inside its product (see
# :func:`_times_transpose`).
TRANSPOSED_READ_MIN_UNITS = 512


def rnn_sequence(cell, inputs, initial_states, kernel, recurrent_kernel, bias, embedding=None):
    """Runs one recurrent layer over a whole sequence, with a hand-written gradient.

    Args:
        cell: "lstm", "gru" or "rnn" (SimpleRNN).
        inputs: (B, T, D) float32; or, with ``embedding``, int token ids (B, T).
        initial_states: list of (B, H) tensors: [h, c] for "lstm", [h] for "gru" and "rnn".
        kernel, recurrent_kernel, bias: the variables (or tensors) of the corresponding Keras
            layer built with default arguments, in Keras' layout (see the module docstring).
        embedding: optional (V, D) embedding matrix: the layer then reads embedding[inputs].
            The lookup and the input projection become one lookup in the (V, G) table
            embedding · kernel + bias, and their gradient one sum of the (B*T, G) upstream
            rows by token id, instead of a (B*T, D)·(D, G) product each way plus the gradient
            of the lookup.

    Returns:
        (outputs, final_states): outputs (B, T, H), the hidden state of every step;
        final_states, a list shaped like ``initial_states``. Both equal, within float32
        rounding, what the Keras layer returns with ``return_sequences=True,
        return_state=True, initial_state=initial_states``, and so do the gradients with
        respect to inputs, initial states and weights (gradients with respect to the final
        states flow back too).
    """
    _check(cell, initial_states)
    xw = _input_projection(cell, inputs, kernel, bias, embedding)  # (T, B, G)
    # Reading the variables here, outside the custom-gradient functions, makes them ordinary
    # tensor inputs of them: their gradients are returned like any other input gradient and
    # the tape carries them on to the variables.
    u = tf.convert_to_tensor(recurrent_kernel)
    states = [tf.convert_to_tensor(s) for s in initial_states]
    if cell == "gru":
        hs, *final_states = _gru(xw, u, tf.convert_to_tensor(bias)[1], *states)
    else:
        hs, *final_states = {"lstm": _lstm, "rnn": _simple_rnn}[cell](xw, u, *states)
    return _time_major(hs), list(final_states)


def rnn_inference(cell, inputs, initial_states, kernel, recurrent_kernel, bias, embedding=None):
    """Runs one recurrent layer over a whole sequence, forward only: what :func:`rnn_sequence`
    returns, computed the same way, but without keeping the gate activations and cell states
    that its backward pass reads (an LSTM step writes H floats per row instead of 6H). For
    evaluation and validation, which never differentiate.
    """
    _check(cell, initial_states)
    xw = _input_projection(cell, inputs, kernel, bias, embedding)
    step = cell_step(cell, recurrent_kernel, tf.convert_to_tensor(bias)[1] if cell == "gru" else None)

    def hidden_only(slices, carry):
        carry, outs = step(slices, carry)
        return carry, outs[-1:]  # every step function lists the new h last

    states = tuple(tf.convert_to_tensor(s) for s in initial_states)
    final_states, (hs,) = _time_loop(hidden_only, [xw], states, 1, False, prefetch=cell == "gru")
    return _time_major(hs), list(final_states)


# The per-step values :func:`rnn_trace` returns, by cell: an LSTM's gates i, f, o, its candidate
# g and cell state c; a GRU's gates z, r and candidate g; a SimpleRNN's pre-activation a; and h.
TRACED = {"lstm": ("i", "f", "g", "o", "c", "h"), "gru": ("z", "r", "g", "h"), "rnn": ("a", "h")}


def rnn_trace(cell, inputs, initial_states, kernel, recurrent_kernel, bias, embedding=None):
    """Runs one recurrent layer over a whole sequence, forward only, keeping every value inside
    the cell at every step: what :func:`rnn_inference` computes, the same way, plus the values
    that the layer never returns.

    Returns:
        (values, final_states): ``values`` maps each name of :data:`TRACED` for ``cell`` to a
        (B, T, H) tensor; ``final_states`` is a list shaped like ``initial_states``.
    """
    _check(cell, initial_states)
    xw = _input_projection(cell, inputs, kernel, bias, embedding)  # (T, B, G)
    u = tf.convert_to_tensor(recurrent_kernel)
    step = cell_step(cell, u, tf.convert_to_tensor(bias)[1] if cell == "gru" else None)
    n_outputs = {"lstm": 3, "gru": 4, "rnn": 1}[cell]
    states = tuple(tf.convert_to_tensor(s) for s in initial_states)
    final_states, outputs = _time_loop(step, [xw], states, n_outputs, False)
    units = u.shape[0]
    if cell == "lstm":
        s, c, h = outputs  # s: sigmoid of i, f, 2·(candidate pre-activation), o
        i, f, sg, o = tf.split(s, 4, axis=2)
        values = {"i": i, "f": f, "g": 2.0 * sg - 1.0, "o": o, "c": c, "h": h}
    elif cell == "gru":
        zr, hh, _, h = outputs
        values = {"z": zr[..., :units], "r": zr[..., units:], "g": hh, "h": h}
    else:
        (h,) = outputs
        # a_t = x_t·W + b + h_{t-1}·U, for all steps as one product after the loop.
        a = xw + tf.reshape(tf.matmul(_flat(_shift_in(states[0], h)), u), tf.shape(h))
        values = {"a": a, "h": h}
    return {name: _time_major(values[name]) for name in TRACED[cell]}, list(final_states)


def cell_step(cell, recurrent_kernel, recurrent_bias=None):
    """One step of a cell, in Keras' gate layout: ``step([xw_t], states) -> (new_states,
    outputs)``, where xw_t (B, G) = x_t·W + b_in is the step's input projection, ``states``
    the tuple (h, c) of an LSTM or (h,) of a GRU or SimpleRNN, (B, H) each, and ``outputs``
    the per-step values the backward pass reads, the new h last. ``recurrent_bias``: a GRU's
    (3H,) recurrent bias (Keras' ``bias[1]``). Make it once per traced function, outside the
    time loop: it prepares the recurrent kernel when made."""
    u = tf.convert_to_tensor(recurrent_kernel)
    if cell == "lstm":
        return _lstm_step(u)
    if cell == "gru":
        return _gru_step(u, tf.convert_to_tensor(recurrent_bias))
    return _simple_rnn_step(u)


def _check(cell, initial_states):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    expected = 2 if cell == "lstm" else 1
    if len(initial_states) != expected:
        raise ValueError(f"{cell} takes {expected} initial state(s), got {len(initial_states)}")


def _time_loop(step, sequences, carry, n_outputs, reverse, prefetch=False, overwrite=None):
    """Runs ``carry, outs = step(slices, carry)`` over the leading (time) axis in a
    ``tf.while_loop`` (faster than a Python-unrolled loop, and far quicker to build).

    Args:
        step: function of (list of step slices, carry tuple) -> (new carry tuple, list of
            per-step outputs).
        sequences: list of time-major tensors (T, ...); T >= 1 with ``prefetch``.
        carry: tuple of tensors, the loop state.
        n_outputs: how many per-step outputs (all float32) ``step`` returns.
        reverse: walk t = T-1 ... 0 instead of 0 ... T-1; outputs are still indexed by t.
        prefetch: each iteration reads the next step's slices and carries them to the next
            iteration, instead of reading its own. Under XLA a slice read in the step is fused
            into the step's arithmetic, which for the GRU's forward-only step ran several times
            slower than on a carried slice; elsewhere it gained nothing, so it is opt-in
            (BENCHMARKS.md).
        overwrite: the index of a sequence that the first per-step output replaces, step by
            step, after the step has read it (the two must have the same per-step shape; not
            with ``prefetch``). Under XLA the loop then updates that sequence's buffer in place
            instead of filling a new one that XLA first sets to zeros and copies.

    Returns:
        (final carry, list of stacked per-step outputs (T, ...)).
    """
    n = tf.shape(sequences[0])[0]
    arrays = [tf.TensorArray(tf.float32, size=n) for _ in range(n_outputs)]
    if overwrite is not None:
        assert not prefetch, "overwrite reads its sequence from the loop's own array"
        arrays[0] = arrays[0].unstack(sequences[overwrite])

    def slices_at(t, arrays=()):
        return tuple(arrays[0].read(t) if j == overwrite else s[t] for j, s in enumerate(sequences))

    def body(i, carry, carried, arrays):
        t = n - 1 - i if reverse else i
        carry, out = step(list(carried if prefetch else slices_at(t, arrays)), carry)
        arrays = tuple(a.write(t, v) for a, v in zip(arrays, out))
        if prefetch:  # the last iteration reads a slice it does not need, clamped in range
            carried = slices_at(tf.maximum(t - 1, 0) if reverse else tf.minimum(t + 1, n - 1))
        return i + 1, carry, carried, arrays

    first = slices_at(n - 1 if reverse else 0) if prefetch else ()
    _, carry, _, arrays = tf.while_loop(
        lambda i, *_: i < n, body, (tf.constant(0), carry, first, tuple(arrays)),
        parallel_iterations=1,
    )
    return carry, [a.stack() for a in arrays]


def _time_major(x):
    """(B, T, ·) <-> (T, B, ·)."""
    return tf.transpose(x, [1, 0, 2])


def _shift_in(first, seq):
    """(B, H), (T, B, H) -> (T, B, H): [first, seq[0], ..., seq[T-2]], the value at t-1."""
    return tf.concat([first[None], seq[:-1]], axis=0)


def _input_projection(cell, inputs, kernel, bias, embedding):
    """x·W + b_in for all T steps, time major (T, B, G), differentiated by TensorFlow: one
    (B*T, D)·(D, G) product; with an ``embedding``, one lookup in the (V, G) table E·W + b_in
    (see :func:`rnn_sequence`)."""
    b_in = bias[0] if cell == "gru" else bias  # a GRU's bias is (2, 3H): [input; recurrent]
    if embedding is not None:
        table = tf.matmul(embedding, kernel) + b_in  # (V, G)
        return _lookup(table, tf.transpose(inputs))  # (T, B, G)
    x_tm = _time_major(tf.convert_to_tensor(inputs))  # (T, B, D)
    shape = tf.shape(x_tm)
    y = tf.matmul(tf.reshape(x_tm, [-1, kernel.shape[0]]), kernel) + b_in
    return tf.reshape(y, [shape[0], shape[1], kernel.shape[1]])


@tf.custom_gradient
def _lookup(table, ids):
    """table[ids] for int ids (T, B) -> (T, B, G). Its gradient for the table is a dense
    (V, G) sum of the upstream gradient's T*B rows by id, which under XLA runs several times
    faster than the equivalent one-hot product (V, T*B)·(T*B, G) (BENCHMARKS.md)."""
    def grad(d):
        return tf.math.unsorted_segment_sum(_flat(d), tf.reshape(ids, [-1]), tf.shape(table)[0]), None

    return tf.gather(table, ids), grad


def _flat(x_tm):
    """(T, B, G) -> (T*B, G): all steps as rows of one matrix."""
    return tf.reshape(x_tm, [-1, x_tm.shape[-1]])


def _weight_grad(h_prev_tm, d_tm):
    """dU = sum over steps of h_{t-1}^T · d_t, as one (H, T*B)·(T*B, G) product outside the loop.
    h_prev_tm (T, B, H): the hidden state entering each step; d_tm (T, B, G): the gradient of
    h_{t-1}·U at each step."""
    return tf.matmul(_flat(h_prev_tm), _flat(d_tm), transpose_a=True)


def _times_transpose(u):
    """The backward recurrence's product ``d -> d · U^T``, (B, G)·(G, H). Under XLA on a CPU a
    product reading U transposed runs faster from :data:`TRANSPOSED_READ_MIN_UNITS` units on, and
    slower below, where U^T transposed once before the loop wins (BENCHMARKS.md)."""
    if u.shape[0] >= TRANSPOSED_READ_MIN_UNITS:
        return lambda d: tf.matmul(d, u, transpose_b=True)
    u_t = tf.transpose(u)  # (G, H)
    return lambda d: tf.matmul(d, u_t)


def _or_zeros(grad, like):
    """Upstream gradient of an output that did not reach the loss may arrive as None."""
    return tf.zeros_like(like) if grad is None else grad


def _lstm_step(u):
    """The LSTM step function for :func:`_time_loop`: reads xw_t = x_t·W + b, (B, 4H); its
    outputs are [s, c, h] (s the gates)."""
    units = u.shape[0]
    # One sigmoid serves all four gates: tanh(x) = 2 sigmoid(2x) - 1, so the candidate ("c")
    # columns of the pre-activations are doubled (U once, outside the loop; xw_t in the step's
    # fused arithmetic), and g = 2 sigmoid - 1.
    scale = tf.concat([tf.ones([2 * units]), tf.fill([units], 2.0), tf.ones([units])], axis=0)
    u_scaled = u * scale

    def step(slices, carry):
        (xw_t,) = slices
        h, c = carry
        s = tf.sigmoid(xw_t * scale + tf.matmul(h, u_scaled))  # (B, 4H): i, f, (g+1)/2, o
        i, f, sg, o = tf.split(s, 4, axis=1)
        c = f * c + i * (2.0 * sg - 1.0)
        h = o * tf.tanh(c)
        return (h, c), [s, c, h]

    return step


@tf.custom_gradient
def _lstm(xw, u, h0, c0):
    """LSTM recurrence: (xw (T, B, 4H) = x·W + b of every step, U, h0, c0) -> (hs (T, B, H),
    hT, cT), gates [i, f, c, o]. The gradient for xw is that of the pre-activations."""
    # The gates replace the pre-activations they are computed from (xw is not needed again).
    (h_last, c_last), (s, cs, hs) = _time_loop(_lstm_step(u), [xw], (h0, c0), 3, False, overwrite=0)

    def grad(d_hs, d_h_last, d_c_last):
        d_hs = _or_zeros(d_hs, hs)
        times_u_t = _times_transpose(u)

        # The coefficients below are computed step by step inside the loop rather than for all
        # steps at once beforehand: each step's slices stay in cache, where a dozen passes over
        # (T, B, 4H) tensors would go through memory.
        def back_step(slices, carry):
            d_out_t, s_t, c_t, c_prev_t = slices
            dh_rec, dc_next = carry  # dz_{t+1} U^T and dc_{t+1} f_{t+1}
            i, f, sg, o = tf.split(s_t, 4, axis=1)
            tc = tf.tanh(c_t)
            dh = d_out_t + dh_rec
            dc = dc_next + dh * o * (1.0 - tc * tc)
            # Pre-activation gradients: the sigmoid derivative s (1 - s) for all four blocks;
            # for the candidate, d tanh = 1 - g² = 4 sg (1 - sg) with g = 2 sg - 1.
            dz = tf.concat([dc * (2.0 * sg - 1.0), dc * c_prev_t, 4.0 * dc * i, dh * tc], 1)
            dz = dz * (s_t - s_t * s_t)  # (B, 4H)
            return (times_u_t(dz), dc * f), [dz]

        # The gate gradients may replace the gates they are computed from, step by step, where
        # XLA can prove that safe without copying the gates every step (see xla_region_analysis).
        (dh0, dc0), (dz,) = _time_loop(
            back_step, [d_hs, s, cs, _shift_in(c0, cs)],
            (_or_zeros(d_h_last, h0), _or_zeros(d_c_last, c0)), 1, True,
            overwrite=1 if xla_region_analysis() else None,
        )
        return dz, _weight_grad(_shift_in(h0, hs), dz), dh0, dc0

    return (hs, h_last, c_last), grad


def _gru_step(u, b_rec):
    """The GRU step function for :func:`_time_loop`: reads xw_t = x_t·W + b_in, (B, 3H);
    b_rec (3H,) is added to h·U before the reset gate applies. Its outputs are
    [zr, hh, inner_h, h]."""
    units = u.shape[0]

    def step(slices, carry):
        (xw_t,) = slices
        (h,) = carry
        inner = tf.matmul(h, u) + b_rec  # (B, 3H)
        # z and r share one sigmoid over 2H columns.
        zr = tf.sigmoid(xw_t[:, : 2 * units] + inner[:, : 2 * units])
        z, r = zr[:, :units], zr[:, units:]
        inner_h = inner[:, 2 * units:]
        hh = tf.tanh(xw_t[:, 2 * units:] + r * inner_h)
        h = hh + z * (h - hh)  # = z h + (1 - z) hh
        return (h,), [zr, hh, inner_h, h]

    return step


@tf.custom_gradient
def _gru(xw, u, b_rec, h0):
    """GRU (reset_after) recurrence: (xw (T, B, 3H) = x·W + b_in of every step, U, b_rec, h0)
    -> (hs (T, B, H), hT), gates [z, r, h]."""
    units = u.shape[0]
    (h_last,), (zr, hh, inner_h, hs) = _time_loop(_gru_step(u, b_rec), [xw], (h0,), 4, False)

    def grad(d_hs, d_h_last):
        d_hs = _or_zeros(d_hs, hs)
        times_u_t = _times_transpose(u)
        h_prev = _shift_in(h0, hs)

        def back_step(slices, carry):
            d_out_t, zr_t, hh_t, inner_h_t, h_prev_t = slices
            (dh_rec,) = carry
            dh = d_out_t + dh_rec
            z, r = zr_t[:, :units], zr_t[:, units:]
            d_cand = dh * (1.0 - z) * (1.0 - hh_t * hh_t)  # gradient of hh's pre-activation
            d_zr = tf.concat([dh * (h_prev_t - hh_t), d_cand * inner_h_t], 1)
            d_zr = d_zr * (zr_t - zr_t * zr_t)  # (B, 2H) pre-activation gradients of z, r
            d_inner = tf.concat([d_zr, d_cand * r], 1)  # (B, 3H) gradient of h·U + b_rec
            return (times_u_t(d_inner) + dh * z,), [d_inner, d_cand]

        (dh0,), (d_inner, d_cand) = _time_loop(
            back_step, [d_hs, zr, hh, inner_h, h_prev], (_or_zeros(d_h_last, h0),), 2, True
        )
        # x·W + b_in shares the z and r blocks with h·U + b_rec; in the candidate block dh
        # reaches x·W directly but h·U only through the reset gate.
        d_xw = tf.concat([d_inner[..., : 2 * units], d_cand], axis=2)  # (T, B, 3H)
        d_b_rec = tf.reduce_sum(_flat(d_inner), axis=0)
        return d_xw, _weight_grad(h_prev, d_inner), d_b_rec, dh0

    return (hs, h_last), grad


def _simple_rnn_step(u):
    """The SimpleRNN step function: reads xw_t = x_t·W + b, (B, H); its output is [h]."""

    def step(slices, carry):
        (xw_t,) = slices
        (h,) = carry
        h = tf.tanh(xw_t + tf.matmul(h, u))
        return (h,), [h]

    return step


@tf.custom_gradient
def _simple_rnn(xw, u, h0):
    """SimpleRNN recurrence: (xw (T, B, H) = x·W + b of every step, U, h0) -> (hs (T, B, H), hT)."""
    (h_last,), (hs,) = _time_loop(_simple_rnn_step(u), [xw], (h0,), 1, False)

    def grad(d_hs, d_h_last):
        d_hs = _or_zeros(d_hs, hs)
        times_u_t = _times_transpose(u)

        def back_step(slices, carry):
            d_out_t, h_t = slices
            (dh_rec,) = carry
            da = (d_out_t + dh_rec) * (1.0 - h_t * h_t)  # (B, H) pre-activation gradient
            return (times_u_t(da),), [da]

        (dh0,), (da,) = _time_loop(back_step, [d_hs, hs], (_or_zeros(d_h_last, h0),), 1, True)
        return da, _weight_grad(_shift_in(h0, hs), da), dh0

    return (hs, h_last), grad
