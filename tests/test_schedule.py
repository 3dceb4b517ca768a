"""Learning-rate schedules (charlm.training.schedule): constant, wsd, linear and cosine decay, warmup,
a decay that starts late, the run's progress by steps or by the clock, whichever ends first, and
the cooldown of an open-ended run."""

import math

import pytest

from charlm.config import TrainConfig
from charlm.errors import CharlmError
from charlm.training.schedule import cooldown_lr, cooldown_steps, run_progress, scheduled_lr


def _rates(config, steps=100):
    """The rate of every step of a run of ``steps`` steps with no time budget."""
    return [scheduled_lr(config, run_progress(config, step, steps, 0.0)) for step in range(steps)]


def test_learning_rate_schedules():
    def rates(schedule):
        return _rates(TrainConfig(lr=0.1, lr_schedule=schedule))

    assert rates("constant") == [0.1] * 100
    linear, cosine = rates("linear"), rates("cosine")
    assert linear[0] == cosine[0] == 0.1 and linear[50] == pytest.approx(0.05) == cosine[50]
    assert linear[-1] == pytest.approx(0.001) and 0 < cosine[-1] < 1e-4
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and all(a > b for a, b in zip(linear, linear[1:]))
    assert cosine[25] > linear[25] and cosine[75] < linear[75]  # slow, fast, slow


def test_a_late_decay_start_keeps_the_full_rate_first():
    rates = _rates(TrainConfig(lr=0.1, lr_schedule="linear", lr_decay_start=0.8))
    assert rates[:81] == [0.1] * 81
    assert rates[90] == pytest.approx(0.05) and rates[99] == pytest.approx(0.005)


def test_wsd_warms_up_holds_and_cools_down_as_one_minus_sqrt():
    """--warmup 0.1 --cooldown 0.2 over 100 steps: k/10 * lr for steps k < 10, lr up to step 80,
    then lr * (1 - sqrt((k - 80) / 20)), worked by hand at a few steps."""
    rates = _rates(TrainConfig(lr=0.1, lr_schedule="wsd", warmup=0.1, cooldown=0.2))
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.05) and rates[9] == pytest.approx(0.09)
    assert rates[10:81] == [0.1] * 71
    assert rates[85] == pytest.approx(0.1 * (1 - math.sqrt(0.25)))  # 0.05
    assert rates[96] == pytest.approx(0.1 * (1 - math.sqrt(0.8)))
    assert all(a > b for a, b in zip(rates[80:], rates[81:]))
    assert scheduled_lr(TrainConfig(lr=0.1, lr_schedule="wsd"), 1.0) == 0.0  # at the very end: 0
    # 1-sqrt falls fastest at the start of the cooldown: below the linear cooldown all the way.
    assert all(rates[k] < 0.1 * (1 - (k - 80) / 20) for k in range(81, 100))


def test_wsd_cools_down_over_the_last_fifth_by_default():
    rates = _rates(TrainConfig(lr=0.1, lr_schedule="wsd"))
    assert rates[:81] == [0.1] * 81 and rates[81] < 0.1


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_warmup_comes_before_a_cosine_or_linear_decay(schedule):
    """--warmup 0.2: the rate rises to lr at 20% of the run, then decays over the remaining 80%
    as the schedule does over a whole run."""
    warm = _rates(TrainConfig(lr=0.1, lr_schedule=schedule, warmup=0.2))
    plain = TrainConfig(lr=0.1, lr_schedule=schedule)
    assert warm[:20] == pytest.approx([0.1 * k / 20 for k in range(20)])
    assert warm[20] == 0.1
    assert warm[20:] == pytest.approx([scheduled_lr(plain, (k - 20) / 80) for k in range(20, 100)])
    # With a later decay start the rate holds from the warmup's end to the start.
    late = _rates(TrainConfig(lr=0.1, lr_schedule=schedule, warmup=0.2, lr_decay_start=0.5))
    assert late[:20] == warm[:20] and late[20:51] == [0.1] * 31 and late[99] < 0.01


def test_progress_is_whichever_budget_ends_first():
    timed = TrainConfig(max_minutes=10)
    assert run_progress(TrainConfig(), 25, 100, 1e9) == 0.25  # no time budget: steps alone
    assert run_progress(timed, 25, 100, 60.0) == 0.25  # 1 of 10 minutes, a quarter of the steps
    assert run_progress(timed, 25, 100, 300.0) == 0.5  # half the minutes
    assert run_progress(timed, 25, 100, 900.0) == 1.0  # never past the end


def test_rates_by_the_clock():
    """A 10-minute wsd run of many steps: its rate at a given elapsed time, whatever the step."""
    config = TrainConfig(lr=0.1, lr_schedule="wsd", warmup=0.05, max_minutes=10)

    def rate(seconds):
        return scheduled_lr(config, run_progress(config, 0, 10**6, seconds))

    assert rate(0.0) == 0.0 and rate(15.0) == pytest.approx(0.05)  # half of the 30-second warmup
    assert rate(30.0) == rate(479.0) == 0.1
    assert rate(540.0) == pytest.approx(0.1 * (1 - math.sqrt(0.5)))  # half the 2-minute cooldown
    assert rate(600.0) == 0.0 == rate(700.0)
    cosine = TrainConfig(lr=0.1, lr_schedule="cosine", max_minutes=10)
    assert scheduled_lr(cosine, run_progress(cosine, 0, 10**6, 300.0)) == pytest.approx(0.05)


def test_an_open_ended_cooldown_is_the_last_fifth_of_the_whole_run():
    """Begun after S steps, the cooldown takes C/(1 - C) S more steps (rounded, at least one), so
    that it is the last C of the run; the rate falls as lr * (1 - sqrt(t)) over them."""
    assert cooldown_steps(TrainConfig(), 400) == 100 and cooldown_steps(TrainConfig(), 357) == 89  # 89.25
    assert cooldown_steps(TrainConfig(lr_schedule="wsd", cooldown=0.5), 357) == 357
    assert cooldown_steps(TrainConfig(), 1) == 1 and cooldown_steps(TrainConfig(lr_schedule="wsd", cooldown=0.0), 400) == 0
    config = TrainConfig(lr=0.1)
    rates = [cooldown_lr(config, step, 400, 500) for step in range(400, 501)]
    assert rates[0] == 0.1 and rates[25] == pytest.approx(0.05) and rates[64] == pytest.approx(0.02)
    assert rates[100] == 0.0 and all(a > b for a, b in zip(rates, rates[1:]))
    # The same curve as wsd's cooldown over the last fifth of a 500-step run.
    assert rates[:100] == pytest.approx(_rates(TrainConfig(lr=0.1, lr_schedule="wsd"), 500)[400:], abs=1e-12)


@pytest.mark.parametrize("settings,fragment", [
    (dict(lr_schedule="wsd", warmup=1.0), "--warmup"),
    (dict(lr_schedule="wsd", warmup=-0.1), "--warmup"),
    (dict(lr_schedule="wsd", cooldown=1.0), "--cooldown"),
    (dict(lr_schedule="wsd", warmup=0.6, cooldown=0.5), "add up to more than the whole run"),
    (dict(lr_schedule="wsd", warmup=0.9), "--cooldown 0.2"),  # with the default cooldown
    (dict(lr_schedule="constant", warmup=0.1), "--warmup needs a schedule"),
    (dict(lr_schedule="cosine", cooldown=0.1), "--cooldown is the end of --lr-schedule wsd"),
    (dict(lr_schedule="wsd", lr_decay_start=0.5), "--lr-decay-start is for cosine and linear"),
    (dict(lr_schedule="linear", warmup=0.3, lr_decay_start=0.1), "falls inside --warmup"),
    (dict(patience=0), "--patience must be at least 1"),
    (dict(val_every=0), "--val-every must be at least 1"),
])
def test_conflicting_schedule_settings_are_refused(settings, fragment):
    with pytest.raises(CharlmError, match=fragment):
        TrainConfig(**settings)
