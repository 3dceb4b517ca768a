"""`charlm train --tensorboard DIR --sample-every N`: event files with the expected tags, read
back with TensorFlow's summary iterator; samples printed, logged and seeded; the per-step log."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers import assert_one_line_error, invoke

STEPS = 20
FLAGS = ["--cell", "gru", "--layers", "1", "--hidden", "24", "--embedding", "8", "--batch-size", "8",
         "--bptt", "16", "--epochs", "2", "--max-steps", str(STEPS), "--val-fraction", "0.1", "--seed", "3",
         "--clipnorm", "0.05", "--dropout", "0", "--lr-schedule", "constant"]


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory, tiny_corpus):
    out = tmp_path_factory.mktemp("monitored")
    result = invoke("train", tiny_corpus, "--out", out / "run", "--tensorboard", out / "tb",
                    "--sample-every", "10", "--sample-length", "30", "--sample-prompt", "The ", *FLAGS)
    assert result.exit_code == 0, result.output
    return out, result


def read_events(log_dir):
    """{tag: [(step, value), ...]} and {tag: plugin name} from every event file under log_dir."""
    import tensorflow as tf

    values, plugins = {}, {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                values.setdefault(value.tag, []).append((event.step, array.item()))
                plugins[value.tag] = value.metadata.plugin_data.plugin_name
    return values, plugins


@pytest.mark.slow  # trains (the module's run)
def test_event_files_hold_scalars_and_samples(monitored_run):
    out, _ = monitored_run
    values, plugins = read_events(out / "tb")
    for tag in ("loss/train", "optim/grad_norm", "optim/clip_fraction", "optim/learning_rate",
                "speed/tokens_per_s"):
        assert plugins[tag] == "scalars"
        assert [step for step, _ in values[tag]] == [10, 20], tag  # every 10 steps
    for tag in ("loss/train_epoch", "loss/val", "bits_per_char/val", "perplexity/val"):
        assert [step for step, _ in values[tag]] == [STEPS], tag  # one epoch (max steps reached)
    history = json.loads((out / "run" / "history.json").read_text())
    assert values["loss/val"][0][1] == pytest.approx(history[0]["val_loss"], rel=1e-6)
    assert values["bits_per_char/val"][0][1] == pytest.approx(history[0]["val_bits_per_char"], rel=1e-6)
    # A tiny clip threshold: the gradient norm exceeds it on every step.
    assert all(v == 1.0 for _, v in values["optim/clip_fraction"])
    assert all(v == pytest.approx(2e-3) for _, v in values["optim/learning_rate"])
    assert plugins["samples/text"] == "text"
    assert [step for step, _ in values["samples/text"]] == [10, 20]
    assert all(text.decode().startswith("```\nThe ") for _, text in values["samples/text"])
    assert json.loads(values["run/config"][0][1].decode().strip("`\n"))["model"]["cell"] == "gru"


@pytest.mark.slow  # trains (the module's run)
def test_samples_printed_and_logged(monitored_run):
    out, result = monitored_run
    assert "--- sample at step 10 (seed 3, prompt 'The ') ---" in result.stderr
    assert "--- sample at step 20 (seed 3, prompt 'The ') ---" in result.stderr
    logged = (out / "run" / "samples.txt").read_text(encoding="utf-8")
    blocks = [b for b in logged.split("--- sample at step ") if b]
    assert len(blocks) == 2
    for block in blocks:
        text = block.split("---\n", 1)[1].rstrip("\n")
        assert text.startswith("The ") and len(text) == len("The ") + 30  # 30 char tokens


@pytest.mark.slow  # trains (the module's run)
def test_samples_use_a_fixed_seed(monitored_run):
    """The same weights and seed give the same sample: only training changes them."""
    import charlm
    from charlm.config import SampleConfig
    from charlm.sample import Sampler

    out, _ = monitored_run
    lm = charlm.load(out / "run" / "model.keras")  # the weights after step 20
    config = SampleConfig(length=30, seed=3)
    logged = (out / "run" / "samples.txt").read_text(encoding="utf-8").split("--- sample at step 20")[1]
    live = Sampler(lm, variables=True)
    assert "The " + live.run("The ", config)[0].text == logged.split("---\n", 1)[1].rstrip("\n")
    assert live.run("The ", config)[0].text == live.run("The ", config)[0].text


@pytest.mark.slow  # trains (the module's run)
def test_step_log(monitored_run):
    out, _ = monitored_run
    with open(out / "run" / "steps.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert [int(r["tokens_seen"]) for r in rows] == [step * 8 * 16 for step in range(1, STEPS + 1)]
    # The epoch's train loss is the mean of its steps' losses (logged to 6 digits).
    history = json.loads((out / "run" / "history.json").read_text())
    assert sum(float(r["loss"]) for r in rows) / STEPS == pytest.approx(history[0]["train_loss"], rel=1e-5)
    assert all(float(r["grad_norm"]) > 0.05 for r in rows)  # the clip bound: every step was clipped
    assert {float(r["lr"]) for r in rows} == {0.002}  # the default rate, constant


def test_bad_sample_flags():
    assert_one_line_error(invoke("train", "--sample-every", "0"), "--sample-every", code=2)
