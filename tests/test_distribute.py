"""Training under tf.distribute means the same as on one device.

No accelerator here: two logical CPU devices stand in for two replicas.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROGRAMS = Path(__file__).parent / "programs"


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_two_replicas_match_one_device_with_binding_clip(cell, tiny_corpus):
    steps = 12
    result = subprocess.run(
        [sys.executable, str(PROGRAMS / "replica_equivalence.py"), str(tiny_corpus), cell, "0.1", str(steps)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = runs["one"], runs["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    # The clip binds: the gradient norm is above 0.1 at every step.
    assert min(one["norms"]) > 0.1
    # float32 sums in a different order: agreement to ~1e-5 relative, not bit for bit.
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4)
    np.testing.assert_allclose(two["norms"], one["norms"], rtol=1e-3)
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-4)
    for a, b in zip(one["weights"], two["weights"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-3, atol=1e-4)
    # Replica r carried the states of streams r*b..(r+1)*b: same states, same order.
    for a, b in zip(one["states"], two["states"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_a_run_under_mirrored_strategy_resumes_exactly(tiny_corpus, tmp_path):
    """Two replicas, stopped half way and resumed: every step's loss as in one uninterrupted run
    (each replica's block of stream states comes back from the checkpoint to the same replica)."""
    result = subprocess.run(
        [sys.executable, str(PROGRAMS / "mirrored_resume.py"), str(tiny_corpus), str(tmp_path), "40"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["replicas"] == 2 and len(runs["whole"]) == len(runs["split"]) == 40
    assert runs["split"] == runs["whole"]
    assert runs["val"][1] == runs["val"][0]


def test_jit_compiled_step_matches_the_plain_step(tiny_corpus):
    """The TPU path compiles the training step with XLA; on CPU the same step must agree."""
    from charlm.runtime import import_keras

    keras = import_keras()
    from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
    from charlm.data.prepare import prepare
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    model_config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, clipnorm=0.5, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    keras.utils.set_random_seed(3)
    initial = build_model(model_config, data.tokenizer.vocab_size).get_weights()

    def run(jit):
        model = build_model(model_config, data.tokenizer.vocab_size)
        model.set_weights(initial)
        trainer = CompiledSteps(model, model_config, train_config, jit_compile=jit)
        states = trainer.zero_states(4)
        losses = []
        for x, y in trainer.windows(data.train, 0, 4):
            loss, _, states = trainer.train_step(x, y, states)
            losses.append(float(loss))
        return losses, model.get_weights()

    plain_losses, plain_weights = run(False)
    jit_losses, jit_weights = run(True)
    np.testing.assert_allclose(jit_losses, plain_losses, rtol=1e-5)
    for a, b in zip(plain_weights, jit_weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_dropout_masks_drawn_outside_the_compiled_step_match_the_keras_layers(tiny_corpus):
    """With dropout the trainer draws the masks before its (XLA-compiled) step: the same masks
    the model's own Dropout layers draw from the same random state, so the losses agree with
    training the plain Keras model, compiled or not."""
    from charlm.runtime import import_keras

    keras = import_keras()
    from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
    from charlm.data.prepare import prepare
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    model_config = ModelConfig(cell="gru", layers=2, hidden=16, embedding=8, dropout=0.3)
    train_config = TrainConfig(batch_size=4, bptt=16, clipnorm=0.5, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)

    def run(fast, jit):
        keras.utils.set_random_seed(3)  # the same weights and dropout seeds in every run
        model = build_model(model_config, data.tokenizer.vocab_size)
        trainer = CompiledSteps(model, model_config, train_config, charlm_kernels=fast, jit_compile=jit)
        states = trainer.zero_states(4)
        losses = []
        for x, y in trainer.windows(data.train, 0, 4):
            loss, _, states = trainer.train_step(x, y, states)
            losses.append(float(loss))
        return losses

    keras_losses = run(fast=False, jit=False)
    plain_losses = run(fast=True, jit=False)
    jit_losses = run(fast=True, jit=True)
    np.testing.assert_allclose(plain_losses, keras_losses, rtol=1e-5)
    np.testing.assert_allclose(jit_losses, keras_losses, rtol=1e-5)

    from charlm.nn.forward import dropout_masks

    masks = dropout_masks(build_model(model_config, data.tokenizer.vocab_size), model_config,
                          np.zeros((4, 16), dtype="int32"))
    assert [m.shape for m in masks] == [(4, 16, 8), (4, 16, 16), (4, 16, 16)]
    values = np.concatenate([np.ravel(m) for m in masks])
    assert set(np.unique(values)) == {0.0, np.float32(1 / 0.7)}
    assert 0.2 < np.mean(values == 0) < 0.4  # about the rate dropped


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_forward_with_drawn_masks_equals_the_dropout_layers_own_draw(policy):
    """x * mask, with the masks drawn first, is bit for bit what the Dropout layers give from
    the same random state, also in the compute dtype of mixed precision."""
    import tensorflow as tf

    from charlm.runtime import import_keras

    keras = import_keras()
    from charlm.config import ModelConfig
    from charlm.nn.forward import dropout_masks, make_forward
    from charlm.nn.model import build_model

    config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.3)
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(4)
        model = build_model(config, 11)
        forward = make_forward(model, config, charlm_kernels=True)
        tokens = tf.constant(np.random.default_rng(0).integers(0, 11, (3, 5)), tf.int32)
        states = [tf.zeros((3, 16))] * 4
        generators = [layer.seed_generator.state for layer in model.layers if "dropout" in layer.name]
        start = [g.numpy() for g in generators]
        by_layers, _ = forward(tokens, states, True)
        for g, value in zip(generators, start):
            g.assign(value)
        with_masks, _ = forward(tokens, states, True, dropout_masks(model, config, tokens))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert len(generators) == 3
    np.testing.assert_array_equal(with_masks.numpy(), by_layers.numpy())


def test_validation_compiled_with_xla_matches_the_keras_model(tiny_corpus):
    """At 128 units and more the trainer's validation runs forward-only kernels under XLA."""
    from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
    from charlm.data.prepare import prepare
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    model_config = ModelConfig(cell="gru", layers=1, hidden=128, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, val_fraction=0.05)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    model = build_model(model_config, data.tokenizer.vocab_size)
    compiled = CompiledSteps(model, model_config, train_config)
    assert compiled._replica_eval_fn is not compiled._replica_eval  # the XLA-compiled path
    keras_path = CompiledSteps(model, model_config, train_config, charlm_kernels=False)
    assert compiled.evaluate(data.validation) == pytest.approx(keras_path.evaluate(data.validation), rel=1e-5)


def test_fast_forward_equals_the_keras_model(tiny_model_path):
    """The training forward pass (hand-written kernels) computes what the saved model computes."""
    import charlm
    from charlm.nn.forward import make_forward

    lm = charlm.load(tiny_model_path)
    tokens = lm.tokenizer.encode("the keys to the cabinet are here .\nthe key")[None, :]
    states = lm.zero_states(1)
    expected, expected_states = lm.logits(tokens, states)
    logits, new_states = make_forward(lm.model, lm.config, charlm_kernels=True)(tokens, states, False)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    for a, b in zip(expected_states, new_states):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-5)


def test_several_steps_per_execution_equal_single_steps(tiny_corpus):
    from charlm.runtime import import_keras

    keras = import_keras()
    from charlm.config import ModelConfig, TokenizerConfig, TrainConfig
    from charlm.data.prepare import prepare
    from charlm.nn.model import build_model
    from charlm.training.steps import CompiledSteps

    model_config = ModelConfig(cell="gru", layers=1, hidden=16, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=16, val_fraction=0.1)
    data = prepare([tiny_corpus], TokenizerConfig(), train_config)
    keras.utils.set_random_seed(5)
    initial = build_model(model_config, data.tokenizer.vocab_size).get_weights()

    def trainer():
        model = build_model(model_config, data.tokenizer.vocab_size)
        model.set_weights(initial)
        return CompiledSteps(model, model_config, train_config)

    single = trainer()
    states, single_losses = single.zero_states(4), []
    for x, y in single.windows(data.train, 0, 6):
        loss, _, states = single.train_step(x, y, states)
        single_losses.append(float(loss))
    multi = trainer()
    iterator = iter(multi.windows(data.train, 0, 6))
    states = multi.zero_states(4)
    losses_a, _, states = multi.train_steps(iterator, states, 4)
    losses_b, _, states = multi.train_steps(iterator, states, 2)
    np.testing.assert_allclose(np.concatenate([losses_a, losses_b]), single_losses, rtol=1e-5)
    for a, b in zip(single.model.get_weights(), multi.model.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _steps(run_dir):
    """Per-step losses from steps.csv; a resumed run's later line for a step wins."""
    import csv

    with open(run_dir / "steps.csv") as f:
        losses = {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}
    assert sorted(losses) == list(range(1, len(losses) + 1))
    return [losses[step] for step in sorted(losses)]


MULTI_WORKER_FLAGS = ["--cell", "gru", "--layers", "1", "--hidden", "32", "--embedding", "16", "--batch-size", "8",
                      "--bptt", "32", "--val-fraction", "0.1", "--quiet", "--json"]


def _two_workers(tmp_path, worker_args) -> list[dict]:
    """Runs ``charlm train`` as worker 0 (the chief) and worker 1 of a MultiWorkerMirroredStrategy
    cluster on 127.0.0.1, with ``worker_args[i]`` for worker i; returns their JSON summaries.
    Both processes are killed if anything goes wrong."""
    import os

    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    processes = []
    try:
        for index, args in enumerate(worker_args):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "charlm", "train", "--strategy", "multi-worker", *args, *MULTI_WORKER_FLAGS],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:  # never leave a worker behind, whatever happened
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-2000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


def _one_process(tiny_corpus, out, steps) -> dict:
    result = subprocess.run([sys.executable, "-m", "charlm", "train", str(tiny_corpus), "--out", str(out),
                             "--max-steps", str(steps), *MULTI_WORKER_FLAGS],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_worker_processes_match_one_process(tiny_corpus, tmp_path):
    """MultiWorkerMirroredStrategy, two workers on 127.0.0.1: same losses as one process
    with the same global batch; only the chief writes its run directory."""
    chief, _ = _two_workers(tmp_path, [[str(tiny_corpus), "--out", str(tmp_path / f"worker{i}"), "--max-steps", "200"]
                                       for i in range(2)])
    alone = _one_process(tiny_corpus, tmp_path / "single", 200)
    assert chief["steps"] == alone["steps"] == 200
    np.testing.assert_allclose(_steps(tmp_path / "worker0"), _steps(tmp_path / "single"), rtol=1e-4)
    assert chief["best_val_loss"] == pytest.approx(alone["best_val_loss"], rel=1e-5)
    assert (tmp_path / "worker0" / "model.keras").exists()
    assert not (tmp_path / "worker1" / "model.keras").exists()  # the non-chief wrote nothing


@pytest.mark.slow
def test_two_workers_stopped_and_resumed_match_one_uninterrupted_process(tiny_corpus, tmp_path):
    """Resume under MultiWorkerMirroredStrategy: both workers stop at step 70 (mid-epoch, so
    the carried states of every stream matter), then resume from the chief's checkpoint
    (a shared disk) to step 150; the losses match one uninterrupted process."""
    run = tmp_path / "run"
    _two_workers(tmp_path, [[str(tiny_corpus), "--out", str(out), "--max-steps", "70"]
                            for out in (run, tmp_path / "scratch")])
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").glob("checkpoints/*"))
    chief, _ = _two_workers(tmp_path, [["--resume", str(run), "--max-steps", "150"]] * 2)
    alone = _one_process(tiny_corpus, tmp_path / "single", 150)
    assert chief["steps"] == alone["steps"] == 150
    np.testing.assert_allclose(_steps(run), _steps(tmp_path / "single"), rtol=1e-4)
    assert chief["best_val_loss"] == pytest.approx(alone["best_val_loss"], rel=1e-5)
