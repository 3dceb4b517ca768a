"""The probes' logistic regression (charlm.inspect.logistic) against a hand-worked optimum, plain
gradient descent, and what an L2 penalty must do."""

from __future__ import annotations

import numpy as np

from charlm.inspect.logistic import fit


def test_two_points_reach_the_hand_worked_optimum():
    # x = +1 (label 1) and x = -1 (label 0) standardise to themselves; by symmetry b = 0, and
    # the objective log(1 + exp(-w)) + l2/2 w² is stationary where l2 w (1 + exp(w)) = 1.
    l2 = 0.1
    low, high = 0.0, 50.0
    for _ in range(200):  # bisection on the increasing function l2 w (1 + e^w) - 1
        mid = (low + high) / 2
        low, high = (mid, high) if l2 * mid * (1 + np.exp(mid)) < 1 else (low, mid)
    probe = fit([[1.0], [-1.0]], [1, 0], l2)
    assert abs(probe.bias) < 1e-9
    np.testing.assert_allclose(probe.weights, [low], rtol=1e-8)
    np.testing.assert_allclose(probe.probabilities([[1.0], [-1.0]]), [1 / (1 + np.exp(-low)), 1 / (1 + np.exp(low))])


def overlapping(seed=0, n=300, h=5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, h)) * [1, 2, 0.5, 3, 1] + np.outer(2 * y - 1, [0.8, -0.5, 0.3, 0.0, 0.2]) + [0, 1, -2, 0, 5]
    return x, y


def gradient_descent(x, y, l2, steps=20000, rate=0.5):
    """The objective of charlm.inspect.logistic minimised by plain gradient descent."""
    z = (x - x.mean(0)) / x.std(0)
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        w -= rate * (z.T @ (p - y) / len(y) + l2 * w)
        b -= rate * np.mean(p - y)
    return w, b


def test_newton_agrees_with_gradient_descent_and_predicts_by_the_sign():
    x, y = overlapping()
    probe = fit(x, y, 0.05)
    w, b = gradient_descent(x, y, 0.05)
    np.testing.assert_allclose(probe.weights, w, atol=1e-6)
    np.testing.assert_allclose(probe.bias, b, atol=1e-6)
    p = probe.probabilities(x)
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-probe.logits(x))))
    np.testing.assert_array_equal(probe.predict(x), (p > 0.5).astype(int))
    assert np.mean(probe.predict(x) == y) > 0.7  # the classes overlap, but not much


def test_a_larger_penalty_shrinks_the_weights_towards_the_base_rate():
    x, y = overlapping(seed=1)
    norms = [np.linalg.norm(fit(x, y, l2).weights) for l2 in (0.001, 0.01, 0.1, 1.0)]
    assert norms == sorted(norms, reverse=True)
    huge = fit(x, y, 1e6)
    assert np.linalg.norm(huge.weights) < 1e-5
    rate = y.mean()
    np.testing.assert_allclose(huge.bias, np.log(rate / (1 - rate)), atol=1e-5)  # the bias is not penalised


def test_separable_data_stay_finite_under_the_penalty_and_are_separated():
    x = np.array([[0.0, 1], [1, 1], [2, 0], [3, 0]])
    probe = fit(x, [0, 0, 1, 1], 0.01)
    assert np.all(np.isfinite(probe.weights)) and probe.iterations < 100
    np.testing.assert_array_equal(probe.predict(x), [0, 0, 1, 1])


def test_a_constant_feature_is_harmless_and_gets_no_weight():
    x, y = overlapping(seed=2)
    x[:, 2] = 7.0
    probe = fit(x, y, 0.01)
    assert probe.scale[2] == 1.0 and abs(probe.weights[2]) < 1e-12


def test_direction_is_the_unit_gradient_of_the_log_odds():
    x, y = overlapping(seed=3)
    probe = fit(x, y, 0.01)
    point, eps = x[0], 1e-6
    gradient = np.array([(probe.logits([point + eps * e]) - probe.logits([point - eps * e]))[0] / (2 * eps)
                         for e in np.eye(len(point))])
    np.testing.assert_allclose(probe.direction(), gradient / np.linalg.norm(gradient), atol=1e-6)
