"""Training: every cell learns, runs are reproducible, and the model file stands alone."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import charlm
from tests.helpers import TINY


def _quiet_train(corpus, out, **settings):
    return charlm.train(corpus, out, progress=False, log=lambda line: None, **{**TINY, **settings})


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_each_cell_learns_on_the_bundled_corpus(cell, tiny_corpus, tmp_path):
    summary = _quiet_train(tiny_corpus, tmp_path / cell, cell=cell, epochs=2, max_steps=None, batch_size=32)
    history = json.loads((tmp_path / cell / "history.json").read_text())
    uniform = np.log(summary["vocab_size"])
    assert len(history) == 2
    # Well below a uniform guess after one epoch (~50 steps), and still falling in the second.
    assert history[0]["val_loss"] < 0.8 * uniform
    assert history[1]["val_loss"] < history[0]["val_loss"]
    assert history[1]["train_loss"] < history[0]["train_loss"]


def test_run_directory_contents(tiny_run):
    from pathlib import Path

    run = Path(tiny_run["run_dir"])
    assert {"model.keras", "history.csv", "history.json", "config.json"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["cell"] == "lstm" and config["train"]["bptt"] == TINY["bptt"]
    assert len(config["corpus"]["sha256"]) == 64
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val_bits_per_char" in header
    for key in ("model_path", "best_val_loss", "best_val_bits_per_char", "steps", "tokens_per_s"):
        assert key in tiny_run
    assert tiny_run["steps"] == TINY["max_steps"]
    assert tiny_run["best_val_bits_per_char"] == pytest.approx(tiny_run["best_val_loss"] / np.log(2))


def test_same_seed_same_losses(tiny_corpus, tmp_path, tiny_run):
    again = _quiet_train(tiny_corpus, tmp_path / "again")
    assert again["best_val_loss"] == tiny_run["best_val_loss"]
    assert again["final_train_loss"] == tiny_run["final_train_loss"]


def test_fresh_process_load_gives_identical_logits(tiny_model_path, tmp_path):
    lm = charlm.load(tiny_model_path)
    tokens = lm.tokenizer.encode("the keys to the cabinet are on the table .\n")[None, :]
    logits, _ = lm.logits(tokens)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "expected.npy", logits.numpy())
    # Only the .keras file, in a fresh interpreter, with plain Keras loading it.
    lonely = tmp_path / "alone" / "model.keras"
    lonely.parent.mkdir()
    lonely.write_bytes(tiny_model_path.read_bytes())
    script = textwrap.dedent(f"""
        import numpy as np, charlm, keras
        model = keras.saving.load_model({str(lonely)!r})
        tokens = np.load({str(tmp_path / "tokens.npy")!r})
        states = [np.zeros((1, t.shape[-1]), "float32") for t in model.inputs[1:]]
        logits = model([tokens, *states])[0].numpy()
        expected = np.load({str(tmp_path / "expected.npy")!r})
        assert np.array_equal(logits, expected), np.abs(logits - expected).max()
        lm = charlm.load({str(lonely)!r})
        assert lm.tokenizer.kind == "char" and lm.config.cell == "lstm"
        print("identical")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=tmp_path / "alone", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "identical" in result.stdout


def test_clipping_modes_differ_when_clipping_binds(tiny_corpus, tmp_path):
    tight = dict(clipnorm=0.05, max_steps=5)
    global_run = _quiet_train(tiny_corpus, tmp_path / "g", clip_mode="global", **tight)
    tensor_run = _quiet_train(tiny_corpus, tmp_path / "t", clip_mode="per-tensor", **tight)
    assert global_run["final_train_loss"] != tensor_run["final_train_loss"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gpu_models_insist_on_cudnn_and_their_files_load_anywhere(cell, tmp_path):
    """On a GPU the layers are built with use_cudnn=True: no cuDNN (here, a CPU) fails loudly
    instead of falling back to the slow loop; the saved file has Keras' default, "auto"."""
    import tensorflow as tf

    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel, load
    from charlm.nn.model import build_model, recurrent_layers
    from charlm.data.tokenizers import CharTokenizer

    config = ModelConfig(cell=cell, layers=2, hidden=8, embedding=4)
    tokenizer = CharTokenizer.build("abc")
    model = build_model(config, tokenizer.vocab_size, on_gpu=True)
    assert [layer.use_cudnn for layer in recurrent_layers(model)] == [True, True]
    inputs = [tf.zeros((2, 5), tf.int32), *[tf.zeros((2, 8))] * (2 * config.states_per_layer)]
    with pytest.raises(ValueError, match="cuDNN is not supported"):
        model(inputs)
    loaded = load(LanguageModel(model, tokenizer, config).save(tmp_path / "gpu.keras"))
    assert [layer.use_cudnn for layer in recurrent_layers(loaded.model)] == ["auto", "auto"]
    assert loaded.model(inputs)[0].shape == (2, 5, tokenizer.vocab_size)


def test_learning_rate_schedules():
    from charlm.config import TrainConfig
    from charlm.training.schedule import scheduled_lr

    def rates(schedule):
        return [scheduled_lr(TrainConfig(lr=0.1, lr_schedule=schedule), step, 100) for step in range(100)]

    assert rates("constant") == [0.1] * 100
    linear, cosine = rates("linear"), rates("cosine")
    assert linear[0] == cosine[0] == 0.1 and linear[50] == pytest.approx(0.05) == cosine[50]
    assert linear[-1] == pytest.approx(0.001) and 0 < cosine[-1] < 1e-4
    assert all(a > b for a, b in zip(cosine, cosine[1:])) and all(a > b for a, b in zip(linear, linear[1:]))
    assert cosine[25] > linear[25] and cosine[75] < linear[75]  # slow, fast, slow


def test_a_late_decay_start_keeps_the_full_rate_first():
    from charlm.config import TrainConfig
    from charlm.training.schedule import scheduled_lr

    config = TrainConfig(lr=0.1, lr_schedule="linear", lr_decay_start=0.8)
    rates = [scheduled_lr(config, step, 100) for step in range(100)]
    assert rates[:81] == [0.1] * 81
    assert rates[90] == pytest.approx(0.05) and rates[99] == pytest.approx(0.005)
