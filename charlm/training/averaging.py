"""Weight averaging (``--ema DECAY``): an exponential moving average of the trainable weights.

After optimizer step k (k = 1, 2, ...) each average a moves towards its weight w::

    a_k = d_k * a_(k-1) + (1 - d_k) * w_k,    d_k = min(DECAY, k / (k + 9)),    a_0 = w_0

The warm start k / (k + 9) is TensorFlow's ``ExponentialMovingAverage(num_updates=k - 1)``,
(1 + n) / (10 + n): with a fixed decay of 0.999 the initial weights would still hold
0.999^1000 = 37% of the average after 1,000 steps, and early validations would judge a blend
of the trained and the random model. With the warm start the initial weights' share after k
steps is 9! k! / (k + 9)!, below 1e-5 from step 11, and the average spans about the last
tenth of the steps taken until k / (k + 9) reaches DECAY (k = 8,991 for 0.999); from there
on it is the plain average of about 1 / (1 - DECAY) steps.

The averages live in variables of their own, beside the weights and mirrored like them
under a tf.distribute strategy, and the compiled training step updates them right after
the optimizer's update. Validation, the choice of the best model and the saved model
file use them: :meth:`WeightAverage.swapped_in` puts them into the model's variables and
afterwards restores the raw weights bit for bit, so training continues from where it was.
"""

from __future__ import annotations

import contextlib

from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

WARM_START = 9.0  # d_k = k / (k + WARM_START) until it reaches DECAY


def ema_decay(decay: float, step: int) -> float:
    """d_k, the decay of the update after step ``step`` (k >= 1)."""
    return min(decay, step / (step + WARM_START))


class WeightAverage:
    """Averages of ``variables`` (a model's trainable variables) with ``decay``, created
    under ``strategy`` (each replica holds a copy) from the variables' current values."""

    def __init__(self, variables, decay: float, strategy):
        self.variables = list(variables)
        self.decay = decay
        with strategy.scope():
            # ONLY_FIRST_REPLICA: every replica computes the same update from the same weights;
            # the first replica's is written to all copies.
            self.averages = [
                tf.Variable(v.numpy(), trainable=False, name="average",
                            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                for v in self.variables
            ]

    def update(self, step):
        """One averaging step after optimizer step ``step`` (a scalar tensor, k >= 1); in the
        compiled training step, in replica context under a strategy."""
        k = tf.cast(step, tf.float32)
        keep = tf.minimum(tf.constant(self.decay, tf.float32), k / (k + WARM_START))
        for average, variable in zip(self.averages, self.variables):
            # a - (1 - d)(a - w) = d a + (1 - d) w, in the form that moves a by a small step.
            average.assign_sub((1.0 - keep) * (average - tf.cast(variable.value, average.dtype)))

    def values(self) -> list:
        """The averages as numpy arrays, in the order of the variables."""
        return [a.numpy() for a in self.averages]

    @contextlib.contextmanager
    def swapped_in(self):
        """The averages in the model's variables for the duration; the raw weights back after,
        exactly (a copy of their values, not a recomputation)."""
        raw = [v.numpy() for v in self.variables]
        try:
            for variable, average in zip(self.variables, self.values()):
                variable.assign(average)
            yield
        finally:
            for variable, value in zip(self.variables, raw):
                variable.assign(value)
