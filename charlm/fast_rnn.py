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


def rnn_sequence(cell, inputs, initial_states, kernel, recurrent_kernel, bias, unroll=False):
    """Runs one recurrent layer over a whole sequence, with a hand-written gradient.

    Args:
        cell: "lstm", "gru" or "rnn" (SimpleRNN).
        inputs: (B, T, D) float32.
        initial_states: list of (B, H) tensors: [h, c] for "lstm", [h] for "gru" and "rnn".
        kernel, recurrent_kernel, bias: the variables (or tensors) of the corresponding Keras
            layer built with default arguments, in Keras' layout (see the module docstring).
        unroll: if True and T is static, the time loops are unrolled in Python instead of
            being ``tf.while_loop``s.

    Returns:
        (outputs, final_states): outputs (B, T, H), the hidden state of every step;
        final_states, a list shaped like ``initial_states``. Both equal, within float32
        rounding, what the Keras layer returns with ``return_sequences=True,
        return_state=True, initial_state=initial_states``, and so do the gradients with
        respect to inputs, initial states and weights (gradients with respect to the final
        states flow back too).
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    expected = 2 if cell == "lstm" else 1
    if len(initial_states) != expected:
        raise ValueError(f"{cell} takes {expected} initial state(s), got {len(initial_states)}")
    # Reading the variables here, outside the custom-gradient function, makes them ordinary
    # tensor inputs of it: their gradients are returned like any other input gradient and the
    # tape carries them on to the variables.
    args = [tf.convert_to_tensor(a) for a in (inputs, kernel, recurrent_kernel, bias)]
    states = [tf.convert_to_tensor(s) for s in initial_states]
    fn = {"lstm": _lstm, "gru": _gru, "rnn": _simple_rnn}[cell]
    outputs, *final_states = fn(unroll)(*args, *states)
    return outputs, list(final_states)


def _time_loop(step, sequences, carry, n_outputs, reverse, unroll):
    """Runs ``carry, outs = step(slices, carry)`` over the leading (time) axis.

    Args:
        step: function of (list of step slices, carry tuple) -> (new carry tuple, list of
            per-step outputs).
        sequences: list of time-major tensors (T, ...).
        carry: tuple of tensors, the loop state.
        n_outputs: how many per-step outputs (all float32) ``step`` returns.
        reverse: walk t = T-1 ... 0 instead of 0 ... T-1; outputs are still indexed by t.
        unroll: unroll in Python when T is static, else use ``tf.while_loop``.

    Returns:
        (final carry, list of stacked per-step outputs (T, ...)).
    """
    n = sequences[0].shape[0]
    if unroll and n is not None:
        slices = [tf.unstack(s, num=n) for s in sequences]
        outs = None
        order = range(n - 1, -1, -1) if reverse else range(n)
        for t in order:
            carry, out = step([s[t] for s in slices], carry)
            if outs is None:
                outs = [[None] * n for _ in out]
            for o, v in zip(outs, out):
                o[t] = v
        return carry, [tf.stack(o) for o in outs]

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


def _lstm(unroll):
    """Builds the LSTM sequence function (x, W, U, b, h0, c0) -> (outputs, hT, cT)."""

    @tf.custom_gradient
    def lstm(x, w, u, b, h0, c0):
        x_tm = _time_major(x)
        xw = _project(x_tm, w, b)  # (T, B, 4H)

        def step(slices, carry):
            (xw_t,) = slices
            h, c = carry
            z = xw_t + tf.matmul(h, u)  # (B, 4H)
            zi, zf, zg, zo = tf.split(z, 4, axis=1)
            i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
            c = f * c + i * g
            h = o * tf.tanh(c)
            return (h, c), [tf.concat([i, f, g, o], axis=1), c, h]

        (h_last, c_last), (gates, cs, hs) = _time_loop(step, [xw], (h0, c0), 3, False, unroll)
        outputs = _time_major(hs)

        def grad(d_outputs, d_h_last, d_c_last):
            d_out = _time_major(_or_zeros(d_outputs, outputs))
            i, f, g, o = tf.split(gates, 4, axis=2)  # each (T, B, H)
            tc = tf.tanh(cs)
            # Everything that does not depend on the incoming gradient is computed here for all
            # steps at once, so the sequential loop is left with a handful of ops per step:
            # dc_t = dc_{t+1} f_{t+1} + dh_t o_t (1 - tanh²c_t), and the pre-activation
            # gradients dz_t = [dc, dc, dc, dh] * coeff_t.
            dh_to_dc = o * (1.0 - tc * tc)  # (T, B, H)
            coeff = tf.concat(
                [g * i * (1.0 - i), _shift_in(c0, cs) * f * (1.0 - f), i * (1.0 - g * g),
                 tc * o * (1.0 - o)],
                axis=2,
            )  # (T, B, 4H)
            u_t = tf.transpose(u)  # (4H, H), transposed once outside the loop

            def back_step(slices, carry):
                d_out_t, dh_to_dc_t, coeff_t, f_t = slices
                dh_rec, dc_next = carry
                dh = d_out_t + dh_rec
                dc = dc_next + dh * dh_to_dc_t
                dz = tf.concat([dc, dc, dc, dh], axis=1) * coeff_t  # (B, 4H)
                return (tf.matmul(dz, u_t), dc * f_t), [dz]

            (dh0, dc0), (dz,) = _time_loop(
                back_step, [d_out, dh_to_dc, coeff, f],
                (_or_zeros(d_h_last, h0), _or_zeros(d_c_last, c0)), 1, True, unroll,
            )
            dx, dw, du = _matmul_grads(x_tm, _shift_in(h0, hs), dz, dz, w)
            db = tf.reduce_sum(_flat(dz), axis=0)
            return dx, dw, du, db, dh0, dc0

        return (outputs, h_last, c_last), grad

    return lstm


def _gru(unroll):
    """Builds the GRU (reset_after) sequence function (x, W, U, b, h0) -> (outputs, hT)."""

    @tf.custom_gradient
    def gru(x, w, u, b, h0):
        units = u.shape[0]
        x_tm = _time_major(x)
        xw = _project(x_tm, w, b[0])  # (T, B, 3H), input bias included
        b_rec = b[1]  # (3H,) recurrent bias, added to h·U before the reset gate applies

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

        (h_last,), (zr, hh, inner_h, hs) = _time_loop(step, [xw], (h0,), 4, False, unroll)
        outputs = _time_major(hs)

        def grad(d_outputs, d_h_last):
            d_out = _time_major(_or_zeros(d_outputs, outputs))
            z, r = zr[..., :units], zr[..., units:]
            h_prev = _shift_in(h0, hs)
            # With dh the total gradient of h_t, every pre-activation gradient is dh times a
            # coefficient known from the forward pass (computed here for all steps at once):
            # dz = dh (h_{t-1} - hh) z (1 - z); d(pre hh) = dh (1 - z)(1 - hh²);
            # dr = d(pre hh) inner_h r (1 - r); d(inner_h) = d(pre hh) r.
            k_z = (h_prev - hh) * z * (1.0 - z)
            k_h = (1.0 - z) * (1.0 - hh * hh)
            k_r = k_h * inner_h * r * (1.0 - r)
            coeff_inner = tf.concat([k_z, k_r, k_h * r], axis=2)  # (T, B, 3H)
            u_t = tf.transpose(u)  # (3H, H)

            def back_step(slices, carry):
                d_out_t, coeff_t, z_t = slices
                (dh_rec,) = carry
                dh = d_out_t + dh_rec
                d_inner = tf.concat([dh, dh, dh], axis=1) * coeff_t  # (B, 3H)
                return (tf.matmul(d_inner, u_t) + dh * z_t,), [dh]

            (dh0,), (dh,) = _time_loop(
                back_step, [d_out, coeff_inner, z], (_or_zeros(d_h_last, h0),), 1, True, unroll
            )
            # Pre-activation gradients of all steps at once. The input projection and the
            # recurrent product share the z and r blocks; in the candidate block dh reaches
            # x·W directly but h·U only through the reset gate.
            dz, dr, d_cand = dh * k_z, dh * k_r, dh * k_h
            dgx = tf.concat([dz, dr, d_cand], axis=2)  # (T, B, 3H)
            d_inner = tf.concat([dz, dr, d_cand * r], axis=2)
            dx, dw, du = _matmul_grads(x_tm, h_prev, dgx, d_inner, w)
            db = tf.stack([tf.reduce_sum(_flat(dgx), axis=0),
                           tf.reduce_sum(_flat(d_inner), axis=0)])
            return dx, dw, du, db, dh0

        return (outputs, h_last), grad

    return gru


def _simple_rnn(unroll):
    """Builds the SimpleRNN sequence function (x, W, U, b, h0) -> (outputs, hT)."""

    @tf.custom_gradient
    def simple_rnn(x, w, u, b, h0):
        x_tm = _time_major(x)
        xw = _project(x_tm, w, b)  # (T, B, H)

        def step(slices, carry):
            (xw_t,) = slices
            (h,) = carry
            h = tf.tanh(xw_t + tf.matmul(h, u))
            return (h,), [h]

        (h_last,), (hs,) = _time_loop(step, [xw], (h0,), 1, False, unroll)
        outputs = _time_major(hs)

        def grad(d_outputs, d_h_last):
            d_out = _time_major(_or_zeros(d_outputs, outputs))
            dtanh = 1.0 - hs * hs  # (T, B, H)
            u_t = tf.transpose(u)

            def back_step(slices, carry):
                d_out_t, dtanh_t = slices
                (dh_rec,) = carry
                da = (d_out_t + dh_rec) * dtanh_t  # (B, H) pre-activation gradient
                return (tf.matmul(da, u_t),), [da]

            (dh0,), (da,) = _time_loop(
                back_step, [d_out, dtanh], (_or_zeros(d_h_last, h0),), 1, True, unroll
            )
            dx, dw, du = _matmul_grads(x_tm, _shift_in(h0, hs), da, da, w)
            db = tf.reduce_sum(_flat(da), axis=0)
            return dx, dw, du, db, dh0

        return (outputs, h_last), grad

    return simple_rnn
