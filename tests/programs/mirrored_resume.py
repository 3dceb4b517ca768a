"""Train under MirroredStrategy over two logical CPU devices: once for STEPS steps, and once
stopped at STEPS // 2 (--max-steps) and resumed to STEPS; print both runs' per-step losses
and the replica count as JSON.

Run as a separate process: logical devices must be configured before TensorFlow starts.
Usage: python mirrored_resume.py CORPUS OUT_DIR STEPS
"""

import json
import sys
from pathlib import Path

from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import charlm  # noqa: E402
from charlm.training.observers import Observer  # noqa: E402

corpus, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
# A constant rate: the run resumed with a larger --max-steps then takes the whole run's steps.
SETTINGS = dict(cell="lstm", layers=2, hidden=32, embedding=16, dropout=0.0, batch_size=8, bptt=16, lr=0.01,
                lr_schedule="constant", clipnorm=0.1, val_fraction=0.1, seed=0, strategy="mirrored",
                checkpoint_every=0)


class Losses(Observer):
    def __init__(self):
        self.losses = {}

    def on_step_end(self, run, step, logs):
        self.losses[step] = logs["loss"]

    def on_train_begin(self, run):
        self.replicas = run.steps.replicas


def train(observer, **settings):
    return charlm.train(progress=False, log=lambda line: None, observers=[observer], **settings)


whole, first, rest = Losses(), Losses(), Losses()
summary = train(whole, corpus=corpus, out=out / "whole", max_steps=steps, **SETTINGS)
train(first, corpus=corpus, out=out / "split", max_steps=steps // 2, **SETTINGS)
resumed = train(rest, resume=out / "split", max_steps=steps)
print(json.dumps({
    "replicas": whole.replicas,
    "whole": [whole.losses[k] for k in sorted(whole.losses)],
    "split": [{**first.losses, **rest.losses}[k] for k in sorted({**first.losses, **rest.losses})],
    "val": [summary["best_val_loss"], resumed["best_val_loss"]],
}))
