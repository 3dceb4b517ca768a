"""What a run will do before it does it: settings, corpus, directory, starting point.

Three kinds of run:

- new: settings from flags (defaults for the rest, :data:`charlm.config.TRAIN_DROPOUT` for
  --dropout), a new run directory;
- fine-tuning (``init_from=MODEL.keras``): architecture and tokenizer from the
  model file; flags may not contradict them (dropout excepted);
- resumed (``resume=RUN_DIR``): every setting from the run's ``config.json``;
  flags may change only how long and how fast it trains (:data:`RESUMABLE`),
  any other difference is refused with a message naming it.

In the last two cases only the flags a user actually gave are passed in (the
command line asks click which ones came from the command line).

A run given no --epochs, --max-steps or --max-minutes is *open-ended*: it ends when validation
stops improving (:func:`open_ended_defaults` fills in the --patience and --val-every that needs
once the corpus is read, and the run records them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from charlm.config import (
    ALIASES,
    OPEN_ENDED_PATIENCE,
    OPEN_ENDED_VAL_EVERY,
    TRAIN_DROPOUT,
    CheckpointConfig,
    DeviceConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    flag,
    from_dict,
    to_dict,
)
from charlm.data.prepare import default_corpus
from charlm.errors import CharlmError
from charlm.nn.modelfile import read_record
from charlm.training.checkpoint import clean_leftovers, list_checkpoints, read_state

CONFIGS = (TokenizerConfig, ModelConfig, TrainConfig, CheckpointConfig, DeviceConfig)
_RECORD_KEYS = ("tokenizer", "model", "train", "checkpoints", "device")
# Settings a resumed run may change: they alter how long or how fast it trains, or where,
# not what the model is or what text it reads. Settings added later are refused until listed.
RESUMABLE = frozenset({"epochs", "max_steps", "max_minutes", "lr", "lr_schedule", "lr_decay_start",
                       "warmup", "cooldown", "patience", "val_every",
                       "clipnorm", "clip_mode", "checkpoint_every", "keep", "weight_decay",
                       "device", "strategy", "steps_per_execution"})
# Settings fine-tuning takes from the model file; dropout has no weights, so it may change.
FROM_MODEL = frozenset({"cell", "layers", "hidden", "embedding", "tie_weights", "kind", "normalization", "max_vocab",
                        "min_count", "lowercase", "split_punctuation", "numbers_token"})


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs to know before reading its corpus."""

    paths: tuple
    out_dir: Path
    tokenizer: TokenizerConfig
    model: ModelConfig
    train: TrainConfig
    checkpoints: CheckpointConfig
    device: DeviceConfig
    init_from: str | None = None  # a model file to start from
    extend_vocab: bool = False
    resume_from: Path | None = None  # a checkpoint directory to restore
    corpus_sha256: str | None = None  # a resumed run's corpus must still have this fingerprint
    changes: tuple[str, ...] = ()  # settings a resumed run changed, for the log

    @property
    def resumed(self) -> bool:
        return self.corpus_sha256 is not None

    def record(self, files, fingerprint) -> dict:
        """The run's ``config.json``: every setting and the corpus."""
        return {
            "tokenizer": to_dict(self.tokenizer),
            "model": to_dict(self.model),
            "train": to_dict(self.train),
            "checkpoints": to_dict(self.checkpoints),
            "device": to_dict(self.device),
            "corpus": {"files": list(files), "sha256": fingerprint},
            "init_from": {"path": self.init_from, "extend_vocab": self.extend_vocab} if self.init_from else None,
        }


def split_settings(settings: dict) -> dict[type, dict]:
    """Sort flat keyword settings (the CLI's flag names, underscored) by the config they belong to."""
    groups = {cls: {} for cls in CONFIGS}
    for key, value in settings.items():
        name = ALIASES.get(key, key)
        for cls, values in groups.items():
            if name in {f.name for f in dataclasses.fields(cls)}:
                values[name] = value
                break
        else:
            raise CharlmError(f"unknown training setting {key!r}")
    return groups


def new_spec(corpus, out, settings: dict, init_from=None, extend_vocab=False) -> RunSpec:
    """A run from step 0: from flags, or (``init_from``) from a model file and flags."""
    if extend_vocab and not init_from:
        raise CharlmError("--extend-vocab needs --init-from MODEL.keras (it grows that model's vocabulary)")
    groups = split_settings(settings)
    groups[ModelConfig].setdefault("dropout", TRAIN_DROPOUT)
    if init_from:
        groups = _from_model(init_from, groups)
    configs = [cls(**values) for cls, values in groups.items()]
    _check_open_ended(configs[CONFIGS.index(TrainConfig)])
    if corpus is None:
        paths = (str(default_corpus()),)
    else:
        paths = tuple(str(p) for p in (corpus if isinstance(corpus, (list, tuple)) else [corpus]))
    out_dir = Path(out) if out else Path("runs") / f"{Path(paths[0]).stem or 'corpus'}-{datetime.now():%Y%m%d-%H%M%S}"
    _check_output(out_dir)
    return RunSpec(paths, out_dir, *configs, init_from=str(init_from) if init_from else None,
                   extend_vocab=bool(extend_vocab))


def resume_spec(run_dir, corpus, out, settings: dict, init_from=None, extend_vocab=False) -> RunSpec:
    """A run continued from the newest checkpoint in ``run_dir`` (from step 0 if it has none yet)."""
    run_dir = Path(run_dir)
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise CharlmError("--out cannot be combined with --resume: a resumed run continues in its own directory")
    if init_from or extend_vocab:
        raise CharlmError("--init-from and --extend-vocab cannot be combined with --resume: "
                          "a resumed run continues from its own checkpoint")
    if not run_dir.is_dir():
        raise CharlmError(f"--resume {run_dir}: no such run directory")
    try:
        record = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        saved = {cls: to_dict(from_dict(cls, record.get(key) or {})) for cls, key in zip(CONFIGS, _RECORD_KEYS)}
        files, sha256 = tuple(record["corpus"]["files"]), record["corpus"]["sha256"]
    except FileNotFoundError:
        raise CharlmError(f"--resume {run_dir}: not a charlm run directory (no config.json); "
                          "give the --out directory of an earlier charlm train") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CharlmError(f"--resume {run_dir}: its config.json is damaged ({error})") from None
    changes = []
    for cls, values in split_settings(settings).items():
        for name, value in values.items():
            if saved[cls][name] == value:
                continue
            if name not in RESUMABLE:
                raise CharlmError(
                    f"{flag(name)} {value} conflicts with the run in {run_dir}, which has {flag(name)} "
                    f"{saved[cls][name]}; a resumed run keeps its model and data: drop {flag(name)} or start a new run"
                )
            changes.append(f"{flag(name)} {saved[cls][name]} -> {value}")
            saved[cls][name] = value
    configs = [cls(**values) for cls, values in saved.items()]
    _check_open_ended(configs[CONFIGS.index(TrainConfig)])
    clean_leftovers(run_dir)
    checkpoints = list_checkpoints(run_dir)
    init = record.get("init_from") or {}
    return RunSpec(
        tuple(str(p) for p in corpus) if corpus else files, run_dir, *configs,
        init_from=init.get("path"), extend_vocab=bool(init.get("extend_vocab")),
        resume_from=_newest_readable(checkpoints), corpus_sha256=sha256, changes=tuple(changes),
    )


def _check_open_ended(config: TrainConfig):
    """Refuse what needs the run's length where nothing gives it."""
    if not config.open_ended:
        return
    needs = "needs the run's length: add --max-minutes (or --epochs, --max-steps)"
    if config.lr_schedule in ("cosine", "linear"):
        raise CharlmError(f"--lr-schedule {config.lr_schedule} decays towards the run's end, which {needs}; "
                          "without them, wsd cools down once validation stops improving")
    if config.warmup:
        raise CharlmError(f"{flag('warmup')} {config.warmup:g} is a fraction of the run, which {needs}")


def open_ended_defaults(spec: RunSpec, steps_per_epoch: int) -> RunSpec:
    """An open-ended run (:attr:`charlm.config.TrainConfig.open_ended`) ends when validation stops
    improving: without --patience, after :data:`charlm.config.OPEN_ENDED_PATIENCE` validations
    without a better loss; without --val-every, validating at epoch ends, or every
    :data:`charlm.config.OPEN_ENDED_VAL_EVERY` steps where an epoch has more (so that a large
    corpus is judged well before its first epoch ends). The values chosen go into the spec, hence
    into ``config.json``, which a resumed run reads them from."""
    config = spec.train
    if not config.open_ended:
        return spec
    chosen = {}
    if config.patience is None:
        chosen["patience"] = OPEN_ENDED_PATIENCE
    if config.val_every is None and steps_per_epoch > OPEN_ENDED_VAL_EVERY:
        chosen["val_every"] = OPEN_ENDED_VAL_EVERY
    return dataclasses.replace(spec, train=dataclasses.replace(config, **chosen)) if chosen else spec


def describe_open_ended(config: TrainConfig, steps_per_epoch: int) -> str:
    """The line an open-ended run starts with: how it will end, and why."""
    where = "one at each epoch's end"
    if config.val_every and config.val_every < steps_per_epoch:
        where = f"one every {config.val_every:,} steps; an epoch has {steps_per_epoch:,}"
    elif config.val_every:
        where = f"one every {config.val_every:,} steps"
    fraction = config.wsd_cooldown if config.lr_schedule == "wsd" else 0.0
    then = (f"then cooling the rate down to 0 over the last {_share(fraction)} of the run" if fraction
            else "then stopping")
    return (f"charlm: no --epochs, --max-steps or --max-minutes: training until validation loss has not "
            f"improved for {config.patience} validations ({where}), {then}; give --max-minutes to bound it")


def _share(fraction: float) -> str:
    names = {0.5: "half", 0.25: "quarter", 0.2: "fifth", 0.1: "tenth"}
    return names.get(fraction, f"{100 * fraction:g}%")


def _newest_readable(checkpoints):
    for path in reversed(checkpoints):
        try:
            read_state(path)
            return path
        except CharlmError:
            continue
    return None


def _from_model(path, groups: dict[type, dict]) -> dict[type, dict]:
    """Fine-tuning: architecture and tokenizer from the model file; a contradicting flag is refused."""
    record = read_record(path)
    try:
        model = to_dict(from_dict(ModelConfig, record["model"]))
        stored, trained = record["tokenizer"], ((record.get("info") or {}).get("tokenizer") or {})
        tokenizer = {"kind": stored["kind"], "normalization": stored.get("normalization"),
                     "max_vocab": trained.get("max_vocab"), "min_count": trained.get("min_count"),
                     # The word rules the model reads text with (files older than them: off).
                     "lowercase": stored.get("lowercase", False),
                     "split_punctuation": stored.get("split_punctuation", False),
                     "numbers_token": stored.get("numbers_token")}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CharlmError(f"{path} has a damaged charlm.json ({error})") from None
    for cls, saved in ((ModelConfig, model), (TokenizerConfig, tokenizer)):
        for name in FROM_MODEL & saved.keys():
            given = groups[cls].get(name, saved[name])
            if given != saved[name]:
                raise CharlmError(
                    f"{flag(name)} {given} conflicts with {path}, which has {flag(name)} {saved[name]}; "
                    f"fine-tuning keeps the model's architecture and tokenizer: drop {flag(name)}"
                )
            groups[cls][name] = saved[name]
    return groups


def _check_output(out_dir: Path):
    """Refuse an output path that exists as a file or already holds a run."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CharlmError(f"--out {out_dir} exists and is not a directory")
    if (out_dir / "model.keras").exists():
        raise CharlmError(f"--out {out_dir} already holds a model; choose a new directory")
    if (out_dir / "config.json").exists():
        raise CharlmError(f"--out {out_dir} already holds a run; continue it with "
                          f"'charlm train --resume {out_dir}' or choose a new directory")
