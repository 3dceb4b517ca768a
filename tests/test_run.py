"""A training run (charlm.train, charlm.training.run) and `charlm train`: every cell learns,
the run directory's contents, reproducible runs, clipping; the command line's summary, and
every bad input refused in one line without touching an existing run."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import charlm
from charlm.training.checkpoint import list_checkpoints, read_state
from charlm.training.observers import Observer
from charlm.training.stopping import validations_without_improvement
from tests.helpers import BUNDLED_CORPUS, TINY, assert_one_line_error, invoke


def _quiet_train(corpus, out, **settings):
    return charlm.train(corpus, out, progress=False, log=lambda line: None, **{**TINY, **settings})


class Steps(Observer):
    """Every step's logs; the trainable weights before the first step and after it."""

    def __init__(self):
        self.logs, self.before, self.after = {}, None, None

    def on_train_begin(self, run):
        self.before = [v.numpy() for v in run.lm.model.trainable_variables]

    def on_step_end(self, run, step, logs):
        self.logs[step] = dict(logs)
        if step == 1:
            self.after = [v.numpy() for v in run.lm.model.trainable_variables]

    def losses(self):
        return [self.logs[step]["loss"] for step in sorted(self.logs)]

    def moves(self):
        """The norm of each weight's change in the first step, in float64."""
        return np.array([np.linalg.norm(a.astype(np.float64) - b) for b, a in zip(self.before, self.after)])


@pytest.mark.slow  # trains
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
    run = Path(tiny_run["run_dir"])
    assert {"model.keras", "history.csv", "history.json", "config.json"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["cell"] == "lstm" and config["train"]["bptt"] == TINY["bptt"]
    assert len(config["corpus"]["sha256"]) == 64
    header = (run / "history.csv").read_text().splitlines()[0]
    assert "val_bits_per_char" in header
    history = json.loads((run / "history.json").read_text())
    assert [row["step"] for row in history] == [TINY["max_steps"]]  # max steps ends the one epoch early
    assert tiny_run["model_path"] == str(run / "model.keras") and tiny_run["run_dir"] == str(run)
    assert tiny_run["steps"] == TINY["max_steps"] and tiny_run["epochs"] == 1
    tokens = TINY["max_steps"] * TINY["batch_size"] * TINY["bptt"]
    assert tiny_run["tokens_seen"] == history[0]["tokens_seen"] == tokens
    assert tiny_run["best_val_loss"] == history[0]["val_loss"]
    assert tiny_run["final_train_loss"] == history[0]["train_loss"]
    assert tiny_run["best_val_bits_per_char"] == history[0]["val_bits_per_char"]
    # Characters: one token per character, so bits per character are the loss in bits.
    assert tiny_run["best_val_bits_per_char"] == pytest.approx(tiny_run["best_val_loss"] / np.log(2), rel=1e-12)
    assert tiny_run["tokens_per_s"] > 0


@pytest.mark.slow  # trains
def test_same_seed_same_run_another_seed_another_run(tiny_corpus, tmp_path, tiny_run):
    same, other = Steps(), Steps()
    again = _quiet_train(tiny_corpus, tmp_path / "again", observers=[same])
    assert again["best_val_loss"] == tiny_run["best_val_loss"]
    assert again["final_train_loss"] == tiny_run["final_train_loss"]
    # The summary's train loss is the mean of the steps' losses, summed in order.
    assert sum(same.losses()) / TINY["max_steps"] == again["final_train_loss"]
    uniform = np.log(tiny_run["vocab_size"])
    # Untrained, the model's logits are near zero: the first loss is that of a uniform guess.
    assert same.losses()[0] == pytest.approx(uniform, abs=0.02)
    reseeded = _quiet_train(tiny_corpus, tmp_path / "reseeded", seed=TINY["seed"] + 1, observers=[other])
    # Another seed: other initial weights, so another loss from the first step on.
    assert other.losses()[0] != same.losses()[0]
    assert reseeded["best_val_loss"] != tiny_run["best_val_loss"]
    for run in (again, reseeded):  # and both learned
        assert run["best_val_loss"] < 0.85 * uniform


@pytest.mark.slow  # trains
def test_a_run_clips_the_gradient_as_told(tiny_corpus, tmp_path):
    """One SGD step at rate 1 moves the weights by the clipped gradient: by the logged gradient
    norm without clipping; by --clipnorm in all with global clipping; by at most --clipnorm per
    weight with per-tensor clipping, which moves them further in all when several are clipped."""
    one_step = dict(optimizer="sgd", lr=1.0, max_steps=1)
    runs = {}
    for name, clipnorm, mode in [("none", None, "global"), ("global", 0.05, "global"),
                                 ("per-tensor", 0.05, "per-tensor")]:
        runs[name] = Steps()
        _quiet_train(tiny_corpus, tmp_path / name, clipnorm=clipnorm, clip_mode=mode, observers=[runs[name]],
                     **one_step)
    logs = {name: run.logs[1] for name, run in runs.items()}
    norm = logs["none"]["grad_norm"]
    # The same seed and window: the same gradient, whose norm (before clipping) is logged.
    assert logs["global"]["grad_norm"] == logs["per-tensor"]["grad_norm"] == norm > 0.05
    assert [logs[name]["clipped"] for name in runs] == [False, True, True]
    moves = {name: run.moves() for name, run in runs.items()}
    assert np.linalg.norm(moves["none"]) == pytest.approx(norm, rel=1e-3)
    assert np.linalg.norm(moves["global"]) == pytest.approx(0.05, rel=1e-3)
    np.testing.assert_allclose(moves["global"], moves["none"] * 0.05 / norm, rtol=1e-3, atol=1e-7)
    # Per tensor: each weight moves by min(its gradient's norm, 0.05).
    np.testing.assert_allclose(moves["per-tensor"], np.minimum(moves["none"], 0.05), rtol=1e-3, atol=1e-7)
    assert (moves["none"] > 0.05).sum() >= 2
    assert np.linalg.norm(moves["per-tensor"]) > 1.4 * 0.05


@pytest.mark.slow  # trains
def test_val_every_validates_inside_epochs_and_trains_the_same_steps(tiny_corpus, tmp_path, tiny_run):
    """--val-every 25 on the tiny run (60 steps of a 210-window epoch): validations at steps 25, 50
    and 60, each a history row (the epoch's mean loss so far), a log line and a checkpoint; the
    training itself is the shared tiny run's, step for step."""
    steps, lines, out = Steps(), [], tmp_path / "run"
    summary = charlm.train(tiny_corpus, out, progress=False, log=lines.append, observers=[steps],
                           **{**TINY, "val_every": 25})
    rows = json.loads((out / "history.json").read_text())
    assert [(row["epoch"], row["step"]) for row in rows] == [(1, 25), (1, 50), (1, 60)]
    assert summary["validations"] == 3 and summary["epochs"] == 1 and summary["steps"] == 60
    losses = steps.losses()
    for row in rows:
        assert row["train_loss"] == sum(losses[: row["step"]]) / row["step"]
    assert summary["final_train_loss"] == tiny_run["final_train_loss"]
    assert rows[-1]["val_loss"] == tiny_run["best_val_loss"]  # the same weights at step 60
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == \
        ["epoch 1, step 25", "epoch 1, step 50", "epoch 1, step 60"]
    assert [read_state(p)["position"]["step"] for p in list_checkpoints(out)] == [25, 50, 60]
    best = min(rows, key=lambda row: row["val_loss"])
    assert charlm.load(out / "model.keras").info["step"] == best["step"]


@pytest.mark.slow  # trains about 175 steps
def test_patience_stops_a_run_whose_validation_loss_stopped_improving(tmp_path):
    """A 1x64 LSTM on 5,400 characters overfits within a few epochs; --patience 3 --val-every 7
    stops it at the first validation that is the third without a better loss, says why, keeps the
    best model, warns at every validation whose loss rose while the training loss fell, and
    refuses to resume it without a larger --patience."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    lines, out = [], tmp_path / "run"
    summary = charlm.train(corpus, out, progress=False, log=lines.append, cell="lstm", layers=1, hidden=64,
                           embedding=16, dropout=0.0, batch_size=8, bptt=32, epochs=40, lr=0.03,
                           lr_schedule="constant", val_fraction=0.1, seed=3, patience=3, val_every=7)
    rows = json.loads((out / "history.json").read_text())
    assert summary["stopped_early"] and not summary["stopped_by_time"] and summary["steps"] < 40 * 21
    # Each validation better than all before it (B) or not (-): the run stopped at the first "---".
    better = "".join("B" if row["val_loss"] < min([r["val_loss"] for r in rows[:i]], default=math.inf) else "-"
                     for i, row in enumerate(rows))
    assert better.endswith("B---") and "---" not in better[:-1], better
    assert better == "".join("B" if row["saved"] else "-" for row in rows)
    assert [validations_without_improvement(rows[:n]) for n in range(1, len(rows) + 1)][-4:] == [0, 1, 2, 3]
    assert rows[-1]["step"] == summary["steps"]
    best = min(rows, key=lambda row: row["val_loss"])
    assert summary["best_val_loss"] == best["val_loss"]
    assert charlm.load(out / "model.keras").info["step"] == best["step"]
    stops = [line for line in lines if "stopped early" in line]
    assert stops == [f"charlm: stopped early at step {summary['steps']}: validation loss has not improved for 3 "
                     f"validations (--patience 3); the best, {best['val_loss']:.4f} at step {best['step']}, is in "
                     f"{out / 'model.keras'}"]
    rose = [(a, b) for a, b in zip(rows, rows[1:]) if b["val_loss"] > a["val_loss"] and b["train_loss"] < a["train_loss"]]
    warnings = [line for line in lines if "warning" in line]
    assert rose and len(warnings) == len(rose)
    for (a, b), line in zip(rose, warnings):
        assert line.startswith(f"charlm: warning: validation loss rose ({a['val_loss']:.4f} -> {b['val_loss']:.4f}) "
                               f"while training loss fell ({a['train_loss']:.4f} -> {b['train_loss']:.4f})")
    assert_one_line_error(invoke("train", "--resume", out), "stopped early", "raise --patience")


# A 1x64 LSTM on 5,400 characters (21 windows an epoch) at a high rate: left open-ended, it
# overfits within about 20 epochs. Only the model and data are given: the rest is charlm's defaults.
OPEN_ENDED = dict(cell="lstm", layers=1, hidden=64, embedding=16, batch_size=8, bptt=32, lr=0.03, val_fraction=0.1,
                  seed=3)


@pytest.mark.slow  # trains about 450 steps
def test_an_open_ended_run_stops_after_validation_stops_improving_and_a_cooldown(tmp_path):
    """No --epochs, --max-steps or --max-minutes: a first line says how the run will end; it
    validates at epoch ends at the full rate until the third validation without a better loss,
    at step S; then it trains round(S/4) more steps (the cooldown, 1/5 of the whole run), the
    rate of each lr*(1 - sqrt(t)) with t going from 0 over them, validates at the end and stops.
    The defaults it ran with are recorded (dropout 0.2, wsd, patience 3) and it cannot resume."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    steps, lines, out = Steps(), [], tmp_path / "run"
    summary = charlm.train(corpus, out, progress=False, log=lines.append, observers=[steps], **OPEN_ENDED)
    assert ("charlm: no --epochs, --max-steps or --max-minutes: training until validation loss has not improved for "
            "3 validations (one at each epoch's end), then cooling the rate down to 0 over the last fifth of the run; "
            "give --max-minutes to bound it") in lines
    rows = json.loads((out / "history.json").read_text())
    # The patience ran out at the first validation that was the third without a better loss.
    spent = next(i for i in range(len(rows)) if validations_without_improvement(rows[: i + 1]) == 3)
    start = rows[spent]["step"]
    assert [row["step"] for row in rows[: spent + 1]] == [21 * k for k in range(1, spent + 2)]
    end = start + round(start * 0.2 / 0.8)
    assert summary["cooldown"] == {"start": start, "end": end} and summary["steps"] == end == rows[-1]["step"]
    assert summary["stopped_early"] and not summary["stopped_by_time"]
    assert [row["step"] for row in rows[spent + 1:]] == [*range(21 * (spent + 2), end, 21), end]
    assert any(line.startswith(f"charlm: validation stopped improving at step {start}: cooling the rate down over "
                               f"{end - start} steps, then stopping") for line in lines), lines
    rates = [steps.logs[k]["lr"] for k in range(1, end + 1)]
    assert rates[:start + 1] == pytest.approx([0.03] * (start + 1), rel=1e-6)
    expected = [0.03 * (1 - math.sqrt((k - 1 - start) / (end - start))) for k in range(start + 1, end + 1)]
    assert rates[start:] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert rates[-1] < 0.003
    best = min(rows, key=lambda row: row["val_loss"])
    assert summary["best_val_loss"] == best["val_loss"] and charlm.load(out / "model.keras").info["step"] == best["step"]
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["dropout"] == 0.2
    assert {k: config["train"][k] for k in ("epochs", "max_steps", "max_minutes", "lr_schedule", "cooldown",
                                            "patience", "val_every")} == \
        dict(epochs=None, max_steps=None, max_minutes=None, lr_schedule="wsd", cooldown=None, patience=3, val_every=None)
    assert_one_line_error(invoke("train", "--resume", out), "has finished", f"step {start}", f"by step {end}",
                          "--init-from")


# ---- charlm train on the command line -------------------------------------------------------------

FLAGS = ["--cell", "gru", "--layers", "1", "--hidden", "16", "--embedding", "8", "--batch-size", "4",
         "--bptt", "16", "--max-steps", "6", "--val-fraction", "0.1"]


@pytest.mark.slow  # trains
def test_train_json_summary(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", tiny_corpus, "--out", out, *FLAGS, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6 and (out / "model.keras").exists()
    assert summary["model_path"] == str(out / "model.keras")
    # No --epochs (no epoch limit): --max-steps ended it, and resuming it asks for more of them.
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] is None and summary["cooldown"] is None
    assert_one_line_error(invoke("train", "--resume", out), "already trained 6 of its 6 steps", "--max-steps")


def test_missing_corpus(tmp_path):
    assert_one_line_error(invoke("train", tmp_path / "nope.txt", "--out", tmp_path / "o"), "not found")
    assert not (tmp_path / "o").exists()


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    assert_one_line_error(invoke("train", tmp_path / "empty.txt", "--out", tmp_path / "o"), "empty")


def test_directory_without_text_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "blob.bin").write_bytes(b"\0\1\2" * 100)
    assert_one_line_error(invoke("train", tmp_path / "d", "--out", tmp_path / "o"), "no text files")


def test_unreadable_corpus(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read files without read permission")
    path = tmp_path / "secret.txt"
    path.write_text("text " * 1000)
    path.chmod(0)
    assert_one_line_error(invoke("train", path, "--out", tmp_path / "o"), "cannot read")


def _latin1(tiny_corpus, tmp_path):
    """The tiny corpus with "café" in Latin-1 after its first 1,000 bytes: é is byte 1003."""
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(tiny_corpus.read_bytes()[:1000] + "café".encode("latin-1") + tiny_corpus.read_bytes())
    return bad


def test_invalid_utf8_names_file_and_offset(tiny_corpus, tmp_path):
    result = invoke("train", _latin1(tiny_corpus, tmp_path), "--out", tmp_path / "o", *FLAGS)
    assert_one_line_error(result, "latin1.txt", "byte 1003", "--encoding-errors replace")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # trains
def test_invalid_utf8_is_replaced_on_request(tiny_corpus, tmp_path):
    result = invoke("train", _latin1(tiny_corpus, tmp_path), "--out", tmp_path / "o", *FLAGS,
                    "--encoding-errors", "replace", "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 6


def test_corpus_too_small(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("a tiny corpus\n" * 20)
    assert_one_line_error(invoke("train", small, "--out", tmp_path / "o"), "tokens", "--batch-size", "--bptt")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [
    ("--layers", 0), ("--hidden", -4), ("--embedding", 0), ("--batch-size", 0), ("--bptt", 0),
    ("--dropout", 1.0), ("--dropout", -0.1), ("--lr", 0), ("--epochs", 0), ("--val-fraction", 1.5),
    ("--max-steps", -1), ("--max-minutes", 0), ("--steps-per-execution", 0), ("--lr-decay-start", 1.0),
    ("--patience", 0), ("--val-every", 0), ("--warmup", 1.0), ("--warmup", -0.1), ("--cooldown", 1.5),
    ("--dropout-input", 1.0), ("--dropout-hidden", -0.2), ("--dropout-output", 1.5), ("--weight-drop", 1.0),
    ("--embedding-dropout", -0.1),
])
def test_nonsense_hyperparameters(flag, value, tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", flag, value), flag)


def test_locked_dropout_needs_a_dropout_rate(tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", "--locked-dropout", "--dropout", "0"),
                          "--locked-dropout", "--dropout P")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flags,fragment", [
    (["--lr-schedule", "constant", "--warmup", "0.1", "--epochs", "1"],
     "--warmup needs a schedule: add --lr-schedule wsd, cosine or linear"),
    (["--lr-schedule", "cosine", "--cooldown", "0.1"], "--cooldown is the end of --lr-schedule wsd"),
    (["--lr-schedule", "wsd", "--warmup", "0.5", "--cooldown", "0.6"], "--warmup 0.5 and --cooldown 0.6 add up"),
    (["--lr-schedule", "wsd", "--lr-decay-start", "0.5"], "--lr-decay-start is for cosine and linear"),
    (["--lr-schedule", "linear", "--warmup", "0.3", "--lr-decay-start", "0.1"], "falls inside --warmup 0.3"),
    # Open-ended runs (no --epochs, --max-steps or --max-minutes) have no length to take a fraction of.
    (["--lr-schedule", "cosine"], "--lr-schedule cosine decays towards the run's end, which needs the run's length"),
    (["--warmup", "0.1"], "--warmup 0.1 is a fraction of the run, which needs the run's length: add --max-minutes"),
])
def test_conflicting_schedule_flags(flags, fragment, tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", *flags), fragment)
    assert not (tmp_path / "o").exists()


def test_output_directory_not_writable(tiny_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("train", tiny_corpus, "--out", blocker, *FLAGS), "not a directory")
    assert_one_line_error(invoke("train", tiny_corpus, "--out", blocker / "sub", *FLAGS), "output directory")


def test_existing_model_is_never_overwritten(tiny_run, tiny_corpus, tmp_path):
    run = shutil.copytree(tiny_run["run_dir"], tmp_path / "run")  # a copy: the shared model stays safe
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir() if p.is_file()}
    assert_one_line_error(invoke("train", tiny_corpus, "--out", run, *FLAGS), "already holds")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.iterdir() if p.is_file()} == before


def test_no_temporary_model_files_left(tiny_run):
    leftovers = [p.name for p in Path(tiny_run["run_dir"]).iterdir() if p.name.startswith(".")]
    assert leftovers == []
