"""When a training run ends, and how it stops.

A run ends when its steps are done, when its --max-minutes budget is spent (the
elapsed time of its training loop, validation and checkpoints included, summed
over resumes and recorded in each checkpoint), or, with --patience N, after N
validations without a better validation loss. The learning rate follows the
larger of the step and time fractions (:mod:`charlm.training.schedule`).

A run with none of --epochs, --max-steps and --max-minutes is open-ended: it
trains until validation stops improving (--patience, by default 3 validations);
then, with the wsd schedule, it keeps its current weights (the best are in
model.keras already) and cools the rate down over cooldown/(1 - cooldown) times
the steps so far, validates and stops. The cooldown's first and last step are
in the checkpoints' position, so a resumed run continues the same cooldown.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading

from charlm.errors import CharlmError


class TrainingInterrupted(CharlmError):
    """SIGINT or SIGTERM stopped the run at a step boundary, after writing a checkpoint.
    ``exit_code`` is the shell's convention, 128 + the signal number (130, 143)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def check_left_to_train(spec, position: dict, steps_per_epoch: int):
    """Refuse to resume a run that has nothing left to train: its steps done, its minutes
    spent, its patience used up, or its cooldown over."""
    config, where = spec.train, spec.out_dir
    done, total = position["step"], total_steps(steps_per_epoch, config)
    start, end = position.get("cooldown_start"), position.get("cooldown_end")
    if end is not None and done >= end:
        raise CharlmError(f"the run in {where} has finished: validation stopped improving at step {start} and its "
                          f"rate was cooled down to 0 by step {end}; to train its model further, start a run "
                          f"from it: charlm train --init-from {where / 'model.keras'}")
    if done >= total:
        raise CharlmError(f"the run in {where} has already trained {done} of its {total} steps; "
                          "raise --epochs or --max-steps to train it further")
    elapsed = position.get("elapsed_seconds", position.get("train_seconds", 0.0))
    if config.max_minutes and elapsed >= 60 * config.max_minutes:
        raise CharlmError(f"the run in {where} has already trained {elapsed / 60:.2f} minutes of its "
                          f"--max-minutes {config.max_minutes:g} (the budget of the whole run); "
                          "raise --max-minutes to train it further")
    waited = validations_without_improvement(position["history"])
    if config.patience and waited >= config.patience and end is None:
        raise CharlmError(f"the run in {where} stopped early: its validation loss has not improved for {waited} "
                          f"validations (--patience {config.patience}); raise --patience to train it further")


def validations_without_improvement(history: list) -> int:
    """How many validations (history rows) have come since the best validation loss."""
    if not history:
        return 0
    best = min(range(len(history)), key=lambda i: history[i]["val_loss"])  # the first of equals: it was saved
    return len(history) - 1 - best


class StopSignals(contextlib.AbstractContextManager):
    """While training: SIGINT and SIGTERM set ``signal`` (the loop stops at the next step
    boundary); a second one stops at once (KeyboardInterrupt). The previous handlers are
    restored on exit. Outside the main thread (where Python allows no handlers) a no-op."""

    signal = None

    def __enter__(self):
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def total_steps(steps_per_epoch: int, config, cooldown_end: int | None = None) -> int | float:
    """The step a run ends at by its --epochs, --max-steps and cooldown; ``math.inf`` where
    none of them bounds it (the clock or validation then ends it)."""
    bounds = [steps_per_epoch * config.epochs if config.epochs else math.inf, config.max_steps, cooldown_end]
    return min(bound for bound in bounds if bound is not None)
