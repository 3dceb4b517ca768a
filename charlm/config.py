"""Settings as small frozen dataclasses; each checks itself when made.

The command line and :func:`charlm.train` build these from flags or keyword
arguments; they are written to the run directory and into the model file.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from charlm.errors import CharlmError
from charlm.data.tokenizers import KINDS, NORMALIZATIONS

CELLS = ("rnn", "lstm", "gru")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
CLIP_MODES = ("global", "per-tensor")
LR_SCHEDULES = ("constant", "cosine", "linear")


def _positive(name: str, value, flag: str):
    if value is None or value <= 0:
        raise CharlmError(f"{flag} must be a positive number, got {value}")


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes ids: ``kind`` char|byte|word, ``normalization`` None|NFC|NFKC
    (char only), ``max_vocab`` (word only), ``encoding_errors`` strict|replace."""

    kind: str = "char"
    normalization: str | None = None
    max_vocab: int | None = None
    encoding_errors: str = "strict"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise CharlmError(f"--tokenizer must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.normalization not in NORMALIZATIONS:
            raise CharlmError(f"--normalize must be NFC or NFKC, got {self.normalization!r}")
        if self.max_vocab is not None and self.max_vocab < 4:
            raise CharlmError(f"--max-vocab must be at least 4, got {self.max_vocab}")
        if self.encoding_errors not in ("strict", "replace"):
            raise CharlmError(f"--encoding-errors must be strict or replace, got {self.encoding_errors!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Embedding(E) -> ``layers`` x cell(H) -> Dense(vocab) logits."""

    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embedding: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise CharlmError(f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        _positive("layers", self.layers, "--layers")
        _positive("hidden", self.hidden, "--hidden")
        _positive("embedding", self.embedding, "--embedding")
        if not 0.0 <= self.dropout < 1.0:
            raise CharlmError(f"--dropout must be in [0, 1), got {self.dropout}")

    @property
    def states_per_layer(self) -> int:
        """LSTM carries (h, c); GRU and SimpleRNN carry h."""
        return 2 if self.cell == "lstm" else 1


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: B parallel streams cut into windows of T tokens (truncated BPTT)."""

    batch_size: int = 64
    bptt: int = 64
    epochs: int = 3
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-clock budget for this process's training steps
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_schedule: str = "constant"
    lr_decay_start: float = 0.0  # fraction of the run's steps before the decay begins
    clipnorm: float | None = 5.0
    clip_mode: str = "global"
    val_fraction: float = 0.05
    seed: int = 0

    def __post_init__(self):
        _positive("batch_size", self.batch_size, "--batch-size")
        _positive("bptt", self.bptt, "--bptt")
        _positive("epochs", self.epochs, "--epochs")
        if self.max_steps is not None:
            _positive("max_steps", self.max_steps, "--max-steps")
        if self.max_minutes is not None:
            _positive("max_minutes", self.max_minutes, "--max-minutes")
        if self.optimizer not in OPTIMIZERS:
            raise CharlmError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        _positive("lr", self.lr, "--lr")
        if self.lr_schedule not in LR_SCHEDULES:
            raise CharlmError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_decay_start < 1.0:
            raise CharlmError(f"--lr-decay-start must be in [0, 1), got {self.lr_decay_start}")
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise CharlmError(f"--clipnorm must be positive (or 0 for no clipping), got {self.clipnorm}")
        if self.clip_mode not in CLIP_MODES:
            raise CharlmError(f"--clip-mode must be global or per-tensor, got {self.clip_mode!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise CharlmError(f"--val-fraction must be between 0 and 1, got {self.val_fraction}")


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


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, values: dict):
    """Rebuild a config, ignoring keys a newer or older charlm may have written."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})
