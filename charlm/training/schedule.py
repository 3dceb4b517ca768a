"""Learning-rate schedules: the rate of each training step."""

from __future__ import annotations

import math

from charlm.config import TrainConfig


def scheduled_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate of training step ``step + 1`` of ``total_steps``: ``lr`` throughout
    (constant), or ``lr`` for the first ``lr_decay_start`` of the steps and then decaying
    towards 0 at the last step (cosine: slowly, then faster, then slowly; linear). A decay
    settles the weights at the end of a run, where a constant rate leaves them wherever the
    last noisy steps put them; a late start keeps the full rate while the model still learns."""
    if config.lr_schedule == "constant":
        return config.lr
    begin = config.lr_decay_start * total_steps
    fraction = min(max(step - begin, 0.0) / max(total_steps - begin, 1), 1.0)
    if config.lr_schedule == "linear":
        return config.lr * (1.0 - fraction)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * fraction))
