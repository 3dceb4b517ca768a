"""Fast forward and backward passes for Keras' built-in LSTM, GRU and SimpleRNN layers.

Plain Keras on CPU computes ``x_t · W`` inside its time loop and lets TensorFlow differentiate
through that loop. The kernels here follow the cuDNN/oneDNN recipe instead:

* forward: one large matrix product projects the inputs of all T steps at once; the time loop
  only does the recurrent product ``h_{t-1} · U`` and the gate arithmetic, and keeps the gate
  activations it computed;
* backward (hand written, ``tf.custom_gradient``): the time loop only propagates the state
  gradients and does ``dGates_t · U^T``; the weight gradients of all T steps are then three large
  products over all B*T rows (``dW = X^T · dGates``, ``dU = H_{t-1}^T · dGates``,
  ``db = sum(dGates)``) and the input gradient is one product ``dGates · W^T``.

Inside the loops every tensor is time major, (T, B, ·), so that step t is a contiguous slice.
:func:`rnn_inference` is the forward pass alone, for evaluation: the same step functions, keeping
only the hidden states instead of everything the backward pass reads.

The weights are those of ``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN`` built with default
arguments (tanh activation, sigmoid recurrent activation, ``use_bias=True``, GRU
``reset_after=True``), in exactly Keras' layout and gate order:

* LSTM: kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,), gates [i, f, c, o];
* GRU: kernel (D, 3H), recurrent_kernel (H, 3H), bias (2, 3H) = [input bias; recurrent bias],
  gates [z, r, h];
* SimpleRNN: kernel (D, H), recurrent_kernel (H, H), bias (H,).
"""

import tensorflow as tf

CELLS = ("lstm", "gru", "rnn")


def rnn_sequence(cell, inputs, initial_states, kernel, recurrent_kernel, bias):
    """Runs one recurrent layer over a whole sequence, with a hand-written gradient.

    Args:
        cell: "lstm", "gru" or "rnn" (SimpleRNN).
        inputs: (B, T, D) float32.
        initial_states: list of (B, H) tensors: [h, c] for "lstm", [h] for "gru" and "rnn".
        kernel, recurrent_kernel, bias: the variables (or tensors) of the corresponding Keras
            layer built with default arguments, in Keras' layout (see the module docstring).

    Returns:
        (outputs, final_states): outputs (B, T, H), the hidden state of every step;
        final_states, a list shaped like ``initial_states``. Both equal, within float32
        rounding, what the Keras layer returns with ``return_sequences=True,
        return_state=True, initial_state=initial_states``, and so do the gradients with
        respect to inputs, initial states and weights (gradients with respect to the final
        states flow back too).
    """
    _check(cell, initial_states)
    # Reading the variables here, outside the custom-gradient function, makes them ordinary
    # tensor inputs of it: their gradients are returned like any other input gradient and the
    # tape carries them on to the variables.
    args = [tf.convert_to_tensor(a) for a in (inputs, kernel, recurrent_kernel, bias)]
    states = [tf.convert_to_tensor(s) for s in initial_states]
    fn = {"lstm": _lstm, "gru": _gru, "rnn": _simple_rnn}[cell]
    outputs, *final_states = fn(*args, *states)
    return outputs, list(final_states)


def rnn_inference(cell, inputs, initial_states, kernel, recurrent_kernel, bias):
    """Runs one recurrent layer over a whole sequence, forward only: what :func:`rnn_sequence`
    returns, computed the same way, but without keeping the gate activations and cell states
    that its backward pass reads (an LSTM step writes H floats per row instead of 6H). For
    evaluation and validation, which never differentiate.
    """
    _check(cell, initial_states)
    x_tm = _time_major(tf.convert_to_tensor(inputs))
    step, xw = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _simple_rnn_step}[cell](
        x_tm, *(tf.convert_to_tensor(a) for a in (kernel, recurrent_kernel, bias)))

    def hidden_only(slices, carry):
        carry, outs = step(slices, carry)
        return carry, outs[-1:]  # every step function lists the new h last

    states = tuple(tf.convert_to_tensor(s) for s in initial_states)
    final_states, (hs,) = _time_loop(hidden_only, [xw], states, 1, False)
    return _time_major(hs), list(final_states)


def _check(cell, initial_states):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    expected = 2 if cell == "lstm" else 1
    if len(initial_states) != expected:
        raise ValueError(f"{cell} takes {expected} initial state(s), got {len(initial_states)}")


def _time_loop(step, sequences, carry, n_outputs, reverse):
    """Runs ``carry, outs = step(slices, carry)`` over the leading (time) axis in a
    ``tf.while_loop`` (measured faster than a Python-unrolled loop, and far quicker to build).

    Args:
        step: function of (list of step slices, carry tuple) -> (new carry tuple, list of
            per-step outputs).
        sequences: list of time-major tensors (T, ...).
        carry: tuple of tensors, the loop state.
        n_outputs: how many per-step outputs (all float32) ``step`` returns.
        reverse: walk t = T-1 ... 0 instead of 0 ... T-1; outputs are still indexed by t.

    Returns:
        (final carry, list of stacked per-step outputs (T, ...)).
    """
    n = tf.shape(sequences[0])[0]
    arrays = tuple(tf.TensorArray(tf.float32, size=n) for _ in range(n_outputs))

    def body(i, carry, arrays):
        t = n - 1 - i if reverse else i
        carry, out = step([s[t] for s in sequences], carry)
        arrays = tuple(a.write(t, v) for a, v in zip(arrays, out))
        return i + 1, carry, arrays

    _, carry, arrays = tf.while_loop(
        lambda i, *_: i < n, body, (tf.constant(0), carry, arrays), parallel_iterations=1
    )
    return carry, [a.stack() for a in arrays]


def _time_major(x):
    """(B, T, ·) <-> (T, B, ·)."""
    return tf.transpose(x, [1, 0, 2])


def _shift_in(first, seq):
    """(B, H), (T, B, H) -> (T, B, H): [first, seq[0], ..., seq[T-2]], the value at t-1."""
    return tf.concat([first[None], seq[:-1]], axis=0)


def _project(x_tm, w, b):
    """All-steps input projection: (T, B, D) · (D, G) + b -> (T, B, G) as one product."""
    shape = tf.shape(x_tm)
    y = tf.matmul(tf.reshape(x_tm, [-1, w.shape[0]]), w) + b
    return tf.reshape(y, [shape[0], shape[1], w.shape[1]])


def _flat(x_tm):
    """(T, B, G) -> (T*B, G): all steps as rows of one matrix."""
    return tf.reshape(x_tm, [-1, x_tm.shape[-1]])


def _matmul_grads(x_tm, h_prev_tm, dgx_tm, dgh_tm, w):
    """Weight and input gradients of all T steps as three large products.

    Args:
        x_tm: (T, B, D) layer inputs; h_prev_tm: (T, B, H) hidden state entering each step.
        dgx_tm: (T, B, G) gradient of the input projection x·W + b of every step;
        dgh_tm: (T, B, G) gradient of the recurrent product h_{t-1}·U of every step.
        w: (D, G) kernel.

    Returns:
        dx (B, T, D), dW (D, G), dU (H, G).
    """
    dgx = _flat(dgx_tm)
    dw = tf.matmul(_flat(x_tm), dgx, transpose_a=True)
    du = tf.matmul(_flat(h_prev_tm), _flat(dgh_tm), transpose_a=True)
    shape = tf.shape(x_tm)
    dx = tf.reshape(tf.matmul(dgx, w, transpose_b=True), [shape[0], shape[1], w.shape[0]])
    return _time_major(dx), dw, du


def _or_zeros(grad, like):
    """Upstream gradient of an output that did not reach the loss may arrive as None."""
    return tf.zeros_like(like) if grad is None else grad


def _lstm_step(x_tm, w, u, b):
    """(step, xw): the LSTM step function for :func:`_time_loop` and the input projection
    (T, B, 4H) of all steps it reads; the step's outputs are [s, c, h] (s the gates)."""
    units = u.shape[0]
    # One sigmoid serves all four gates: tanh(x) = 2 sigmoid(2x) - 1, so the candidate ("c")
    # columns of W, U and b are doubled (cheap: weights only), and g = 2 sigmoid - 1.
    scale = tf.concat([tf.ones([2 * units]), tf.fill([units], 2.0), tf.ones([units])], axis=0)
    xw = _project(x_tm, w * scale, b * scale)  # (T, B, 4H)
    u_scaled = u * scale

    def step(slices, carry):
        (xw_t,) = slices
        h, c = carry
        s = tf.sigmoid(xw_t + tf.matmul(h, u_scaled))  # (B, 4H): i, f, (g+1)/2, o
        i, f, sg, o = tf.split(s, 4, axis=1)
        c = f * c + i * (2.0 * sg - 1.0)
        h = o * tf.tanh(c)
        return (h, c), [s, c, h]

    return step, xw


@tf.custom_gradient
def _lstm(x, w, u, b, h0, c0):
    """LSTM over a sequence: (x, W, U, b, h0, c0) -> (outputs, hT, cT), gates [i, f, c, o]."""
    x_tm = _time_major(x)
    step, xw = _lstm_step(x_tm, w, u, b)
    (h_last, c_last), (s, cs, hs) = _time_loop(step, [xw], (h0, c0), 3, False)
    outputs = _time_major(hs)

    def grad(d_outputs, d_h_last, d_c_last):
        d_out = _time_major(_or_zeros(d_outputs, outputs))
        u_t = tf.transpose(u)  # (4H, H), transposed once outside the loop

        # The coefficients below are computed step by step inside the loop rather than for all
        # steps at once beforehand: each step's slices stay in cache, which measured faster than
        # a dozen passes over (T, B, 4H) tensors in memory.
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
            return (tf.matmul(dz, u_t), dc * f), [dz]

        (dh0, dc0), (dz,) = _time_loop(
            back_step, [d_out, s, cs, _shift_in(c0, cs)],
            (_or_zeros(d_h_last, h0), _or_zeros(d_c_last, c0)), 1, True,
        )
        dx, dw, du = _matmul_grads(x_tm, _shift_in(h0, hs), dz, dz, w)
        db = tf.reduce_sum(_flat(dz), axis=0)
        return dx, dw, du, db, dh0, dc0

    return (outputs, h_last, c_last), grad


def _gru_step(x_tm, w, u, b):
    """(step, xw) for the GRU, as :func:`_lstm_step`; the step's outputs are
    [zr, hh, inner_h, h]."""
    units = u.shape[0]
    xw = _project(x_tm, w, b[0])  # (T, B, 3H), input bias included
    b_rec = b[1]  # (3H,), added to h·U before the reset gate applies

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

    return step, xw


@tf.custom_gradient
def _gru(x, w, u, b, h0):
    """GRU (reset_after) over a sequence: (x, W, U, b, h0) -> (outputs, hT), gates [z, r, h];
    b (2, 3H) = [input bias; recurrent bias]."""
    units = u.shape[0]
    x_tm = _time_major(x)
    step, xw = _gru_step(x_tm, w, u, b)
    (h_last,), (zr, hh, inner_h, hs) = _time_loop(step, [xw], (h0,), 4, False)
    outputs = _time_major(hs)

    def grad(d_outputs, d_h_last):
        d_out = _time_major(_or_zeros(d_outputs, outputs))
        h_prev = _shift_in(h0, hs)
        u_t = tf.transpose(u)  # (3H, H)

        def back_step(slices, carry):
            d_out_t, zr_t, hh_t, inner_h_t, h_prev_t = slices
            (dh_rec,) = carry
            dh = d_out_t + dh_rec
            z, r = zr_t[:, :units], zr_t[:, units:]
            d_cand = dh * (1.0 - z) * (1.0 - hh_t * hh_t)  # gradient of hh's pre-activation
            d_zr = tf.concat([dh * (h_prev_t - hh_t), d_cand * inner_h_t], 1)
            d_zr = d_zr * (zr_t - zr_t * zr_t)  # (B, 2H) pre-activation gradients of z, r
            d_inner = tf.concat([d_zr, d_cand * r], 1)  # (B, 3H) gradient of h·U + b_rec
            return (tf.matmul(d_inner, u_t) + dh * z,), [d_inner, d_cand]

        (dh0,), (d_inner, d_cand) = _time_loop(
            back_step, [d_out, zr, hh, inner_h, h_prev], (_or_zeros(d_h_last, h0),), 2, True
        )
        # x·W + b_in shares the z and r blocks with h·U + b_rec; in the candidate block dh
        # reaches x·W directly but h·U only through the reset gate.
        dgx = tf.concat([d_inner[..., : 2 * units], d_cand], axis=2)  # (T, B, 3H)
        dx, dw, du = _matmul_grads(x_tm, h_prev, dgx, d_inner, w)
        db = tf.stack([tf.reduce_sum(_flat(dgx), axis=0), tf.reduce_sum(_flat(d_inner), axis=0)])
        return dx, dw, du, db, dh0

    return (outputs, h_last), grad


def _simple_rnn_step(x_tm, w, u, b):
    """(step, xw) for the SimpleRNN, as :func:`_lstm_step`; the step's output is [h]."""
    xw = _project(x_tm, w, b)  # (T, B, H)

    def step(slices, carry):
        (xw_t,) = slices
        (h,) = carry
        h = tf.tanh(xw_t + tf.matmul(h, u))
        return (h,), [h]

    return step, xw


@tf.custom_gradient
def _simple_rnn(x, w, u, b, h0):
    """SimpleRNN over a sequence: (x, W, U, b, h0) -> (outputs, hT)."""
    x_tm = _time_major(x)
    step, xw = _simple_rnn_step(x_tm, w, u, b)
    (h_last,), (hs,) = _time_loop(step, [xw], (h0,), 1, False)
    outputs = _time_major(hs)

    def grad(d_outputs, d_h_last):
        d_out = _time_major(_or_zeros(d_outputs, outputs))
        u_t = tf.transpose(u)

        def back_step(slices, carry):
            d_out_t, h_t = slices
            (dh_rec,) = carry
            da = (d_out_t + dh_rec) * (1.0 - h_t * h_t)  # (B, H) pre-activation gradient
            return (tf.matmul(da, u_t),), [da]

        (dh0,), (da,) = _time_loop(back_step, [d_out, hs], (_or_zeros(d_h_last, h0),), 1, True)
        dx, dw, du = _matmul_grads(x_tm, _shift_in(h0, hs), da, da, w)
        db = tf.reduce_sum(_flat(da), axis=0)
        return dx, dw, du, db, dh0

    return (outputs, h_last), grad
