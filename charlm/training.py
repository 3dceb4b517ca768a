"""A training run: data, model, the epoch loop, and what it leaves in the run directory.

Run directory contents:
    model.keras     the best model so far by validation loss (with its tokenizer)
    history.csv     one row per epoch (also history.json)
    config.json     every setting of the run, the corpus files and their fingerprint
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from charlm.config import ModelConfig, TokenizerConfig, TrainConfig, to_dict
from charlm.corpus import check_writable_dir
from charlm.distribute import DeviceConfig
from charlm.errors import CharlmError

HISTORY_FIELDS = (
    "epoch", "step", "tokens_seen", "train_loss", "val_loss", "val_bits_per_char",
    "val_perplexity", "tokens_per_s", "seconds", "saved",
)


def split_settings(settings: dict) -> tuple[TokenizerConfig, ModelConfig, TrainConfig, DeviceConfig]:
    """Sort flat keyword settings (the CLI's flag names, underscored) into the four configs."""
    groups = {cls: {} for cls in (TokenizerConfig, ModelConfig, TrainConfig, DeviceConfig)}
    aliases = {"tokenizer": "kind", "normalize": "normalization"}
    for key, value in settings.items():
        name = aliases.get(key, key)
        for cls, values in groups.items():
            if name in {f.name for f in dataclasses.fields(cls)}:
                values[name] = value
                break
        else:
            raise CharlmError(f"unknown training setting {key!r}")
    return tuple(cls(**values) for cls, values in groups.items())


class Observer:
    """Something that watches a run (TensorBoard, samples, agreement accuracy).

    The run calls these hooks; the defaults do nothing. ``run`` gives access to
    ``run.lm`` (the :class:`charlm.lm.LanguageModel` being trained), ``run.out_dir``,
    ``run.config`` and ``run.log``.
    """

    def on_train_begin(self, run):
        pass

    def on_step_end(self, run, step: int, logs: dict):
        """After every training step; ``logs``: loss, grad_norm, clipped (bool), lr, tokens_per_s."""

    def on_epoch_end(self, run, epoch: int, row: dict) -> dict | None:
        """After validation; may return extra columns for the history row (e.g. agreement accuracy)."""

    def on_train_end(self, run, summary: dict):
        pass


def train(corpus=None, out=None, *, progress: bool = True, log=None, observers=(), **settings) -> dict:
    """Train a language model; the Python twin of ``charlm train``.

    Args:
        corpus: a file or directory, or a list of them; None for the bundled corpus.
        out: the run directory (default ``runs/<corpus name>-<date-time>``).
        progress: draw the progress bar on stderr.
        log: a function taking one line of text (default: print to stderr).
        observers: :class:`Observer` instances called during the run.
        **settings: any of ``tokenizer``, ``normalize``, ``max_vocab``,
            ``encoding_errors``, ``cell``, ``layers``, ``hidden``, ``embedding``,
            ``dropout``, ``batch_size``, ``bptt``, ``epochs``, ``max_steps``,
            ``optimizer``, ``lr``, ``clipnorm``, ``clip_mode``, ``val_fraction``, ``seed``.

    Returns:
        The run summary: ``model_path``, ``run_dir``, ``best_val_loss`` (nats per
        token), ``best_val_bits_per_char``, ``steps``, ``tokens_per_s`` and more.
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    tokenizer_config, model_config, train_config, device_config = split_settings(settings)
    if corpus is None:
        from charlm.data import default_corpus

        paths = [default_corpus()]
    else:
        paths = list(corpus) if isinstance(corpus, (list, tuple)) else [corpus]
    out_dir = Path(out) if out else _default_run_dir(paths[0])
    _check_output(out_dir)

    from charlm.data import prepare

    data = prepare(paths, tokenizer_config, train_config)
    check_writable_dir(out_dir)
    run = _Run(data, tokenizer_config, model_config, train_config, out_dir, progress, log, observers)
    run.device_config = device_config
    return run.execute()


class _Run:
    def __init__(self, data, tokenizer_config, model_config, train_config, out_dir, progress, log, observers):
        self.observers = list(observers)
        self.data = data
        self.tokenizer_config = tokenizer_config
        self.model_config = model_config
        self.config = train_config
        self.out_dir = out_dir
        self.show_progress = progress
        self.log = log
        self.history: list[dict] = []

    def execute(self) -> dict:
        from charlm.backend import import_keras

        keras = import_keras()
        import tensorflow as tf

        from charlm.lm import LanguageModel
        from charlm.distribute import check_batch, make_strategy
        from charlm.model import build_model
        from charlm.trainer import Trainer, bits

        keras.utils.set_random_seed(self.config.seed)
        tf.config.experimental.enable_op_determinism()

        data, config = self.data, self.config
        strategy, devices = make_strategy(self.device_config)
        check_batch(strategy, config.batch_size)
        self.log(f"charlm: training on {devices}")
        with strategy.scope():
            model = build_model(self.model_config, data.tokenizer.vocab_size)
        trainer = Trainer(model, config, self.model_config, strategy)
        lm = self.lm = LanguageModel(model, data.tokenizer, self.model_config)
        self.trainer = trainer
        self._write_json("config.json", self._config_record())
        self.log(
            f"charlm: {self.model_config.layers}x{self.model_config.hidden} {self.model_config.cell}, "
            f"{model.count_params():,} parameters, {data.tokenizer.kind} vocabulary of {data.tokenizer.vocab_size}; "
            f"{data.train_tokens:,} training and {data.val_tokens:,} validation tokens; "
            f"{len(data.train)} windows of {config.batch_size}x{config.bptt} per epoch"
        )

        steps_per_epoch = len(data.train)
        total_steps = steps_per_epoch * config.epochs
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
        step, tokens_seen, train_seconds = 0, 0, 0.0
        best_val = math.inf
        model_path = self.out_dir / "model.keras"
        started = time.perf_counter()
        for observer in self.observers:
            observer.on_train_begin(self)
        for epoch in range(1, config.epochs + 1):
            if step >= total_steps:
                break
            epoch_steps = min(steps_per_epoch, total_steps - step)
            bar = _progress(epoch_steps, f"epoch {epoch}/{config.epochs}", self.show_progress)
            # Each epoch starts from a fresh state: row i of the first window is the start of stream i.
            states = trainer.zero_states(config.batch_size)
            loss_sum, epoch_start = 0.0, time.perf_counter()
            windows = itertools.islice(trainer.windows(data.train), epoch_steps)
            for k, (x, y) in enumerate(windows, start=1):
                loss, norm, states = trainer.train_step(x, y, states)
                loss = float(loss)
                if not math.isfinite(loss):
                    bar.close()
                    raise CharlmError(
                        f"training diverged at step {step + k} (loss is {loss}); "
                        "lower --lr or --clipnorm; the best model so far is kept"
                    )
                loss_sum += loss
                bar.update(k, loss, k * data.train.tokens_per_window)
                if self.observers:
                    norm = float(norm)
                    logs = {
                        "loss": loss, "grad_norm": norm,
                        "clipped": config.clipnorm is not None and norm > config.clipnorm,
                        "lr": float(trainer.optimizer.learning_rate),
                        "tokens_per_s": k * data.train.tokens_per_window / (time.perf_counter() - epoch_start),
                    }
                    for observer in self.observers:
                        observer.on_step_end(self, step + k, logs)
            bar.close()
            seconds = time.perf_counter() - epoch_start
            train_seconds += seconds
            step += epoch_steps
            tokens_seen += epoch_steps * data.train.tokens_per_window
            val_loss = trainer.evaluate(data.validation)
            val_bpc = bits(val_loss) / data.val_chars_per_token
            saved = val_loss < best_val
            if saved:
                best_val = val_loss
                lm.info = self._info(best_val, val_bpc, step)
                lm.save(model_path)
            row = {
                "epoch": epoch, "step": step, "tokens_seen": tokens_seen,
                "train_loss": loss_sum / epoch_steps, "val_loss": val_loss,
                "val_bits_per_char": val_bpc, "val_perplexity": math.exp(min(val_loss, 700)),
                "tokens_per_s": epoch_steps * data.train.tokens_per_window / seconds,
                "seconds": seconds, "saved": saved,
            }
            for observer in self.observers:
                row.update(observer.on_epoch_end(self, epoch, row) or {})
            self.history.append(row)
            self._write_history()
            self.log(
                f"epoch {epoch}: train loss {row['train_loss']:.4f}, val loss {val_loss:.4f} "
                f"({val_bpc:.4f} bits/char), {row['tokens_per_s']:,.0f} tok/s, {seconds:.1f}s"
                + ("  [best, saved]" if saved else "")
            )
        best = min(self.history, key=lambda r: r["val_loss"])
        summary = {
            "model_path": str(model_path),
            "run_dir": str(self.out_dir),
            "best_val_loss": best["val_loss"],
            "best_val_bits_per_char": best["val_bits_per_char"],
            "best_epoch": best["epoch"],
            "final_train_loss": self.history[-1]["train_loss"],
            "steps": step,
            "epochs": len(self.history),
            "tokens_seen": tokens_seen,
            "tokens_per_s": tokens_seen / train_seconds if train_seconds else 0.0,
            "seconds": time.perf_counter() - started,
            "vocab_size": data.tokenizer.vocab_size,
        }
        for observer in self.observers:
            observer.on_train_end(self, summary)
        return summary

    def _info(self, best_val, best_bpc, step) -> dict:
        return {
            "best_val_loss": best_val,
            "best_val_bits_per_char": best_bpc,
            "step": step,
            **self._config_record(),
        }

    def _config_record(self) -> dict:
        return {
            "tokenizer": to_dict(self.tokenizer_config),
            "model": to_dict(self.model_config),
            "train": to_dict(self.config),
            "corpus": {"files": list(self.data.files), "sha256": self.data.fingerprint},
        }

    def _write_history(self):
        self._write_json("history.json", self.history)
        buffer = io.StringIO()
        extra = [k for k in self.history[-1] if k not in HISTORY_FIELDS]
        writer = csv.DictWriter(buffer, fieldnames=[*HISTORY_FIELDS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        _write_atomic(self.out_dir / "history.csv", buffer.getvalue())

    def _write_json(self, name, value):
        _write_atomic(self.out_dir / name, json.dumps(value, indent=2) + "\n")


def _progress(total, label, enabled):
    from charlm.progress import Progress

    return Progress(total, label, enabled)


def _write_atomic(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _default_run_dir(corpus) -> Path:
    stem = Path(corpus).stem or "corpus"
    return Path("runs") / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}"


def _check_output(out_dir: Path):
    """Refuse an output path that exists as a file or holds another run's model."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CharlmError(f"--out {out_dir} exists and is not a directory")
    if (out_dir / "model.keras").exists():
        raise CharlmError(f"--out {out_dir} already holds a model; choose a new directory")
