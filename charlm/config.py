"""Every setting charlm takes, as small frozen dataclasses that check themselves when made.

The command line and the Python API build these from flags or keyword arguments. A run
writes its tokenizer, model, training, checkpoint and device settings to its
``config.json`` and into the model file; the rest (where the corpus comes from, how a text
is batched for evaluation, how to sample) are per command. Error messages name the
command-line flag of a setting (:func:`flag`), which is what a user typed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from charlm.data.tokenizers import DOC, EOL, KINDS, NORMALIZATIONS, PAD, UNK
from charlm.data.words import WordRules
from charlm.errors import CharlmError

CELLS = ("rnn", "lstm", "gru")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# --weight-decay when --optimizer adamw is given without it: PyTorch's AdamW default.
ADAMW_WEIGHT_DECAY = 0.01
CLIP_MODES = ("global", "per-tensor")
LR_SCHEDULES = ("constant", "wsd", "cosine", "linear")
# wsd's cooldown when --cooldown is not given: Hägele et al. 2024 find that a cooldown over the
# last 20% of a run matches a cosine schedule's loss.
WSD_COOLDOWN = 0.2
# A run with no --epochs, --max-steps or --max-minutes (charlm.training.spec.open_ended_defaults)
# ends when validation loss has not improved for this many validations, taken at epoch ends or,
# where an epoch is longer, every this many steps.
OPEN_ENDED_PATIENCE = 3
OPEN_ENDED_VAL_EVERY = 1000
# --dropout of a training run that does not give it: without dropout the default model overfits
# tiny-shakespeare within about 8 epochs, with 0.2 it was still improving (docs/training.md).
# A ModelConfig built in Python keeps 0 unless told.
TRAIN_DROPOUT = 0.2
DEVICES = ("auto", "cpu", "gpu", "tpu")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")

# The settings only a word tokenizer has.
WORD_SETTINGS = ("max_vocab", "min_count", "lowercase", "split_punctuation", "numbers_token")
RESERVED = (PAD, UNK, EOL, DOC)
MIN_VOCAB = len(RESERVED) + 1
MAX_VOCAB = 2**31 - 1  # ids are int32 in the model; token files hold up to uint32

# Settings whose flag is not their name with dashes; and the flag names charlm.train accepts
# as keywords for them.
_FLAGS = {"kind": "--tokenizer", "normalization": "--normalize"}
ALIASES = {"tokenizer": "kind", "normalize": "normalization"}


def flag(name: str) -> str:
    """The command-line flag of the setting ``name``."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def _positive(name: str, value):
    if value is None or value <= 0:
        raise CharlmError(f"{flag(name)} must be a positive number, got {value}")


def _one_of(name: str, value, choices):
    if value not in choices:
        raise CharlmError(f"{flag(name)} must be one of {', '.join(map(str, choices))}, got {value!r}")


@dataclass(frozen=True)
class TokenizerConfig:
    """How text becomes ids: ``kind`` char|byte|word, ``normalization`` None|NFC|NFKC
    (char only), ``encoding_errors`` strict|replace; for words only: ``max_vocab``,
    ``min_count`` (the vocabulary by frequency) and ``lowercase``, ``split_punctuation``,
    ``numbers_token`` (the rules of :mod:`charlm.data.words`)."""

    kind: str = "char"
    normalization: str | None = None
    max_vocab: int | None = None
    encoding_errors: str = "strict"
    min_count: int | None = None
    lowercase: bool = False
    split_punctuation: bool = False
    numbers_token: str | None = None

    def __post_init__(self):
        _one_of("kind", self.kind, KINDS)
        if self.normalization not in NORMALIZATIONS:
            raise CharlmError(f"{flag('normalization')} must be NFC or NFKC, got {self.normalization!r}")
        if self.encoding_errors not in ("strict", "replace"):
            raise CharlmError(f"{flag('encoding_errors')} must be strict or replace, got {self.encoding_errors!r}")
        if self.kind != "word":
            for name in WORD_SETTINGS:
                if getattr(self, name) not in (None, False):
                    raise CharlmError(f"{flag(name)} applies to words; add --tokenizer word "
                                      f"(this is a {self.kind} tokenizer)")
            return
        if self.max_vocab is not None and not MIN_VOCAB <= self.max_vocab <= MAX_VOCAB:
            raise CharlmError(f"{flag('max_vocab')} must be between {MIN_VOCAB} (the reserved symbols {', '.join(RESERVED)} "
                              f"and one word) and {MAX_VOCAB:,} (the largest int32 id), got {self.max_vocab}")
        if self.min_count is not None and self.min_count < 1:
            raise CharlmError(f"{flag('min_count')} must be at least 1, got {self.min_count}")
        if self.numbers_token is not None:
            problem = WordRules(self.lowercase, self.split_punctuation).check_token(self.numbers_token)
            if problem or self.numbers_token in RESERVED:
                raise CharlmError(f"{flag('numbers_token')} {self.numbers_token!r} "
                                  f"{problem or 'is a reserved symbol'}")


@dataclass(frozen=True)
class ModelConfig:
    """Embedding(E) -> ``layers`` x cell(H) -> Dense(vocab) logits. ``tie_weights``: the output
    matrix is the embedding's transpose (after a linear H -> E projection where H != E).

    The regularisers, all active in training only (AWD-LSTM's, Merity et al. 2017): ``dropout``
    (0 here; a training run that does not set it takes :data:`TRAIN_DROPOUT`) the rate at every
    place below unless ``dropout_input`` (the embedded tokens, AWD-LSTM's
    dropouti), ``dropout_hidden`` (between recurrent layers, dropouth) or ``dropout_output`` (the
    top layer's output, dropout) sets it there; ``locked_dropout``: one mask per stream row of a
    window for all its steps (variational dropout); ``weight_drop``: DropConnect on each layer's
    recurrent kernel, one mask per window (wdrop); ``embedding_dropout``: whole vocabulary rows
    dropped per window (dropoute)."""

    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    embedding: int = 64
    dropout: float = 0.0
    tie_weights: bool = False
    dropout_input: float | None = None  # None: dropout
    dropout_hidden: float | None = None
    dropout_output: float | None = None
    locked_dropout: bool = False
    weight_drop: float = 0.0
    embedding_dropout: float = 0.0

    def __post_init__(self):
        _one_of("cell", self.cell, CELLS)
        for name in ("layers", "hidden", "embedding"):
            _positive(name, getattr(self, name))
        for name in ("dropout", "dropout_input", "dropout_hidden", "dropout_output", "weight_drop",
                     "embedding_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise CharlmError(f"{flag(name)} must be in [0, 1), got {value}")
        if self.locked_dropout and not any(self.dropout_rates):
            raise CharlmError(f"{flag('locked_dropout')} locks the dropout masks over time, but every dropout "
                              "rate is 0: add --dropout P (or --dropout-input/-hidden/-output)")

    @property
    def states_per_layer(self) -> int:
        """LSTM carries (h, c); GRU and SimpleRNN carry h."""
        return 2 if self.cell == "lstm" else 1

    @property
    def dropout_rates(self) -> tuple[float, ...]:
        """The dropout rate of each place, in the order the model applies them: each recurrent
        layer's input (the embedded tokens first), then the top layer's output."""
        def rate(value):
            return self.dropout if value is None else value

        hidden = (rate(self.dropout_hidden),) * (self.layers - 1)
        return (rate(self.dropout_input), *hidden, rate(self.dropout_output))

    @property
    def draws_masks(self) -> bool:
        """Whether training draws random masks (any dropout, weight drop or embedding dropout)."""
        return any(self.dropout_rates) or bool(self.weight_drop) or bool(self.embedding_dropout)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation: B parallel streams cut into windows of T tokens (truncated BPTT); how
    long (epochs, steps, minutes; with none of them, until validation stops improving: see
    :attr:`open_ended`), the rate's schedule over that budget (:mod:`charlm.training.schedule`),
    and early stopping on validation loss."""

    batch_size: int = 64
    bptt: int = 64
    epochs: int | None = None  # None: no epoch limit (see open_ended)
    max_steps: int | None = None
    max_minutes: float | None = None  # wall-clock budget of the whole run's training loop, across resumes
    optimizer: str = "adam"
    lr: float = 2e-3
    lr_schedule: str = "wsd"
    lr_decay_start: float = 0.0  # cosine, linear: fraction of the run's budget before the decay begins
    warmup: float = 0.0  # fraction of the budget over which the rate rises from 0 to lr
    cooldown: float | None = None  # wsd: fraction of the budget at its end over which the rate falls to 0
    patience: int | None = None  # stop after this many validations without a better validation loss
    val_every: int | None = None  # also validate every this many steps inside epochs
    clipnorm: float | None = 5.0
    clip_mode: str = "global"
    val_fraction: float = 0.05
    seed: int = 0
    weight_decay: float | None = None  # adamw only; None there means ADAMW_WEIGHT_DECAY
    ema: float | None = None  # decay of the weights' moving average (charlm.training.averaging); None: off

    def __post_init__(self):
        for name in ("batch_size", "bptt", "lr"):
            _positive(name, getattr(self, name))
        for name in ("epochs", "max_steps", "max_minutes"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0.0 <= self.lr_decay_start < 1.0:
            raise CharlmError(f"{flag('lr_decay_start')} must be in [0, 1), got {self.lr_decay_start}")
        self._check_schedule()
        for name in ("patience", "val_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CharlmError(f"{flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise CharlmError(f"{flag('clipnorm')} must be positive (or 0 for no clipping), got {self.clipnorm}")
        if self.clip_mode not in CLIP_MODES:
            raise CharlmError(f"{flag('clip_mode')} must be global or per-tensor, got {self.clip_mode!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise CharlmError(f"{flag('val_fraction')} must be between 0 and 1, got {self.val_fraction}")
        self._check_regularisation()

    def _check_schedule(self):
        for name in ("warmup", "cooldown"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise CharlmError(f"{flag(name)} must be a fraction of the run in [0, 1), got {value}")
        if self.lr_schedule == "constant" and self.warmup:
            raise CharlmError(f"{flag('warmup')} needs a schedule: add --lr-schedule wsd, cosine or linear "
                              "(constant keeps --lr throughout)")
        if self.lr_schedule != "wsd" and self.cooldown is not None:
            raise CharlmError(f"{flag('cooldown')} is the end of --lr-schedule wsd; cosine and linear decay "
                              f"from {flag('lr_decay_start')} to the end (got --lr-schedule {self.lr_schedule})")
        if self.lr_schedule == "wsd":
            if self.lr_decay_start:
                raise CharlmError(f"{flag('lr_decay_start')} is for cosine and linear; --lr-schedule wsd "
                                  f"decays over its last {flag('cooldown')} fraction")
            if self.warmup + self.wsd_cooldown > 1.0:
                raise CharlmError(f"{flag('warmup')} {self.warmup:g} and {flag('cooldown')} {self.wsd_cooldown:g} "
                                  "add up to more than the whole run")
        elif 0.0 < self.lr_decay_start < self.warmup:
            raise CharlmError(f"{flag('lr_decay_start')} {self.lr_decay_start:g} falls inside {flag('warmup')} "
                              f"{self.warmup:g}; the decay starts after the warmup (leave {flag('lr_decay_start')} "
                              "at 0 for that)")

    @property
    def open_ended(self) -> bool:
        """No --epochs, --max-steps or --max-minutes: the run's length is not known in advance;
        it ends when validation stops improving (:func:`charlm.training.spec.open_ended_defaults`)."""
        return self.epochs is None and self.max_steps is None and self.max_minutes is None

    @property
    def wsd_cooldown(self) -> float:
        """The fraction of the run wsd's cooldown takes: --cooldown, or :data:`WSD_COOLDOWN`."""
        return WSD_COOLDOWN if self.cooldown is None else self.cooldown

    def _check_regularisation(self):
        if self.optimizer == "adamw" and self.weight_decay is None:
            object.__setattr__(self, "weight_decay", ADAMW_WEIGHT_DECAY)  # recorded in config.json as used
        if self.weight_decay is not None:
            if self.optimizer != "adamw":
                raise CharlmError(f"{flag('weight_decay')} is decoupled weight decay, which needs --optimizer adamw "
                                  f"(got --optimizer {self.optimizer})")
            # Each step scales a weight by 1 - lr * W: at 1 or more that flips or zeroes it.
            if not (self.weight_decay >= 0 and self.lr * self.weight_decay < 1):
                raise CharlmError(f"{flag('weight_decay')} must be 0 or more with --lr times it below 1, "
                                  f"got {self.weight_decay}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise CharlmError(f"{flag('ema')} must be a decay between 0 and 1 (e.g. 0.999), got {self.ema}")


@dataclass(frozen=True)
class CheckpointConfig:
    """``checkpoint_every``: steps between checkpoints (0: only at each epoch end);
    ``keep``: how many of the newest checkpoints to keep."""

    checkpoint_every: int = 200
    keep: int = 3

    def __post_init__(self):
        if self.checkpoint_every is None or self.checkpoint_every < 0:
            raise CharlmError(f"{flag('checkpoint_every')} must be 0 (epoch ends only) or more, "
                              f"got {self.checkpoint_every}")
        if self.keep is None or self.keep < 1:
            raise CharlmError(f"{flag('keep')} must be at least 1, got {self.keep}")


@dataclass(frozen=True)
class DeviceConfig:
    """Where training runs: ``device`` auto|cpu|gpu|tpu, ``strategy``
    auto|default|mirrored|multi-worker|tpu, ``steps_per_execution`` (TPU),
    ``mixed_precision`` (float16 on GPU, bfloat16 on TPU and CPU)."""

    device: str = "auto"
    strategy: str = "auto"
    steps_per_execution: int = 1
    mixed_precision: bool = False

    def __post_init__(self):
        _one_of("device", self.device, DEVICES)
        _one_of("strategy", self.strategy, STRATEGIES)
        if self.steps_per_execution < 1:
            raise CharlmError(f"{flag('steps_per_execution')} must be at least 1, got {self.steps_per_execution}")


@dataclass(frozen=True)
class DataConfig:
    """Where the corpus comes from and where its token file is cached.

    ``cache_dir``: the token-file cache (None: beside the run, or no cache for a
    bare :func:`charlm.data.prepare.prepare`). The ``tfds_*`` settings apply to a
    ``tfds:NAME[/CONFIG]`` corpus: ``tfds_split`` one split (cut by --val-fraction) or
    ``TRAIN,VALIDATION``; ``tfds_key`` the text feature (default ``text``); ``tfds_data_dir``
    and ``tfds_manual_dir`` as in ``tfds build``.
    """

    cache_dir: str | None = None
    tfds_split: str | None = None
    tfds_key: str | None = None
    tfds_data_dir: str | None = None
    tfds_manual_dir: str | None = None

    @classmethod
    def pop_from(cls, settings: dict) -> DataConfig:
        """Take this config's keys out of flat keyword ``settings`` (as ``charlm.train`` gets them)."""
        values = {f.name: settings.pop(f.name, None) for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in values.items() if value is not None})

    @property
    def tfds_options(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k.startswith("tfds_") and v is not None}


@dataclass(frozen=True)
class StreamSettings:
    """How ``charlm eval`` and ``charlm score`` batch a text: at most ``streams`` parallel
    pieces, forward passes of ``window`` tokens, ``warmup`` tokens read before each piece but
    the first (see :mod:`charlm.evaluate`)."""

    # A large batch keeps both cores of a small CPU busy in the recurrent step's product, and
    # evaluation keeps no activations for a backward pass, so it costs little memory.
    streams: int = 128
    window: int = 256
    warmup: int = 256

    def __post_init__(self):
        if self.streams < 1:
            raise CharlmError(f"{flag('streams')} must be at least 1, got {self.streams}")
        if self.window < 1:
            raise CharlmError(f"{flag('window')} must be at least 1, got {self.window}")
        if self.warmup < 0:
            raise CharlmError(f"{flag('warmup')} must be 0 or more, got {self.warmup}")


@dataclass(frozen=True)
class DynamicEvalConfig:
    """Dynamic evaluation (``charlm eval --dynamic``, :mod:`charlm.dynamic_eval`): after each
    ``segment`` tokens are scored, one step on them of rate ``dynamic_lr`` scaled by the root mean
    square gradients of ``stat_batches`` batches of training text, and a pull of ``dynamic_decay``
    back towards the trained weights."""

    # Measured on tiny-shakespeare's last 5% with 2x256 LSTMs (docs/sampling-and-evaluation.md).
    dynamic_lr: float = 3e-5
    dynamic_decay: float = 2e-3
    segment: int = 20
    stat_batches: int = 100

    def __post_init__(self):
        if not (math.isfinite(self.dynamic_lr) and self.dynamic_lr >= 0):
            raise CharlmError(f"{flag('dynamic_lr')} must be 0 or more, got {self.dynamic_lr}")
        if not 0.0 <= self.dynamic_decay <= 1.0:
            raise CharlmError(f"{flag('dynamic_decay')} must be between 0 and 1, got {self.dynamic_decay}")
        if self.segment < 1:
            raise CharlmError(f"{flag('segment')} must be at least 1, got {self.segment}")
        if self.stat_batches < 1:
            raise CharlmError(f"{flag('stat_batches')} must be at least 1, got {self.stat_batches}")


@dataclass(frozen=True)
class SampleConfig:
    """How to sample. ``temperature`` None means 1.0; ``greedy`` excludes the other three
    samplers; ``seed`` None means a random seed (reported in each sample)."""

    length: int = 500
    temperature: float | None = None
    greedy: bool = False
    top_k: int | None = None
    top_p: float | None = None
    num_samples: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))
        if not isinstance(self.length, int) or self.length < 1:
            raise CharlmError(f"{flag('length')} must be at least 1, got {self.length}")
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CharlmError(f"{flag('temperature')} must be a positive number, got {self.temperature}; "
                              "use --greedy for the most likely token")
        if self.top_k is not None and self.top_k < 1:
            raise CharlmError(f"{flag('top_k')} must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise CharlmError(f"{flag('top_p')} must be in (0, 1], got {self.top_p}")
        if self.greedy and (self.temperature is not None or self.top_k is not None or self.top_p is not None):
            raise CharlmError("--greedy takes the most likely token; it cannot be combined with --temperature, "
                              "--top-k or --top-p")
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise CharlmError(f"{flag('num_samples')} must be at least 1, got {self.num_samples}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise CharlmError(f"{flag('stop')} strings must be non-empty")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


def from_dict(cls, values: dict):
    """Rebuild a config from :func:`to_dict`'s output. An unknown key is an error (a
    ``ValueError``): a file that names a setting this charlm does not have is damaged or
    was written by another version, and loading its default instead would hide that."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} setting{'s' * (len(unknown) > 1)} {', '.join(unknown)}")
    return cls(**values)
