"""A training run: data, model, the epoch loop, checkpoints, and what it leaves in the run directory.

Run directory contents:
    model.keras     the best model so far by validation loss (with its tokenizer)
    history.csv     one row per validation: each epoch end, every --val-every steps (also history.json)
    config.json     every setting of the run, the corpus files and their fingerprint
    checkpoints/    the newest ``--keep`` checkpoints (see :mod:`charlm.training.checkpoint`)

A run survives being stopped: ``resume=RUN_DIR`` continues from the newest
checkpoint exactly as if it had never stopped (same weights, same per-step
losses: the model, optimizer, carried RNN states, data cursor and dropout
random state are all restored). SIGINT and SIGTERM stop it at the next step
boundary after writing a checkpoint; a non-finite loss or gradient norm stops it
without writing one, so the last good checkpoint and the best model survive.

When a run ends, and how it stops: :mod:`charlm.training.stopping`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from charlm.config import DataConfig, to_dict
from charlm.data.prepare import prepare
from charlm.data.tokenizers import tokenizer_from_config
from charlm.errors import CharlmError
from charlm.fileio import check_creatable_dir, check_writable_dir, write_text
from charlm.nn.lm import LanguageModel, load
from charlm.nn.model import build_model
from charlm.nn.modelinfo import regularisers_text
from charlm.runtime import import_keras
from charlm.training.checkpoint import Checkpointer, Position, list_checkpoints, read_state
from charlm.training.distribute import check_batch, make_strategy
from charlm.training.finetune import adapt_tokenizer, transfer_weights, vocabulary_report
from charlm.training.observers import HISTORY_FIELDS
from charlm.training.progress import Progress
from charlm.training.schedule import cooldown_lr, cooldown_steps, run_progress, scheduled_lr
from charlm.training.spec import describe_open_ended, new_spec, open_ended_defaults, resume_spec
from charlm.training.steps import CompiledSteps, bits
from charlm.training.stopping import (StopSignals, TrainingInterrupted, check_left_to_train,
                                     total_steps, validations_without_improvement)

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)


def train(corpus=None, out=None, *, resume=None, init_from=None, extend_vocab: bool = False,
          progress: bool = True, log=None, observers=(), clock=time.perf_counter, **settings) -> dict:
    """Train a language model; the Python twin of ``charlm train``.

    Args:
        corpus: a file or directory, or a list of them; None for the bundled corpus
            (or, with ``resume``, the run's own corpus).
        out: the run directory (default ``runs/<corpus name>-<date-time>``).
        resume: a run directory to continue from its newest checkpoint. ``settings``
            may then change only how long and how fast it trains, and where
            (:data:`charlm.training.spec.RESUMABLE`); anything else is refused.
        init_from: a ``.keras`` model to fine-tune: its weights, architecture and tokenizer.
        extend_vocab: with ``init_from``, add the new corpus's unknown symbols to the vocabulary.
        progress: draw the progress bar on stderr.
        log: a function taking one line of text (default: print to stderr).
        observers: :class:`charlm.training.observers.Observer` instances called during the run.
        clock: a function returning seconds, from which the run's elapsed time (its
            --max-minutes budget and the schedules' progress) is read; tests drive it.
        **settings: any of ``tokenizer``, ``normalize``, ``max_vocab``,
            ``encoding_errors``, ``cell``, ``layers``, ``hidden``, ``embedding``,
            ``dropout``, ``batch_size``, ``bptt``, ``epochs``, ``max_steps``,
            ``optimizer``, ``lr``, ``lr_schedule``, ``lr_decay_start``, ``warmup``, ``cooldown``,
            ``patience``, ``val_every``, ``clipnorm``, ``clip_mode``, ``val_fraction``, ``seed``,
            ``weight_decay``, ``ema``, ``checkpoint_every``, ``keep``, the device settings of
            :class:`charlm.config.DeviceConfig` and the corpus settings of
            :class:`charlm.config.DataConfig`.

    Returns:
        The run summary: ``model_path``, ``run_dir``, ``best_val_loss`` (nats per
        token), ``best_val_bits_per_char``, ``steps``, ``tokens_per_s``, ``stopped_by_time``,
        ``stopped_early`` and more.

    Raises:
        TrainingInterrupted: SIGINT/SIGTERM; a checkpoint was written first.
        CharlmError: bad input, or divergence (a non-finite loss or gradient norm).
    """
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    settings = dict(settings)
    data_config = DataConfig.pop_from(settings)
    if resume is not None:
        spec = resume_spec(resume, corpus, out, settings, init_from, extend_vocab)
    else:
        spec = new_spec(corpus, out, settings, init_from, extend_vocab)
    tokenizer = report = source = None
    if spec.resume_from is not None:
        tokenizer = tokenizer_from_config(read_state(spec.resume_from)["tokenizer"])
    elif spec.init_from:
        source = load(spec.init_from)  # all its checks before anything is written
        tokenizer, report = _fine_tuning_tokenizer(spec, source.tokenizer, data_config, log)
    check_creatable_dir(spec.out_dir)  # before the corpus is read: a bad --out fails fast
    data = prepare(spec.paths, spec.tokenizer, spec.train, tokenizer, data_config=data_config,
                   run_dir=spec.out_dir, log=log)
    spec = open_ended_defaults(spec, len(data.train))
    if spec.resumed and data.fingerprint != spec.corpus_sha256:
        raise CharlmError(f"the corpus {', '.join(data.files)} is not the text the run in {spec.out_dir} was "
                          "trained on (its sha256 differs); resuming needs the same corpus")
    if spec.resume_from is not None:
        check_left_to_train(spec, read_state(spec.resume_from)["position"], len(data.train))
    if report is not None:
        report = vocabulary_report(data.tokenizer, data, *report)
        log(report.describe(spec.init_from))
    check_writable_dir(spec.out_dir)
    return Run(spec, data, report, source, progress, log, observers, clock).execute()


def _fine_tuning_tokenizer(spec, tokenizer, data_config, log):
    """The model's ``tokenizer``, grown by the new corpus's unknown symbols with
    --extend-vocab; and (unknown symbols, added symbols) for the report."""
    if tokenizer.unk_id is None:
        return tokenizer, ((), ())
    # The new corpus with a vocabulary of its own (all of it: no --max-vocab or --min-count cut), to find its symbols.
    own = dataclasses.replace(spec.tokenizer, max_vocab=None, min_count=None)
    fresh = prepare(spec.paths, own, spec.train, data_config=data_config, run_dir=spec.out_dir, log=log)
    tokenizer, symbols, added = adapt_tokenizer(tokenizer, fresh, spec.extend_vocab)
    return tokenizer, (symbols, added)


class Run:
    """One training run, from its :class:`charlm.training.spec.RunSpec` and prepared data to
    the summary :func:`train` returns. Observers see it as ``run``: ``run.lm`` (the
    :class:`charlm.nn.lm.LanguageModel` being trained), ``run.out_dir``, ``run.model_config``,
    ``run.train_config``, ``run.data`` and ``run.log``.

    The steps between two validations are a *segment*: the rest of an epoch, or less where
    --val-every validates inside one (segments end at its multiples) or --max-steps or
    --max-minutes ends the run inside one.

    ``clock`` (seconds) times the run's budget: ``position.elapsed_seconds`` grows by the
    clock's advance at every tick (:meth:`_tick`), and the learning rate of each compiled call
    derives from it, so a resumed run continues the same curve.
    """

    def __init__(self, spec, data, vocabulary_report, source, progress, log, observers, clock=time.perf_counter):
        self.spec = spec
        self.source = source  # the model fine-tuning starts from
        self.data = data
        self.vocabulary_report = vocabulary_report
        self.observers = list(observers)
        self.model_config = spec.model
        self.train_config = spec.train
        self.out_dir = spec.out_dir
        self.show_progress = progress
        self.log = log
        self.history: list[dict] = []  # the position's history rows, shared with it
        self.clock = clock
        self._ticked = None  # the clock's reading last added to the position's elapsed time
        self._last_checkpoint = self._saved_step = None

    def execute(self) -> dict:
        spec, data, config, source = self.spec, self.data, self.train_config, self.source
        # The strategy first: multi-worker collectives must be set up before any TensorFlow op runs.
        strategy, devices = make_strategy(spec.device)
        on_gpu = spec.device.device != "cpu" and bool(tf.config.list_logical_devices("GPU"))
        if spec.device.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
        if not strategy.extended.should_checkpoint:
            # Multi-worker: only the chief writes the run directory; the other
            # workers compute the same steps but write to a scratch directory.
            self.out_dir = Path(tempfile.mkdtemp(prefix="charlm-worker-"))
        keras.utils.set_random_seed(config.seed)
        tf.config.experimental.enable_op_determinism()
        check_batch(strategy, config.batch_size)
        self.log(f"charlm: training on {devices}")
        with strategy.scope():
            model = build_model(self.model_config, data.tokenizer.vocab_size, on_gpu=on_gpu)
        if source is not None:
            transfer_weights(source.model, model, source.tokenizer.unk_id)
        steps = self.steps = CompiledSteps(model, self.model_config, config, strategy)
        self.lm = LanguageModel(model, data.tokenizer, self.model_config)
        self.checkpointer = Checkpointer(self.out_dir, model, steps.optimizer,
                                         steps.states_to_numpy(steps.zero_states(config.batch_size)),
                                         spec.checkpoints.keep, steps.average.averages if steps.average else ())
        position, states = Position(), None
        if spec.resume_from is not None:
            position, arrays, _ = self.checkpointer.restore(spec.resume_from)
            states = steps.states_from_numpy(arrays)
            # Settings a resumed run may change take effect now (the checkpoint holds the old rate).
            steps.optimizer.learning_rate = config.lr
        self.history = position.history
        self._write_json("config.json", spec.record(data.files, data.fingerprint))
        self._announce(model, position)
        return self._loop(position, states)

    def _announce(self, model, position):
        spec, data, config = self.spec, self.data, self.train_config
        tied = "output tied to the embedding, " if self.model_config.tie_weights else ""
        self.log(
            f"charlm: {self.model_config.layers}x{self.model_config.hidden} {self.model_config.cell}, {tied}"
            f"{regularisers_text(to_dict(self.model_config))}, "
            f"{model.count_params():,} parameters, {data.tokenizer.kind} vocabulary of {data.tokenizer.vocab_size}; "
            f"{data.train_tokens:,} training and {data.val_tokens:,} validation tokens; "
            f"{len(data.train)} windows of {config.batch_size}x{config.bptt} per epoch"
        )
        if data.tokenizer.kind == "word" or data.val_unknown:
            train_oov, val_oov = data.oov_rates()
            self.log(f"charlm: {data.train_unknown:,} training ({100 * train_oov:.2f}%) and {data.val_unknown:,} "
                     f"validation tokens ({100 * val_oov:.2f}%) are outside the vocabulary (<unk>)")
        if config.ema:
            self.log(f"charlm: weights averaged (--ema {config.ema:g}): validation and the saved model use the average")
        if position.cooldown_end is not None:
            self.log(f"charlm: in the cooldown begun when validation stopped improving at step "
                     f"{position.cooldown_start}: the rate falls to 0 by step {position.cooldown_end}, then the run stops")
        elif config.open_ended:
            self.log(describe_open_ended(config, len(data.train)))
        if spec.resumed:
            where = (f"checkpoint {spec.resume_from.name}: step {position.step}, epoch {position.epoch}, "
                     f"window {position.cursor} of {len(data.train)}") if spec.resume_from else \
                "no checkpoint yet, so from step 0"
            self.log(f"charlm: resuming {self.out_dir} from {where}"
                     + (f"; changed: {', '.join(spec.changes)}" if spec.changes else ""))

    def _loop(self, pos, states) -> dict:
        data, config, steps = self.data, self.train_config, self.steps
        steps_per_epoch = len(data.train)
        self.total_steps = total_steps(steps_per_epoch, config, pos.cooldown_end)
        model_path = self.out_dir / "model.keras"
        self._saved_step = pos.step if self.spec.resume_from else None
        started = time.perf_counter()
        self._ticked = self.clock()
        stopped_by_time = stopped_early = False
        for observer in self.observers:
            observer.on_train_begin(self)
        with StopSignals() as stop:
            while pos.step < self.total_steps and not stopped_early:
                if self._out_of_time(pos):
                    stopped_by_time = True
                    break
                if pos.cursor == 0:
                    # Each epoch starts from a fresh state: row i of the first window is the start of stream i.
                    states = steps.zero_states(config.batch_size)
                end = min(steps_per_epoch, pos.cursor + self.total_steps - pos.step)  # this segment ends at window `end`
                if config.val_every:
                    end = min(end, pos.cursor + config.val_every - pos.step % config.val_every)
                segment_start, first = time.perf_counter(), pos.cursor
                states = self._train_segment(pos, states, end, stop)
                seconds = time.perf_counter() - segment_start
                pos.train_seconds += seconds
                self._validate(pos, pos.cursor - first, seconds, model_path)
                self._warn_if_overfitting()
                if pos.step < self.total_steps and pos.cooldown_end is None and self._patience_spent():
                    stopped_early = not self._start_cooldown(pos, model_path)
                if pos.cursor == steps_per_epoch:
                    pos.epoch, pos.cursor, pos.epoch_loss_sum = pos.epoch + 1, 0, 0.0
                self._save(pos, states)
                if stop.signal:
                    self._interrupted(pos, states, stop.signal)
        if stopped_by_time:
            of = f" of {self.total_steps}" if math.isfinite(self.total_steps) else ""
            self.log(f"charlm: stopped at step {pos.step}{of}: --max-minutes {config.max_minutes:g} "
                     f"reached ({pos.elapsed_seconds / 60:.2f} minutes, the whole run's budget); to train it "
                     f"further: charlm train --resume {self.out_dir} --max-minutes MORE")
        best = min(self.history, key=lambda r: r["val_loss"])
        cooled = pos.cooldown_end is not None and pos.step >= pos.cooldown_end
        if cooled:
            self.log(f"charlm: the cooldown ended at step {pos.step}; the best validation loss, "
                     f"{best['val_loss']:.4f} at step {best['step']}, is in {model_path}")
        summary = {
            "model_path": str(model_path),
            "run_dir": str(self.out_dir),
            "best_val_loss": best["val_loss"],
            "best_val_bits_per_char": best["val_bits_per_char"],
            "best_epoch": best["epoch"],
            "final_train_loss": self.history[-1]["train_loss"],
            "steps": pos.step,
            "epochs": pos.epoch if pos.cursor else pos.epoch - 1,  # begun, the last perhaps cut short
            "validations": len(self.history),
            "tokens_seen": pos.tokens_seen,
            "tokens_per_s": pos.tokens_seen / pos.train_seconds if pos.train_seconds else 0.0,
            "seconds": time.perf_counter() - started,
            "stopped_by_time": stopped_by_time,
            "stopped_early": stopped_early or cooled,  # validation stopped improving (then, perhaps, a cooldown)
            "cooldown": {"start": pos.cooldown_start, "end": pos.cooldown_end} if pos.cooldown_end else None,
            "vocab_size": data.tokenizer.vocab_size,
            "oov_rate": dict(zip(("train", "validation"), data.oov_rates())),
            "checkpoint": str(self._last_checkpoint) if self._last_checkpoint else None,
        }
        if self.vocabulary_report is not None:
            summary["vocabulary"] = self.vocabulary_report.to_json()
        for observer in self.observers:
            observer.on_train_end(self, summary)
        return summary

    def _train_segment(self, pos, states, end, stop):
        """Train from window ``pos.cursor`` to window ``end`` of the epoch (or until the
        --max-minutes budget is spent), checkpointing every --checkpoint-every steps on the
        way. Returns the carried states."""
        every = self.spec.checkpoints.checkpoint_every
        tokens_per_window = self.data.train.tokens_per_window
        epochs = self.train_config.epochs
        label = f"epoch {pos.epoch}/{epochs}" if epochs else f"epoch {pos.epoch}"
        if pos.cooldown_end is not None:
            label += f", cooling down to step {pos.cooldown_end}"
        bar = Progress(end - pos.cursor, label, self.show_progress)
        started, first = time.perf_counter(), pos.cursor
        windows = iter(self.steps.windows(self.data.train, pos.cursor, end))
        try:
            while pos.cursor < end:
                # Up to --steps-per-execution steps in one compiled call, never past a checkpoint.
                count = min(self.spec.device.steps_per_execution, end - pos.cursor)
                if every:
                    count = min(count, every - pos.step % every)
                self._set_rate(pos)  # a call's steps share its first step's rate
                losses, norms, states = self._take_steps(windows, states, count)
                for loss, norm in zip(losses, norms):
                    if not (math.isfinite(loss) and math.isfinite(norm)):
                        self._diverged(pos.step + 1, loss, norm)
                    pos.step += 1
                    pos.cursor += 1
                    pos.epoch_loss_sum += loss
                    pos.tokens_seen += tokens_per_window
                    tokens = (pos.cursor - first) * tokens_per_window
                    bar.update(pos.cursor - first, loss, tokens)
                    self._notify_step(pos.step, loss, norm, tokens / (time.perf_counter() - started))
                # The segment's last step is saved after validation instead.
                if every and pos.step % every == 0 and pos.cursor < end:
                    self._save(pos, states)
                if stop.signal:
                    self._interrupted(pos, states, stop.signal)
                if self._out_of_time(pos):
                    break
            return states
        finally:
            bar.close()

    def _set_rate(self, pos):
        """The scheduled rate of the next step: in an open-ended run's cooldown, from its steps;
        else from the run's progress (the constant schedule keeps --lr)."""
        config = self.train_config
        if pos.cooldown_end is not None:
            self.steps.optimizer.learning_rate = cooldown_lr(config, pos.step, pos.cooldown_start, pos.cooldown_end)
        elif config.lr_schedule != "constant":
            self._tick(pos)
            progress = run_progress(config, pos.step, self.total_steps, pos.elapsed_seconds)
            self.steps.optimizer.learning_rate = scheduled_lr(config, progress)

    def _take_steps(self, windows, states, count):
        """``count`` training steps from the iterator ``windows``: (losses, norms, states),
        the losses and norms as lists of floats (one host round trip for all of them)."""
        if count == 1:
            x, y = next(windows)
            loss, norm, states = self.steps.train_step(x, y, states)
            return [float(loss)], [float(norm)], states
        losses, norms, states = self.steps.train_steps(windows, states, count)
        return losses.numpy().tolist(), norms.numpy().tolist(), states

    def _notify_step(self, step, loss, norm, tokens_per_s):
        if not self.observers:
            return
        clipnorm = self.train_config.clipnorm
        logs = {"loss": loss, "grad_norm": norm, "clipped": clipnorm is not None and norm > clipnorm,
                "lr": self.steps.learning_rate, "tokens_per_s": tokens_per_s}
        for observer in self.observers:
            observer.on_step_end(self, step, logs)

    def _validate(self, pos, steps, seconds, model_path):
        """Validation at the end of a segment of ``steps`` steps (an epoch's end, a --val-every
        multiple, or where the run stops): history row, best model."""
        data = self.data
        # With --ema, what is validated, saved and shown to the observers is the weight average.
        with self.steps.averaged_weights():
            val_loss = self.steps.evaluate(data.validation)
            val_bpc = bits(val_loss) / data.val_chars_per_token
            saved = val_loss < pos.best_val_loss
            if saved:
                pos.best_val_loss = val_loss
                self.lm.info = self._info(val_loss, val_bpc, pos.step)
                self.lm.save(model_path)
            row = {
                "epoch": pos.epoch, "step": pos.step, "tokens_seen": pos.tokens_seen,
                "train_loss": pos.epoch_loss_sum / max(1, pos.cursor), "val_loss": val_loss,
                "val_bits_per_char": val_bpc, "val_perplexity": math.exp(min(val_loss, 700)),
                "tokens_per_s": steps * data.train.tokens_per_window / seconds if seconds else 0.0,
                "seconds": seconds, "saved": saved,
            }
            for observer in self.observers:
                row.update(observer.on_epoch_end(self, pos.epoch, row) or {})
        self.history.append(row)
        self._write_history()
        where = f"epoch {pos.epoch}" + (f", step {pos.step}" if pos.cursor < len(data.train) else "")
        self.log(
            f"{where}: train loss {row['train_loss']:.4f}, val loss {val_loss:.4f} "
            f"({val_bpc:.4f} bits/char), {row['tokens_per_s']:,.0f} tok/s, {seconds:.1f}s"
            + ("  [best, saved]" if saved else "")
        )

    def _warn_if_overfitting(self):
        """A line when validation loss rose since the last validation while the training loss
        (the epoch's mean so far) fell: the first sign of a model learning its training text."""
        if len(self.history) < 2:
            return
        before, now = self.history[-2], self.history[-1]
        if now["val_loss"] > before["val_loss"] and now["train_loss"] < before["train_loss"]:
            advice = "more --dropout" if self.train_config.patience else "--patience N to stop early, more --dropout"
            self.log(f"charlm: warning: validation loss rose ({before['val_loss']:.4f} -> {now['val_loss']:.4f}) "
                     f"while training loss fell ({before['train_loss']:.4f} -> {now['train_loss']:.4f}): the model "
                     f"may be overfitting; {advice} or a smaller model may help")

    def _patience_spent(self) -> bool:
        """Whether --patience validations have passed without a better validation loss."""
        patience = self.train_config.patience
        return bool(patience) and validations_without_improvement(self.history) >= patience

    def _start_cooldown(self, pos, model_path) -> bool:
        """Validation has stopped improving (says so). An open-ended wsd run then cools its rate
        down over :func:`charlm.training.schedule.cooldown_steps` more steps from its current
        weights and stops (True); any other run stops now (False)."""
        config = self.train_config
        best = min(self.history, key=lambda r: r["val_loss"])
        waited = validations_without_improvement(self.history)
        kept = f"the best, {best['val_loss']:.4f} at step {best['step']}, is in {model_path}"
        steps = cooldown_steps(config, pos.step) if config.open_ended and config.lr_schedule == "wsd" else 0
        if not steps:
            self.log(f"charlm: stopped early at step {pos.step}: validation loss has not improved for {waited} "
                     f"validations (--patience {config.patience}); {kept}")
            return False
        pos.cooldown_start, pos.cooldown_end = pos.step, pos.step + steps
        self.total_steps = pos.cooldown_end
        self.log(f"charlm: validation stopped improving at step {pos.step}: cooling the rate down over {steps:,} "
                 f"steps, then stopping ({waited} validations without a better loss, --patience {config.patience}; "
                 f"the cooldown goes on from the current weights, and {kept})")
        return True

    # -- the run's clock -----------------------------------------------------

    def _tick(self, pos):
        """Add the clock's advance since the last tick to the run's elapsed time."""
        now = self.clock()
        pos.elapsed_seconds += now - self._ticked
        self._ticked = now

    def _out_of_time(self, pos) -> bool:
        config = self.train_config
        self._tick(pos)
        return bool(config.max_minutes) and pos.elapsed_seconds >= 60 * config.max_minutes

    # -- checkpoints, signals, divergence ------------------------------------

    def _save(self, pos, states):
        self._tick(pos)  # the checkpoint records the run's time up to now
        record = {"tokenizer": self.data.tokenizer.get_config(),
                  "config": self.spec.record(self.data.files, self.data.fingerprint)}
        self._last_checkpoint = self.checkpointer.save(pos, self.steps.states_to_numpy(states), record)
        self._saved_step = pos.step

    def _interrupted(self, pos, states, signum):
        if self._saved_step != pos.step:
            self._save(pos, states)
        raise TrainingInterrupted(
            f"interrupted at step {pos.step} (checkpoint saved); resume with: charlm train --resume {self.out_dir}",
            128 + signum,
        )

    def _diverged(self, step, loss, norm):
        kept = list_checkpoints(self.out_dir)
        good = (f"the last good checkpoint ({kept[-1].name}) and the best model are kept; resume from it with "
                f"a lower rate: charlm train --resume {self.out_dir} --lr {self.train_config.lr / 2:g}") if kept else \
            "no checkpoint was written before it; lower --lr or --clipnorm and start again"
        raise CharlmError(f"training diverged at step {step} (loss {loss}, gradient norm {norm}); {good}")

    # -- files ---------------------------------------------------------------

    def _info(self, best_val, best_bpc, step) -> dict:
        record = self.spec.record(self.data.files, self.data.fingerprint)
        if self.vocabulary_report is not None:
            record["vocabulary"] = self.vocabulary_report.to_json()
        return {"best_val_loss": best_val, "best_val_bits_per_char": best_bpc, "step": step, **record}

    def _write_history(self):
        self._write_json("history.json", self.history)
        buffer = io.StringIO()
        extra = [k for k in self.history[-1] if k not in HISTORY_FIELDS]
        writer = csv.DictWriter(buffer, fieldnames=[*HISTORY_FIELDS, *extra], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.out_dir / "history.csv", buffer.getvalue())

    def _write_json(self, name, value):
        write_text(self.out_dir / name, json.dumps(value, indent=2) + "\n")
