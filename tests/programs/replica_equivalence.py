"""Train the same model for a few steps on one device and on two logical CPU devices
(MirroredStrategy), and print both runs' per-step losses, final weights and weight averages
(--ema 0.9) as JSON.

Run as a separate process: logical devices must be configured before TensorFlow starts.
Usage: python replica_equivalence.py CORPUS CELL CLIPNORM STEPS
"""

import json
import sys

import numpy as np

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from charlm.config import ModelConfig, TokenizerConfig, TrainConfig  # noqa: E402
from charlm.data.prepare import prepare  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402
from charlm.training.steps import CompiledSteps  # noqa: E402

corpus, cell, clipnorm, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
model_config = ModelConfig(cell=cell, layers=2, hidden=32, embedding=16)
train_config = TrainConfig(batch_size=8, bptt=16, clipnorm=clipnorm, val_fraction=0.1, lr=0.01, ema=0.9)
data = prepare([corpus], TokenizerConfig(), train_config)
keras.utils.set_random_seed(0)
initial = build_model(model_config, data.tokenizer.vocab_size).get_weights()


def run(strategy):
    with strategy.scope():
        model = build_model(model_config, data.tokenizer.vocab_size)
        model.set_weights(initial)
    trainer = CompiledSteps(model, model_config, train_config, strategy)
    states = trainer.zero_states(train_config.batch_size)
    losses, norms = [], []
    for x, y in trainer.windows(data.train, 0, steps):
        loss, norm, states = trainer.train_step(x, y, states)
        losses.append(float(loss))
        norms.append(float(norm))
    return {
        "losses": losses, "norms": norms, "val_loss": trainer.evaluate(data.validation),
        "weights": [w.tolist() for w in model.get_weights()],
        "averages": [a.tolist() for a in trainer.average.values()],
        # Each replica's copy of each average: the same values on every replica.
        "average_copies": [len(copies) if all(np.array_equal(c, copies[0]) for c in copies) else -1
                           for copies in ([np.asarray(c) for c in strategy.experimental_local_results(a)]
                                          for a in trainer.average.averages)],
        "replicas": strategy.num_replicas_in_sync,
        "states": [s.tolist() for s in trainer.states_to_numpy(states)],
    }


one = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
two = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps({"one": one, "two": two}))
