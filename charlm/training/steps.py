"""The compiled training and evaluation steps of truncated BPTT, on one device or many.

This is a small custom loop rather than ``Model.fit``: the recurrent states are
explicit tensors that the caller carries from one window to the next (one block
of streams per replica), gradients are clipped here after the cross-replica
sum (see :mod:`charlm.training.distribute`), and each step returns the loss and the
gradient norm before clipping. ``Model.fit`` can do none of these under
MultiWorkerMirroredStrategy in Keras 3.15.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from charlm.config import ModelConfig, TrainConfig
from charlm.nn.forward import dropout_masks, make_forward
from charlm.nn.model import zero_states
from charlm.runtime import choose_kernels, import_keras
from charlm.training.averaging import WeightAverage
from charlm.training.windows import replica_windows, windows

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

_OPTIMIZERS = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
SUM = tf.distribute.ReduceOp.SUM


def make_optimizer(config: TrainConfig, model=None):
    """The optimizer, without Keras-side clipping: :class:`CompiledSteps` clips itself.

    ``adamw`` decays every weight matrix (embedding, kernels, recurrent kernels, the tied
    model's projection) by ``lr * weight_decay`` per step, decoupled from the gradient
    (Loshchilov & Hutter 2019; PyTorch's AdamW), and leaves ``model``'s biases alone
    (:func:`undecayed`)."""
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=config.lr, weight_decay=config.weight_decay)
        if model is not None:
            optimizer.exclude_from_weight_decay(var_list=undecayed(model))
        return optimizer
    return _OPTIMIZERS[config.optimizer](learning_rate=config.lr)


def undecayed(model) -> list:
    """The variables weight decay leaves alone: the biases. Decay would pull an LSTM's
    forget-gate bias (initialised to 1) towards 0, and offsets do not make a model more
    complex; nanoGPT and most transformer recipes exclude them too."""
    biases = [v for v in model.trainable_variables if v.name == "bias"]
    if "output_bias" in {layer.name for layer in model.layers}:  # a tied output's bias: a (1, V) kernel
        biases.append(model.get_layer("output_bias").kernel)
    return biases


def clip_factors(grads, clipnorm, mode: str):
    """Per-gradient scale factors that clip by norm, and the global norm before clipping.

    ``global``: one factor for all gradients, so that their joint L2 norm is at
    most ``clipnorm`` (PyTorch's ``clip_grad_norm_``; Keras' ``global_clipnorm``).
    ``per-tensor``: each variable's gradient clipped to ``clipnorm`` on its own
    (Keras' ``clipnorm``).
    """
    squares = [_squared_norm(g) for g in grads]
    norm = tf.sqrt(tf.add_n(squares))
    if clipnorm is None:
        return [1.0] * len(grads), norm
    if mode == "global":
        factor = clipnorm / tf.maximum(norm, clipnorm)
        return [factor] * len(grads), norm
    return [clipnorm / tf.maximum(tf.sqrt(s), clipnorm) for s in squares], norm


def _squared_norm(grad):
    """The squared L2 norm of a gradient as the dense tensor it stands for. An embedding's
    gradient arrives as IndexedSlices with one row per token read, so a row repeats where a token
    does: its rows are summed by index first (``tf.linalg.global_norm`` would square them apart).
    Sorting keeps the shapes static, as XLA needs; the repeated rows sum into the first slots of
    an (N, D) tensor and zeros fill the rest."""
    if not isinstance(grad, tf.IndexedSlices):
        return tf.reduce_sum(tf.square(tf.cast(grad, tf.float32)))
    order = tf.argsort(grad.indices)
    indices = tf.gather(grad.indices, order)  # (N,) sorted
    starts = tf.concat([[0], tf.cast(indices[1:] != indices[:-1], tf.int32)], axis=0)
    slots = tf.cumsum(starts)  # (N,): 0, 0, 1, 2, 2, ...: one slot per distinct index
    rows = tf.math.unsorted_segment_sum(tf.gather(grad.values, order), slots, tf.size(indices))
    return tf.reduce_sum(tf.square(tf.cast(rows, tf.float32)))


def _scale(grad, factor):
    if isinstance(grad, tf.IndexedSlices):  # the embedding's gradient
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor


def token_loss(targets, logits):
    """Cross-entropy per token in nats, (B, T), computed in float32."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))


class CompiledSteps:
    """Owns the optimizer and the compiled steps for one model under one strategy; the run
    (:mod:`charlm.training.run`) decides which steps to take.

    ``train_step(x, y, states) -> (loss, grad_norm, new_states)``: one window;
    x and y are (B, T) int32 (per-replica values under a strategy: see
    :meth:`windows`), states a tuple of (B, H) tensors; the returned states are
    the input of the next window (gradients never flow between windows). The
    loss is the mean over the window's tokens, the norm the global gradient
    norm before clipping.

    ``eval_step(x, y, states) -> (loss_sum, new_states)``: summed loss in nats.

    With ``train_config.ema`` the training step also updates ``average``, a
    :class:`charlm.training.averaging.WeightAverage` of the trainable weights (None without).

    The model must have been built under ``strategy.scope()``. ``charlm_kernels`` and
    ``jit_compile`` (default: :func:`charlm.runtime.choose_kernels`) choose charlm's kernels
    over the Keras layers and XLA for the training step; ``model_config`` None runs any Keras
    model of charlm's inputs and outputs through its own layers.
    """

    def __init__(self, model, model_config: ModelConfig | None, train_config: TrainConfig, strategy=None,
                 charlm_kernels: bool | None = None, jit_compile: bool | None = None):
        self.model = model
        self.model_config = model_config
        self.train_config = train_config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        kernels = choose_kernels(model_config, bool(tf.config.list_logical_devices("GPU")), self.replicas,
                                 charlm_kernels)
        self.forward = make_forward(model, model_config, kernels.charlm)
        self.eval_forward = make_forward(model, model_config, kernels.charlm, differentiable=False)
        self.jit_compile = kernels.xla if jit_compile is None else jit_compile
        # The masks of dropout, weight drop and embedding dropout are drawn outside the compiled
        # step: XLA's CPU random generator is slow (BENCHMARKS.md, dropout).
        masks_outside = kernels.charlm and model_config is not None and model_config.draws_masks
        # float16 activations need loss scaling so that small gradients do not
        # underflow; bfloat16 has float32's range and does not.
        self.loss_scaled = keras.mixed_precision.global_policy().name == "mixed_float16"
        with self.strategy.scope():
            self.optimizer = make_optimizer(train_config, model)
            if self.loss_scaled:
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            self.optimizer.build(model.trainable_variables)
        self.average = WeightAverage(model.trainable_variables, train_config.ema, self.strategy) \
            if train_config.ema else None
        replica_train = tf.function(self._replica_train, jit_compile=True) if self.jit_compile else self._replica_train
        self._replica_train_fn = self._drawing_masks(replica_train) if masks_outside else replica_train
        self.train_step = tf.function(self._train_step)
        self._multi_step = {}
        self._replica_eval_fn = tf.function(self._replica_eval, jit_compile=True) if kernels.xla else self._replica_eval
        self.eval_step = tf.function(self._eval_step)

    # -- steps ---------------------------------------------------------------

    def _drawing_masks(self, replica_train):
        """``replica_train`` with its window's masks (:func:`charlm.nn.forward.dropout_masks`)
        drawn first, by TensorFlow's own kernels."""
        def replica_train_with_masks(x, y, states):
            return replica_train(x, y, states, dropout_masks(self.model, self.model_config, x))

        return replica_train_with_masks

    def _replica_train(self, x, y, states, masks=None):
        variables = self.model.trainable_variables
        # Every replica holds b = B/R streams; the loss is the mean over all B*T tokens.
        global_tokens = tf.cast(tf.size(y) * self.replicas, tf.float32)
        with tf.GradientTape() as tape:
            logits, new_states = self.forward(x, states, True, masks)
            loss = tf.reduce_sum(token_loss(y, logits)) / global_tokens
            scale = self.optimizer.dynamic_scale if self.loss_scaled else 1.0
            scaled_loss = loss * scale
        grads = tape.gradient(scaled_loss, variables)
        # Clip the global gradient: sum the replicas' shares first. The optimizer
        # sums the shares again when it applies them, so each replica passes its
        # own share scaled by the common factors, which sum to the clipped gradient.
        total = tf.distribute.get_replica_context().all_reduce(SUM, grads) if self.replicas > 1 else grads
        if self.loss_scaled:  # clip what the gradient is, not its scaled copy; the optimizer unscales
            total = [_scale(g, 1.0 / scale) for g in total]
        factors, norm = clip_factors(total, self.train_config.clipnorm, self.train_config.clip_mode)
        self.optimizer.apply([_scale(g, f) for g, f in zip(grads, factors)], variables)
        if self.average is not None:
            self.average.update(self.optimizer.iterations)  # after the update: k steps taken
        return loss, norm, tuple(tf.stop_gradient(s) for s in new_states)

    def _train_step(self, x, y, states):
        loss, norm, states = self.strategy.run(self._replica_train_fn, args=(x, y, states))
        loss = self.strategy.reduce(SUM, loss, axis=None)
        norm = self.strategy.experimental_local_results(norm)[0]  # the same on every replica
        return loss, norm, states

    def train_steps(self, iterator, states, steps: int):
        """``steps`` training steps in one compiled call (``--steps-per-execution``):
        fewer host round trips, which is what a TPU needs. ``iterator`` yields
        windows as :meth:`windows` makes them. Returns (losses (steps,), grad norms
        (steps,), states)."""
        if steps not in self._multi_step:
            self._multi_step[steps] = tf.function(lambda it, st: self._steps(it, st, steps))
        return self._multi_step[steps](iterator, states)

    def _steps(self, iterator, states, steps):
        losses, norms = [], []
        for _ in range(steps):  # unrolled: states stay per-replica values between steps
            x, y = next(iterator)
            loss, norm, states = self._train_step(x, y, states)
            losses.append(loss)
            norms.append(norm)
        return tf.stack(losses), tf.stack(norms), states

    def _replica_eval(self, x, y, states):
        logits, new_states = self.eval_forward(x, states, False)
        return tf.reduce_sum(token_loss(y, logits)), tuple(new_states)

    def _eval_step(self, x, y, states):
        loss_sum, states = self.strategy.run(self._replica_eval_fn, args=(x, y, states))
        return self.strategy.reduce(SUM, loss_sum, axis=None), states

    def averaged_weights(self):
        """A context in which the model holds the weight averages (with ``--ema``; otherwise its
        own weights): for validation and saving; the raw weights come back after it."""
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()

    @property
    def learning_rate(self) -> float:
        """The optimizer's current learning rate (a mirrored variable under a strategy)."""
        return float(self.optimizer.learning_rate.numpy())

    # -- data and states -----------------------------------------------------

    def windows(self, batches, start: int = 0, stop: int | None = None):
        """Windows ``start, ..., stop-1`` of ``batches`` (default: to the last), as
        ``train_step`` takes them."""
        if self.replicas == 1:
            return windows(batches, start, stop)
        return replica_windows(self.strategy, batches, start, stop)

    def zero_states(self, batch_size: int):
        """Fresh states for ``batch_size`` streams in all, split across replicas."""
        rows = batch_size // self.replicas
        if self.replicas == 1:
            return tuple(zero_states(self.model_config, rows))
        return self.strategy.experimental_distribute_values_from_function(
            lambda context: tuple(zero_states(self.model_config, rows))
        )

    def states_to_numpy(self, states):
        """The states of all B streams as numpy arrays, (B, H) each, in stream order.

        Under a strategy the replicas' blocks are gathered from every worker (a
        collective: every worker must call this together), so a checkpoint written
        by the chief holds every stream's state.
        """
        if self.replicas == 1:
            return [np.asarray(s) for s in states]
        local = [self.strategy.experimental_local_results(s) for s in states]
        if len(local[0]) == self.replicas:
            # Every replica is on this machine (MirroredStrategy): read the blocks directly. A
            # gather collective here, between training steps, failed in TensorFlow 2.21 with
            # "Collective instance ... expected type 0 ... but got type 2".
            return [np.concatenate([np.asarray(block) for block in blocks]) for blocks in local]
        return [np.asarray(self.strategy.gather(s, axis=0)) for s in states]

    def states_from_numpy(self, arrays):
        """The inverse of :meth:`states_to_numpy`: replica r takes rows r*b..(r+1)*b."""
        if self.replicas == 1:
            return tuple(tf.constant(a) for a in arrays)
        rows = arrays[0].shape[0] // self.replicas

        def block(context):
            r = context.replica_id_in_sync_group
            return tuple(tf.constant(a[r * rows : (r + 1) * rows]) for a in arrays)

        return self.strategy.experimental_distribute_values_from_function(block)

    def evaluate(self, batches) -> float:
        """Mean loss in nats per token over every window of ``batches``, in order,
        starting from zero states and carrying the state across windows."""
        states = self.zero_states(batches.batch_size)
        total = 0.0
        for x, y in self.windows(batches):
            loss_sum, states = self.eval_step(x, y, states)
            total += float(loss_sum)
        return total / (len(batches) * batches.tokens_per_window)


def bits(nats: float) -> float:
    return nats / math.log(2)
