"""GPU check for charlm: the cuDNN path, one training step against the CPU, and speed.

Run on a machine with a GPU:  python scripts/gpu_check.py [--json]

1. Asserts that LSTM and GRU layers built as charlm builds them run on cuDNN
   (``use_cudnn=True`` raises where the configuration is not eligible, instead of
   silently running the generic loop ~10x slower).
2. Runs one training step (same initial weights, same window) on the GPU and on
   the CPU and compares the losses and the updated weights.
   The same for a model with tied output weights (its output computed by charlm, not Keras).
3. Prints training tokens/s for 2x256 and 2x1024 LSTMs (E=64, V=65, B=64, T=64), for the
   word-level recipes of docs/training.md (2x650 and 2x1500, V=33,278, B=20, T=35, untied and
   tied) and sampling chars/s (one stream and 64 streams).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402

from charlm.config import ModelConfig, TrainConfig  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402
from charlm.training.steps import CompiledSteps  # noqa: E402

V, E, B, T = 65, 64, 64, 64


def check_cudnn():
    """Each cell type, with use_cudnn=True, runs forward and backward on the GPU."""
    x = tf.random.uniform((8, 16, 32))
    for layer_type in (keras.layers.LSTM, keras.layers.GRU):
        layer = layer_type(64, return_sequences=True, return_state=True, use_cudnn=True)
        with tf.GradientTape() as tape:
            out = layer(x)[0]
        tape.gradient(tf.reduce_sum(out), layer.trainable_variables)
    return True


def one_step(device, initial, model_config, x, y):
    with tf.device(device):
        model = build_model(model_config, V)
        model.set_weights(initial)
        trainer = CompiledSteps(model, model_config, TrainConfig(batch_size=B, bptt=T), charlm_kernels=device.startswith("/CPU"))
        loss, norm, _ = trainer.train_step(x, y, trainer.zero_states(B))
        return float(loss), float(norm), model.get_weights()


def training_speed(hidden, seconds=10.0, embedding=E, vocab=V, batch=B, bptt=T, tie_weights=False):
    model_config = ModelConfig(cell="lstm", layers=2, hidden=hidden, embedding=embedding, tie_weights=tie_weights)
    model = build_model(model_config, vocab)
    trainer = CompiledSteps(model, model_config, TrainConfig(batch_size=batch, bptt=bptt, optimizer="sgd", lr=20.0,
                                                             clipnorm=0.25))
    x = tf.random.uniform((batch, bptt), 0, vocab, tf.int32)
    states = trainer.zero_states(batch)
    for _ in range(3):  # compile and warm up
        _, _, states = trainer.train_step(x, x, states)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss, _, states = trainer.train_step(x, x, states)
        steps += 1
    float(loss)
    return steps * batch * bptt / (time.perf_counter() - start)


def sampling_speed():
    from charlm.nn.lm import LanguageModel
    from charlm.data.tokenizers import CharTokenizer

    model_config = ModelConfig(cell="lstm", layers=2, hidden=256, embedding=E)
    tokenizer = CharTokenizer.build("".join(chr(32 + i) for i in range(V - 2)))
    lm = LanguageModel(build_model(model_config, tokenizer.vocab_size), tokenizer, model_config)
    out = {}
    for n in (1, 64):
        lm.generate(length=200, num_samples=n, seed=0)  # compile
        start = time.perf_counter()
        lm.generate(length=2000, num_samples=n, seed=1)
        out[f"sample_chars_per_s_batch{n}"] = n * 2000 / (time.perf_counter() - start)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        sys.exit("gpu_check: TensorFlow sees no GPU here")
    report = {"gpu": tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])}
    report["cudnn"] = check_cudnn()
    x = tf.random.uniform((B, T), 0, V, tf.int32, seed=1)
    y = tf.random.uniform((B, T), 0, V, tf.int32, seed=2)
    for suffix, tie_weights in (("", False), ("_tied", True)):
        model_config = ModelConfig(cell="lstm", layers=2, hidden=256, embedding=E, tie_weights=tie_weights)
        keras.utils.set_random_seed(0)
        initial = build_model(model_config, V).get_weights()
        gpu_loss, gpu_norm, gpu_weights = one_step(gpus[0].name, initial, model_config, x, y)
        cpu_loss, cpu_norm, cpu_weights = one_step("/CPU:0", initial, model_config, x, y)
        report[f"step_loss_gpu_cpu{suffix}"] = [gpu_loss, cpu_loss]
        diff = max(float(np.abs(a - b).max()) for a, b in zip(gpu_weights, cpu_weights))
        report[f"step_max_weight_diff{suffix}"] = diff
        assert abs(gpu_loss - cpu_loss) < 1e-3 * abs(cpu_loss), report
        assert diff < 1e-3, report
    report["train_tokens_per_s_2x256"] = training_speed(256)
    report["train_tokens_per_s_2x1024"] = training_speed(1024)
    for hidden in (650, 1500):  # the word-level recipes: WikiText-2's 33,278 words, B=20, T=35
        for tie_weights in (False, True):
            key = f"train_tokens_per_s_word_2x{hidden}_v33278{'_tied' if tie_weights else ''}"
            report[key] = training_speed(hidden, embedding=hidden, vocab=33_278, batch=20, bptt=35,
                                         tie_weights=tie_weights)
    report.update(sampling_speed())
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
