"""The compiled training and evaluation steps of truncated BPTT.

This is a small custom loop rather than ``Model.fit``: the recurrent states are
explicit tensors that the caller carries from one window to the next, gradients
are clipped here (after any cross-replica reduction, not per replica as Keras'
optimizer ``clipnorm`` would), and each step returns the loss and the gradient
norm before clipping.
"""

from __future__ import annotations

import math

from charlm.backend import import_keras
from charlm.config import TrainConfig

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which loads it quietly)

_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}


def make_optimizer(config: TrainConfig):
    """The optimizer, without Keras-side clipping: :class:`Trainer` clips itself."""
    return _OPTIMIZERS[config.optimizer](learning_rate=config.lr)


def clip_gradients(grads, clipnorm, mode: str):
    """Clip by norm. ``global``: scale all gradients together so that their joint
    L2 norm is at most ``clipnorm`` (PyTorch's ``clip_grad_norm_``; Keras'
    ``global_clipnorm``). ``per-tensor``: clip each variable's gradient on its own
    (Keras' ``clipnorm``). Returns (clipped gradients, global norm before clipping)."""
    norm = tf.linalg.global_norm(grads)
    if clipnorm is None:
        return grads, norm
    if mode == "global":
        clipped, _ = tf.clip_by_global_norm(grads, clipnorm, use_norm=norm)
        return clipped, norm
    return [tf.clip_by_norm(g, clipnorm) for g in grads], norm


def token_loss(targets, logits):
    """Cross-entropy per token in nats, (B, T), computed in float32."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))


class Trainer:
    """Owns the optimizer and the compiled steps for one model.

    ``train_step(x, y, states) -> (loss, grad_norm, new_states)``: one window,
    x and y (B, T) int32, states a tuple of (B, H) tensors; the returned states
    are the input of the next window (gradients never flow between windows).

    ``eval_step(x, y, states) -> (loss_sum, new_states)``: summed loss in nats.
    """

    def __init__(self, model, config: TrainConfig):
        self.model = model
        self.config = config
        self.optimizer = make_optimizer(config)
        self.optimizer.build(model.trainable_variables)
        self.train_step = tf.function(self._train_step)
        self.eval_step = tf.function(self._eval_step)

    def _train_step(self, x, y, states):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits, *new_states = self.model([x, *states], training=True)
            loss = tf.reduce_mean(token_loss(y, logits))
        grads = tape.gradient(loss, variables)
        grads, norm = clip_gradients(grads, self.config.clipnorm, self.config.clip_mode)
        self.optimizer.apply(grads, variables)
        return loss, norm, tuple(tf.stop_gradient(s) for s in new_states)

    def _eval_step(self, x, y, states):
        logits, *new_states = self.model([x, *states], training=False)
        return tf.reduce_sum(token_loss(y, logits)), tuple(new_states)

    def evaluate(self, batches, zero_states) -> float:
        """Mean loss in nats per token over every window of ``batches``, in order,
        starting from ``zero_states`` and carrying the state across windows."""
        states = tuple(zero_states)
        total = 0.0
        for x, y in batches:
            loss_sum, states = self.eval_step(x, y, states)
            total += float(loss_sum)
        return total / (len(batches) * batches.tokens_per_window)


def bits(nats: float) -> float:
    return nats / math.log(2)
