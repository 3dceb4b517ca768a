"""L2-regularised logistic regression in NumPy: the diagnostic classifier of ``charlm probe``.

The features are standardised with the training set's mean and standard deviation (a unit that
never varies there keeps scale 1), so one penalty suits h, c and gates alike. The weights minimise

    mean over the n training rows of log(1 + exp(-s_i (w·z_i + b)))  +  (l2 / 2) ||w||²

(s_i = +1 for label 1, -1 for label 0; the bias is not penalised), found by Newton's method with
a backtracking line search: the objective is strictly convex for l2 > 0, and Newton converges in
a few steps on a few hundred features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

L2 = 0.01  # the default penalty (on standardised features)


@dataclass(frozen=True)
class Probe:
    """A fitted classifier: label 1 where ``logits(x) > 0``."""

    mean: np.ndarray  # (H,) the training features' mean
    scale: np.ndarray  # (H,) their standard deviation (1 where it is 0)
    weights: np.ndarray  # (H,) on standardised features
    bias: float
    iterations: int

    def logits(self, x) -> np.ndarray:
        """(n,) log-odds of label 1 for the rows of ``x`` (n, H)."""
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def probabilities(self, x) -> np.ndarray:
        """(n,) probability of label 1."""
        return _sigmoid(self.logits(x))

    def predict(self, x) -> np.ndarray:
        """(n,) labels 0 or 1."""
        return (self.logits(x) > 0).astype(np.int64)

    def direction(self) -> np.ndarray:
        """(H,) the unit vector, in the raw features' space, along which the log-odds of label 1
        grow fastest: the gradient of ``logits`` (weights / scale), normalised."""
        gradient = self.weights / self.scale
        norm = np.linalg.norm(gradient)
        return gradient / norm if norm > 0 else gradient


def fit(x, y, l2: float = L2, max_iterations: int = 100, tolerance: float = 1e-9) -> Probe:
    """The :class:`Probe` that minimises the objective of the module docstring on rows ``x``
    (n, H) with labels ``y`` (n,) in {0, 1}. ``l2`` must be positive unless the classes overlap
    (separable data has no minimum without it)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])  # (n, H+1): the bias as a last column
    n, k = z.shape
    penalty = np.full(k, l2)
    penalty[-1] = 0.0
    theta = np.zeros(k)
    loss = _objective(z, y, theta, penalty)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        p = _sigmoid(z @ theta)
        gradient = z.T @ (p - y) / n + penalty * theta
        if np.max(np.abs(gradient)) < tolerance:
            break
        root = z * np.sqrt(p * (1 - p))[:, None]
        hessian = root.T @ root / n + np.diag(penalty)  # a product of an array with itself: half the work
        hessian[np.diag_indices(k)] += 1e-12  # a constant column with l2 = 0 stays solvable
        step = np.linalg.solve(hessian, gradient)
        rate = 1.0
        while True:  # backtracking: Newton's full step can overshoot far from the minimum
            candidate = theta - rate * step
            new_loss = _objective(z, y, candidate, penalty)
            if new_loss <= loss - 1e-4 * rate * gradient @ step or rate < 1e-10:
                break
            rate /= 2
        theta, loss = candidate, new_loss
    return Probe(mean, scale, theta[:-1], float(theta[-1]), iterations)


def _objective(z, y, theta, penalty) -> float:
    margin = z @ theta
    # log(1 + exp(m)) - y m = the log loss of label y at log-odds m, computed without overflow.
    return float(np.mean(np.logaddexp(0.0, margin) - y * margin) + 0.5 * np.sum(penalty * theta * theta))


def _sigmoid(m):
    return 0.5 * (1.0 + np.tanh(0.5 * m))  # = 1 / (1 + exp(-m)), without overflow
