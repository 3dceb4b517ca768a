"""TensorBoard logging of a training run (``charlm train --tensorboard DIR``).

Events are written with TensorFlow's own summary writer and the metadata of
TensorBoard's ``scalars`` and ``text`` plugins, so the ``tensorboard`` package
is needed only to look at them, not to write them. Tags:

    every ``every`` steps (means over those steps):
        loss/train, optim/grad_norm, optim/clip_fraction (share of steps whose
        gradient norm exceeded --clipnorm), optim/learning_rate, speed/tokens_per_s
    every epoch, at its last step:
        loss/train_epoch, loss/val, bits_per_char/val, perplexity/val,
        speed/tokens_per_s_epoch, and metrics/<name> for each further numeric
        column observers add to the history row (e.g. agreement accuracy)
    text:
        run/config (the run's settings, once), samples/text (see
        :class:`charlm.training.observers.SampleObserver`)
"""

from __future__ import annotations

import json
from pathlib import Path

from charlm.config import to_dict
from charlm.fileio import check_writable_dir
from charlm.runtime import import_keras
from charlm.training.observers import HISTORY_FIELDS, Observer

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)
from tensorflow.core.framework import summary_pb2  # noqa: E402

# History columns written per epoch, and their tags.
EPOCH_TAGS = {
    "train_loss": "loss/train_epoch",
    "val_loss": "loss/val",
    "val_bits_per_char": "bits_per_char/val",
    "val_perplexity": "perplexity/val",
    "tokens_per_s": "speed/tokens_per_s_epoch",
}


def _metadata(plugin: str) -> bytes:
    data = summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    return summary_pb2.SummaryMetadata(plugin_data=data).SerializeToString()


class TensorBoardObserver(Observer):
    """Writes a run's scalars and sample texts as TensorBoard event files under ``log_dir``.

    Args:
        log_dir: the directory for the event files (created if missing).
        every: write the per-step scalars every this many steps (their means over
            the interval), which keeps the event file small on long runs.
    """

    def __init__(self, log_dir, every: int = 10):
        self.log_dir = Path(log_dir)
        self.every = max(1, int(every))
        self.writer = None
        self._interval = []  # logs of the steps since the last write
        self._pending_row = None  # last epoch's history row, written once all observers filled it

    def on_train_begin(self, run):
        check_writable_dir(self.log_dir)
        self.writer = tf.summary.create_file_writer(str(self.log_dir))
        self._scalar_meta, self._text_meta = _metadata("scalars"), _metadata("text")
        record = {
            "model": to_dict(run.lm.config),
            "train": to_dict(run.train_config),
            "tokenizer": {"kind": run.lm.tokenizer.kind, "vocab_size": run.lm.tokenizer.vocab_size},
        }
        self.add_text("run/config", "```\n" + json.dumps(record, indent=2) + "\n```", 0)

    def on_step_end(self, run, step, logs):
        self._write_pending_row()
        self._interval.append(logs)
        if step % self.every == 0:
            self._write_interval(step)

    def on_epoch_end(self, run, epoch, row):
        self._write_interval(row["step"])
        # Observers later in the list may still add columns to ``row`` (the same dict);
        # it is written at the next step or at the end of training.
        self._pending_row = row

    def on_train_end(self, run, summary):
        self._write_pending_row()
        self.close()

    def add_text(self, tag: str, text: str, step: int):
        """A text summary (markdown) at ``step``; used for generated samples."""
        if self.writer is None:
            return
        with self.writer.as_default():
            tf.summary.write(tag, tf.constant(text), step=step, metadata=self._text_meta)

    def add_scalars(self, values: dict, step: int):
        """Scalars ``{tag: number}`` at ``step``."""
        if self.writer is None:
            return
        with self.writer.as_default():
            for tag, value in values.items():
                tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=self._scalar_meta)

    def close(self):
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None

    def _write_interval(self, step):
        logs, self._interval = self._interval, []
        if not logs:
            return
        n = len(logs)
        self.add_scalars({
            "loss/train": sum(l["loss"] for l in logs) / n,
            "optim/grad_norm": sum(l["grad_norm"] for l in logs) / n,
            "optim/clip_fraction": sum(bool(l["clipped"]) for l in logs) / n,
            "optim/learning_rate": logs[-1]["lr"],
            "speed/tokens_per_s": logs[-1]["tokens_per_s"],
        }, step)

    def _write_pending_row(self):
        row, self._pending_row = self._pending_row, None
        if row is None:
            return
        values = {tag: row[key] for key, tag in EPOCH_TAGS.items() if key in row}
        for key, value in row.items():
            if key not in HISTORY_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
                values[f"metrics/{key}"] = value
        self.add_scalars(values, row["step"])
        self.writer.flush()
