"""Learning-rate schedules: the rate of each training step, from how far the run is through its budget.

A run's budget is its steps (--epochs, --max-steps) and, with --max-minutes, its minutes;
whichever runs out first ends the run, so :func:`run_progress` is the larger of the two
fractions used, and every schedule is a function of that fraction alone. A run cut by the
clock therefore still warms up, decays and ends at a rate near 0.

A run with no budget (:attr:`charlm.config.TrainConfig.open_ended`) has no fraction: it trains
at ``lr`` until validation stops improving, then wsd cools the rate down over steps decided then
(:func:`cooldown_steps`, :func:`cooldown_lr`).
"""

from __future__ import annotations

import math

from charlm.config import TrainConfig


def run_progress(config: TrainConfig, step: int, total_steps: int, elapsed_seconds: float) -> float:
    """The fraction of its budget a run has used after ``step`` of ``total_steps`` steps and
    ``elapsed_seconds`` of its --max-minutes (if any), in [0, 1]."""
    fraction = step / total_steps
    if config.max_minutes:
        fraction = max(fraction, elapsed_seconds / (60.0 * config.max_minutes))
    return min(fraction, 1.0)


def scheduled_lr(config: TrainConfig, progress: float) -> float:
    """The learning rate at ``progress`` (:func:`run_progress`) through the run.

    - constant: ``lr`` throughout.
    - every other schedule first rises linearly from 0 to ``lr`` over the first ``warmup``
      of the run (Adam's first steps, with few gradients behind its scale estimates, are the
      likeliest to throw the weights far).
    - wsd (warmup-stable-decay): ``lr`` until the last ``cooldown`` of the run, then down to 0
      as ``1 - sqrt(t)``, t going from 0 to 1 over the cooldown: Hägele et al. 2024 found this
      shape better than a linear cooldown, and a constant rate with a short cooldown as good
      as cosine without the schedule having to know the run's length in advance.
    - cosine, linear: ``lr`` until ``lr_decay_start`` of the run (or the warmup's end, if
      later), then towards 0 at its end (cosine: slowly, then faster, then slowly).

    A decay settles the weights at the end of a run, where a constant rate leaves them
    wherever the last noisy steps put them."""
    if config.lr_schedule == "constant":
        return config.lr
    if progress < config.warmup:
        return config.lr * progress / config.warmup
    if config.lr_schedule == "wsd":
        cooldown = config.wsd_cooldown
        if cooldown == 0.0 or progress <= 1.0 - cooldown:
            return config.lr
        done = 1.0 - (1.0 - progress) / cooldown  # of the cooldown, from what is left of it: exactly 1 at the end
        return config.lr * (1.0 - math.sqrt(max(done, 0.0)))
    begin = max(config.lr_decay_start, config.warmup)
    fraction = min(max(progress - begin, 0.0) / (1.0 - begin), 1.0)
    if config.lr_schedule == "linear":
        return config.lr * (1.0 - fraction)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * fraction))


def cooldown_steps(config: TrainConfig, step: int) -> int:
    """The length of the cooldown that an open-ended wsd run starts after ``step`` steps, when
    validation has stopped improving: cooldown/(1 - cooldown) of the steps so far, so that it is
    the last ``cooldown`` of the whole run (at least one step; 0 where --cooldown is 0)."""
    fraction = config.wsd_cooldown
    return max(1, round(step * fraction / (1.0 - fraction))) if fraction else 0


def cooldown_lr(config: TrainConfig, step: int, start: int, end: int) -> float:
    """The rate of the step after ``step`` in a cooldown from step ``start`` to step ``end``:
    ``lr`` * (1 - sqrt(t)), t = (step - start) / (end - start), wsd's shape over known steps."""
    done = min(max((step - start) / (end - start), 0.0), 1.0)
    return config.lr * (1.0 - math.sqrt(done))
