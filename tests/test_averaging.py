"""Weight averaging (charlm.training.averaging, --ema): the averages against a NumPy
recomputation of their definition over the raw weights recorded after every step, the swap
that puts them into the model and restores the raw weights bit for bit, and a run whose
validation, best model and model.keras use them. (Exact resume with --ema and its refusal to
change on resume: test_resume.py; under two replicas: test_distribute.py.)"""

import json
import math

import numpy as np
import pytest

from charlm.runtime import import_keras

keras = import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

import charlm  # noqa: E402
from charlm.config import ModelConfig, TokenizerConfig, TrainConfig  # noqa: E402
from charlm.data.prepare import prepare  # noqa: E402
from charlm.nn.model import build_model  # noqa: E402
from charlm.training.averaging import ema_decay  # noqa: E402
from charlm.training.checkpoint import list_checkpoints, read_arrays, read_state  # noqa: E402
from charlm.training.steps import CompiledSteps  # noqa: E402
from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke  # noqa: E402


def test_the_decay_warms_up_as_tensorflow_num_updates_does():
    """d_k = min(DECAY, (1 + n) / (10 + n)) with n = k - 1 updates before this one."""
    assert ema_decay(0.999, 1) == pytest.approx(1 / 10)
    assert ema_decay(0.999, 9) == pytest.approx(9 / 18)
    assert ema_decay(0.999, 991) == pytest.approx(991 / 1000)
    assert ema_decay(0.999, 8991) == pytest.approx(0.999)  # where the warm start reaches the decay
    assert ema_decay(0.999, 10**6) == 0.999
    assert ema_decay(0.5, 8) == pytest.approx(8 / 17) and ema_decay(0.5, 9) == 0.5
    # The initial weights' share of the average after k steps, the product of d_1..d_k, is 9! k! / (k + 9)!:
    # below 1e-5 from step 11 (docs/training.md).
    share = np.cumprod([ema_decay(0.999, k) for k in range(1, 13)])
    np.testing.assert_allclose(share, [math.factorial(9) * math.factorial(k) / math.factorial(k + 9)
                                       for k in range(1, 13)], rtol=1e-12)
    assert share[9] > 1e-5 > share[10]


def _train_recording(model_config, train_config, steps, jit, vocab=23):
    """``steps`` training steps on random windows; the raw trainable weights before the
    first and after every step (float64), and the trainer."""
    keras.utils.set_random_seed(4)
    model = build_model(model_config, vocab)
    trainer = CompiledSteps(model, model_config, train_config, jit_compile=jit)
    rng = np.random.default_rng(4)
    raw = [[v.numpy().astype(np.float64) for v in model.trainable_variables]]
    states = trainer.zero_states(train_config.batch_size)
    for _ in range(steps):
        x, y = (tf.constant(rng.integers(0, vocab, (train_config.batch_size, train_config.bptt)), tf.int32)
                for _ in range(2))
        _, _, states = trainer.train_step(x, y, states)
        raw.append([v.numpy().astype(np.float64) for v in model.trainable_variables])
    return raw, trainer


def _numpy_average(raw, decay):
    """The definition: a_0 = w_0, a_k = d_k a_(k-1) + (1 - d_k) w_k."""
    average = raw[0]
    for k in range(1, len(raw)):
        d = ema_decay(decay, k)
        average = [d * a + (1 - d) * w for a, w in zip(average, raw[k])]
    return average


@pytest.mark.parametrize("decay,jit", [
    (0.5, False),  # the warm start for 8 steps, then the cap
    pytest.param(0.5, True, marks=pytest.mark.slow),  # compiled with XLA
    pytest.param(0.999, True, marks=pytest.mark.slow),  # warm start throughout
])
def test_the_averages_are_the_moving_average_of_the_recorded_weights(decay, jit):
    model_config = ModelConfig(cell="lstm", layers=2, hidden=16, embedding=8)
    train_config = TrainConfig(batch_size=4, bptt=8, lr=0.05, ema=decay)
    raw, trainer = _train_recording(model_config, train_config, 12, jit)
    expected = _numpy_average(raw, decay)
    got = trainer.average.values()
    assert len(got) == len(expected) == len(trainer.model.trainable_variables)
    for g, e, w in zip(got, expected, raw[-1]):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-6)
    # The average is not the last weights (it would be with the decay ignored).
    assert max(np.max(np.abs(e - w)) for e, w in zip(expected, raw[-1])) > 1e-3


def test_the_swap_puts_the_averages_in_and_restores_the_raw_weights_exactly():
    model_config = ModelConfig(cell="gru", layers=1, hidden=16, embedding=8)
    raw, trainer = _train_recording(model_config, TrainConfig(batch_size=4, bptt=8, lr=0.05, ema=0.9), 3, False)
    variables = trainer.model.trainable_variables
    before = [v.numpy() for v in trainer.model.variables]
    averages = trainer.average.values()
    with trainer.averaged_weights():
        for v, a in zip(variables, averages):
            assert np.array_equal(v.numpy(), a)
        assert not all(np.array_equal(v.numpy(), b) for v, b in zip(variables, raw[-1]))
    after = [v.numpy() for v in trainer.model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(after, before))  # bit for bit, every variable


def test_without_ema_there_is_no_average_and_no_swap():
    model_config = ModelConfig(cell="gru", layers=1, hidden=16, embedding=8)
    _, trainer = _train_recording(model_config, TrainConfig(batch_size=4, bptt=8, lr=0.05), 1, False)
    assert trainer.average is None
    before = [v.numpy() for v in trainer.model.variables]
    with trainer.averaged_weights():
        assert all(np.array_equal(v.numpy(), b) for v, b in zip(trainer.model.variables, before))


# ---- in a run ---------------------------------------------------------------------------------

SETTINGS = dict(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.0, batch_size=8, bptt=32, epochs=3, lr=0.01,
                lr_schedule="constant", val_fraction=0.1, seed=3, checkpoint_every=0, keep=5, ema=0.9)


@pytest.mark.slow  # trains
def test_validation_the_best_model_and_model_keras_use_the_averages(tmp_path):
    """Three epochs with a checkpoint after each validation: model.keras holds exactly the
    averages of the checkpoint at its step; its validation loss is the history's; the raw
    weights of that checkpoint validate differently."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    lines = []
    summary = charlm.train(corpus, tmp_path / "run", progress=False, log=lines.append, **SETTINGS)
    assert any("weights averaged (--ema 0.9)" in line for line in lines), lines
    lm = charlm.load(tmp_path / "run" / "model.keras")
    best = lm.info["step"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    row = next(r for r in history if r["step"] == best)
    assert row["saved"] and row["val_loss"] == summary["best_val_loss"]
    checkpoint = next(p for p in list_checkpoints(tmp_path / "run") if read_state(p)["position"]["step"] == best)
    arrays = read_arrays(checkpoint)
    averages = [arrays[f"averages/{i}/.ATTRIBUTES/VARIABLE_VALUE"] for i in range(len(lm.model.trainable_variables))]
    for variable, average in zip(lm.model.trainable_variables, averages):
        assert np.array_equal(variable.numpy(), average), variable.path

    model_config, train_config = ModelConfig(**{k: SETTINGS[k] for k in ("cell", "layers", "hidden", "embedding")}), \
        TrainConfig(batch_size=8, bptt=32, val_fraction=0.1)
    data = prepare([corpus], TokenizerConfig(), train_config)
    saved = CompiledSteps(lm.model, model_config, train_config).evaluate(data.validation)
    assert saved == pytest.approx(row["val_loss"], rel=1e-6)
    raw_model = build_model(model_config, data.tokenizer.vocab_size)
    for j, variable in enumerate(raw_model.variables):
        variable.assign(arrays[f"model/{j}/.ATTRIBUTES/VARIABLE_VALUE"])
    raw = CompiledSteps(raw_model, model_config, train_config).evaluate(data.validation)
    assert abs(raw - row["val_loss"]) > 1e-3  # the averages, not the raw weights, were validated


@pytest.mark.parametrize("flags,fragment", [
    (["--ema", "1"], "--ema must be a decay between 0 and 1"),
    (["--ema", "0"], "--ema must be a decay between 0 and 1"),
    (["--ema", "-0.5"], "--ema must be a decay between 0 and 1"),
    (["--ema", "nan"], "--ema must be a decay between 0 and 1"),
])
def test_bad_ema_values_are_one_line(flags, fragment, tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", *flags), fragment)
    assert not (tmp_path / "o").exists()

