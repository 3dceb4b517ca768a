"""Checkpoints: everything a training run needs to continue exactly where it stopped.

A run keeps its checkpoints in ``RUN_DIR/checkpoints/``, one directory each::

    ckpt-000007-step-140/
        state.json              the scalars: position (step, epoch, window cursor), running
                                epoch loss, tokens seen, best validation loss, history rows,
                                an open-ended run's cooldown (its first and last step),
                                the tokenizer, and Python's and NumPy's random states
        tensors.index           a tf.train.Checkpoint of the tensors: every model variable
        tensors.data-00000-...  (weights and the dropout layers' seed-generator states, i.e.
                                the random state training draws from), every optimizer
                                variable (iteration count, learning rate, slots), the
                                recurrent states carried by the B streams and, with --ema,
                                the weights' moving averages

Writes are atomic. A checkpoint is written into ``.partial-<name>-<pid>/``,
every file and the directory are fsynced, and the directory is renamed to its
final name, which is the commit point: a ``ckpt-*`` directory is always
complete. A process killed at any moment (SIGKILL in the middle of a save
included) leaves at most a ``.partial-*`` directory, which is ignored and
removed by the next save or resume. Old checkpoints beyond ``keep`` are first
renamed to ``.trash-*`` and then deleted, for the same reason. Names carry a
sequence number that only grows, so the newest checkpoint is the highest number
even when two are taken at the same step (say, before and after validation).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError
from charlm.fileio import flush_to_disk
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
TENSORS = "tensors"
FORMAT = "charlm-checkpoint"
FORMAT_VERSION = 2  # 2: the position holds elapsed_seconds, which a charlm reading version 1 cannot take
_NAME = re.compile(r"^ckpt-(\d+)-step-(\d+)$")




@dataclass
class Position:
    """Where a run is: ``step`` optimizer steps done in all; within ``epoch``
    (1-based), ``cursor`` windows already trained. Plus what the epoch and run have
    accumulated so far, so that the history rows of a resumed run match. ``train_seconds``:
    time in training steps (for tokens/s); ``elapsed_seconds``: the run's wall-clock time in
    its training loop, validation and checkpoints included, summed over resumes: the clock
    that --max-minutes and the schedules follow. ``cooldown_start``, ``cooldown_end``: an
    open-ended run's cooldown, begun when validation stopped improving (None before)."""

    step: int = 0
    epoch: int = 1
    cursor: int = 0
    epoch_loss_sum: float = 0.0
    tokens_seen: int = 0
    train_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    best_val_loss: float = math.inf
    history: list = field(default_factory=list)
    cooldown_start: int | None = None
    cooldown_end: int | None = None

    def to_json(self) -> dict:
        values = asdict(self)
        values["best_val_loss"] = None if math.isinf(self.best_val_loss) else self.best_val_loss
        return values

    @classmethod
    def from_json(cls, values: dict) -> Position:
        values = dict(values)
        if values.get("best_val_loss") is None:
            values["best_val_loss"] = math.inf
        # Checkpoints older than the run's clock: their time in training steps is the nearest record.
        values.setdefault("elapsed_seconds", values.get("train_seconds", 0.0))
        return cls(**values)


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir) -> list[Path]:
    """The complete checkpoints of a run, oldest first (partial and trashed ones excluded)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def read_state(path) -> dict:
    """The ``state.json`` of a checkpoint directory, checked."""
    try:
        state = json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CharlmError(f"checkpoint {path} is unreadable ({error}); delete it to fall back to an older one") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CharlmError(f"{path} is not a charlm checkpoint")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CharlmError(f"checkpoint {path} was written by a newer charlm; upgrade charlm to resume it")
    return state


def read_arrays(path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint directory by its checkpoint key (for comparing runs)."""
    reader = tf.train.load_checkpoint(str(Path(path) / TENSORS))
    return {
        key: reader.get_tensor(key)
        for key in sorted(reader.get_variable_to_shape_map())
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


class Checkpointer:
    """Saves and restores one run's training state.

    Args:
        run_dir: the run directory (checkpoints go to ``run_dir/checkpoints``).
        model: the Keras model being trained.
        optimizer: its Keras optimizer (already built, so its slots exist).
        state_shapes: the carried recurrent states of all local streams, as a list of
            (B, H) arrays (their values do not matter, only their shapes and dtypes).
        keep: how many checkpoints to keep.
        averages: with --ema, the variables holding the weights' moving averages
            (:mod:`charlm.training.averaging`), saved and restored beside the weights.
    """

    def __init__(self, run_dir, model, optimizer, state_shapes, keep: int, averages=()):
        self.folder = checkpoint_dir(run_dir)
        self.keep = keep
        # Variables that hold the carried states at save time and receive them at restore.
        self._states = [tf.Variable(tf.zeros_like(s), trainable=False) for s in state_shapes]
        # Lists, not the Keras objects themselves: tf.train.Checkpoint does not find a Keras 3
        # model's variables by attribute tracking, and variable paths carry process-global
        # name counters (seed_generator_3); the order of model.variables is fixed by the model.
        self._tensors = tf.train.Checkpoint(
            model=list(model.variables), optimizer=list(optimizer.variables), states=self._states,
            **({"averages": list(averages)} if averages else {}),
        )

    def save(self, position: Position, states, record: dict) -> Path:
        """Write a checkpoint of ``position``, the carried ``states`` ((B, H) arrays) and the current model
        and optimizer; ``record`` (settings, tokenizer) goes into ``state.json``. Returns
        the new checkpoint's directory. Older checkpoints beyond ``keep`` are removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = list_checkpoints(self.folder.parent)
        number = int(_NAME.match(existing[-1].name).group(1)) + 1 if existing else 1
        name = f"ckpt-{number:06d}-step-{position.step}"
        partial = self.folder / f".partial-{name}-{os.getpid()}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
        for variable, value in zip(self._states, states):
            variable.assign(value)
        self._tensors.write(str(partial / TENSORS))
        state = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "position": position.to_json(),
            "rng": _python_rng_state(),
            **record,
        }
        (partial / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        for path in partial.rglob("*"):
            if path.is_file():
                flush_to_disk(path)
        flush_to_disk(partial)
        final = self.folder / name
        os.replace(partial, final)  # the commit point
        flush_to_disk(self.folder)
        for old in list_checkpoints(self.folder.parent)[: -self.keep]:
            _remove(old)
        return final

    def restore(self, path) -> tuple[Position, list, dict]:
        """Load a checkpoint into the model and optimizer; set Python's and NumPy's random
        states. Returns (position, carried states as (B, H) numpy arrays, the whole state.json)."""
        path = Path(path)
        state = read_state(path)
        try:
            self._tensors.read(str(path / TENSORS)).assert_consumed()
        except (AssertionError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CharlmError(f"checkpoint {path} does not fit this model ({first[:200]})") from None
        except Exception as error:  # a damaged data file: TensorFlow raises DataLossError, NotFoundError, ...
            raise CharlmError(
                f"checkpoint {path} is unreadable ({type(error).__name__}); delete it to fall back to an older one"
            ) from None
        position = Position.from_json(state["position"])
        _set_python_rng_state(state["rng"])
        return position, [variable.numpy() for variable in self._states], state


def clean_leftovers(run_dir):
    """Remove what a killed process left behind: ``.partial-*`` and ``.trash-*`` directories."""
    folder = checkpoint_dir(run_dir)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith((".partial-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)


def _remove(path: Path):
    # Rename first (atomic), so a crash during the deletion never leaves a half-deleted ckpt-*.
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _python_rng_state() -> dict:
    # Training draws its randomness from the dropout layers' seed generators (saved with the
    # model variables); these two matter to observers that sample with Python or NumPy.
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def _set_python_rng_state(state: dict):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
