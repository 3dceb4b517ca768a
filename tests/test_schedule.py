"""Learning-rate schedules (charlm.training.schedule): constant, linear and cosine decay, and a
decay that starts late."""

import pytest

from charlm.config import TrainConfig
from charlm.training.schedule import scheduled_lr


def test_learning_rate_schedules():
    def rates(schedule):
        return [scheduled_lr(TrainConfig(lr=0.1, lr_schedule=schedule), step, 100) for step in range(100)]

    assert rates("constant") == [0.1] * 100
    linear, cosine = rates("linear"), rates("cosine")
    assert linear[0] == cosine[0] == 0.1 and linear[50] == pytest.approx(0.05) == cosine[50]
    assert linear[-1] == pytest.approx(0.001) and 0 < cosine[-1] < 1e-4
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and all(a > b for a, b in zip(linear, linear[1:]))
    assert cosine[25] > linear[25] and cosine[75] < linear[75]  # slow, fast, slow


def test_a_late_decay_start_keeps_the_full_rate_first():
    config = TrainConfig(lr=0.1, lr_schedule="linear", lr_decay_start=0.8)
    rates = [scheduled_lr(config, step, 100) for step in range(100)]
    assert rates[:81] == [0.1] * 81
    assert rates[90] == pytest.approx(0.05) and rates[99] == pytest.approx(0.005)
