"""Training that survives: exact resume, atomic checkpoints, signals, divergence, resume conflicts.

The equivalence checks compare a run stopped and resumed (once in-process with real
signals, once in real ``charlm train`` processes killed with SIGTERM and SIGKILL)
against one uninterrupted run: the same loss at every step and bit-identical
weights, optimizer slots and dropout random state at the end. Dropout is on, so
the random state matters. CPU with TensorFlow's op determinism on: equality is exact.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import charlm
from charlm.errors import CharlmError
from charlm.training.checkpoint import list_checkpoints, read_arrays, read_state
from charlm.training.observers import Observer
from charlm.training.stopping import TrainingInterrupted
from tests.helpers import BUNDLED_CORPUS, TINY, assert_one_line_error, invoke

# 21 windows per epoch on the 6,000-character corpus; two epochs, a checkpoint every 5 steps.
SETTINGS = dict(cell="lstm", layers=2, hidden=16, embedding=8, dropout=0.1, batch_size=8, bptt=32, epochs=2,
                lr=0.01, lr_schedule="constant", val_fraction=0.1, seed=3, checkpoint_every=5, keep=3)


def _flags(settings):
    return [f for k, v in settings.items() for f in (f"--{k.replace('_', '-')}", str(v))]


class Recorder(Observer):
    """Records every step's loss; sends a real signal to this process after step ``stop_at``."""

    def __init__(self, stop_at=None, signum=signal.SIGINT):
        self.losses, self.stop_at, self.signum = {}, stop_at, signum

    def on_step_end(self, run, step, logs):
        self.losses[step] = logs["loss"]
        if step == self.stop_at:
            os.kill(os.getpid(), self.signum)


def _train(corpus=None, out=None, observers=(), lines=None, **settings):
    log = lines.append if lines is not None else (lambda line: None)
    return charlm.train(corpus, out, progress=False, log=log, observers=observers, **settings)


def _assert_same_arrays(a, b):
    a, b = read_arrays(a), read_arrays(b)
    assert a.keys() == b.keys()
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "small.txt"
    path.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:6000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """One uninterrupted run: its directory and per-step losses."""
    recorder = Recorder()
    out = tmp_path_factory.mktemp("resume") / "reference"
    summary = _train(corpus, out, [recorder], **SETTINGS)
    return {"dir": out, "losses": recorder.losses, "summary": summary}


@pytest.mark.slow  # trains
def test_interrupted_twice_then_resumed_equals_uninterrupted(corpus, reference, tmp_path):
    out = tmp_path / "run"
    first, second, last = Recorder(stop_at=7), Recorder(stop_at=30, signum=signal.SIGTERM), Recorder()
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        _train(corpus, out, [first], **SETTINGS)
    assert stopped.value.exit_code == 130
    assert str(stopped.value) == f"interrupted at step 7 (checkpoint saved); resume with: charlm train --resume {out}"
    assert read_state(list_checkpoints(out)[-1])["position"]["step"] == 7
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    # What a SIGKILL in the middle of a save leaves: a partial directory. It must be ignored.
    partial = out / "checkpoints" / ".partial-ckpt-000099-step-9-4242"
    shutil.copytree(list_checkpoints(out)[-1], partial)
    (partial / "tensors.data-00000-of-00001").write_bytes(b"half a file")
    with pytest.raises(TrainingInterrupted) as stopped:  # crosses the epoch boundary (21) on the way
        _train(resume=out, observers=[second])
    assert stopped.value.exit_code == 143
    assert not partial.exists()
    lines = []
    summary = _train(resume=out, observers=[last], lines=lines)
    assert any("resuming" in line and "step 30, epoch 2, window 9 of 21" in line for line in lines), lines
    # Each step ran once, in exactly one of the three runs.
    assert sorted(first.losses) == list(range(1, 8)) and sorted(second.losses) == list(range(8, 31))
    assert {**first.losses, **second.losses, **last.losses} == reference["losses"]
    _assert_same_arrays(list_checkpoints(out)[-1], list_checkpoints(reference["dir"])[-1])
    for key in ("best_val_loss", "final_train_loss", "steps", "tokens_seen"):
        assert summary[key] == reference["summary"][key]
    rows = json.loads((out / "history.json").read_text())
    expected = json.loads((reference["dir"] / "history.json").read_text())
    assert [(r["train_loss"], r["val_loss"]) for r in rows] == [(r["train_loss"], r["val_loss"]) for r in expected]



# With --ema: the averages are checkpointed beside the weights and restored with them.
EMA = {**SETTINGS, "ema": 0.9}


@pytest.fixture(scope="module")
def ema_reference(corpus, tmp_path_factory):
    """One uninterrupted run with --ema: its directory, per-step losses and summary."""
    recorder = Recorder()
    out = tmp_path_factory.mktemp("resume") / "ema"
    summary = _train(corpus, out, [recorder], **EMA)
    return {"dir": out, "losses": recorder.losses, "summary": summary}


@pytest.mark.slow  # trains
def test_averaging_leaves_the_raw_training_as_it_was(reference, ema_reference):
    """--ema only watches: every step's loss, the weights and the optimizer's slots are those of
    the run without it (each validation's swap restored the raw weights bit for bit), while the
    validation losses, of the averages, differ."""
    assert ema_reference["losses"] == reference["losses"]
    ema = read_arrays(list_checkpoints(ema_reference["dir"])[-1])
    plain = read_arrays(list_checkpoints(reference["dir"])[-1])
    averages = {key for key in ema if key.startswith("averages/")}
    assert len(averages) == len(charlm.load(reference["dir"] / "model.keras").model.trainable_variables)
    assert ema.keys() - averages == plain.keys()
    assert not [key for key in plain if not np.array_equal(ema[key], plain[key])]
    ema_rows, rows = (json.loads((r["dir"] / "history.json").read_text()) for r in (ema_reference, reference))
    assert all(a["val_loss"] != b["val_loss"] for a, b in zip(ema_rows, rows))


@pytest.mark.slow  # trains
def test_interrupted_with_ema_then_resumed_equals_uninterrupted(corpus, ema_reference, tmp_path):
    """Stopped at step 7 and resumed: the same losses, the same averages (with everything else
    in the last checkpoint), the same validations and the same model.keras."""
    out = tmp_path / "run"
    first, rest = Recorder(stop_at=7), Recorder()
    with pytest.raises(TrainingInterrupted):
        _train(corpus, out, [first], **EMA)
    summary = _train(resume=out, observers=[rest])
    assert {**first.losses, **rest.losses} == ema_reference["losses"]
    _assert_same_arrays(list_checkpoints(out)[-1], list_checkpoints(ema_reference["dir"])[-1])
    assert summary["best_val_loss"] == ema_reference["summary"]["best_val_loss"]
    rows, expected = (json.loads((d / "history.json").read_text()) for d in (out, ema_reference["dir"]))
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in expected]
    saved, reference = (charlm.load(d / "model.keras").model.get_weights() for d in (out, ema_reference["dir"]))
    assert all(np.array_equal(a, b) for a, b in zip(saved, reference))


@pytest.mark.slow  # trains twice
def test_a_regularised_run_resumes_exactly(corpus, reference, tmp_path):
    """Locked dropout, weight drop and embedding dropout draw their masks from random state the
    checkpoint holds (the Dropout layers' and the recurrent cells' seed generators): a resumed run
    draws the masks the uninterrupted one drew."""
    settings = {**SETTINGS, "locked_dropout": True, "dropout_hidden": 0.3, "weight_drop": 0.4,
                "embedding_dropout": 0.1}
    uninterrupted, first, rest = Recorder(), Recorder(stop_at=12), Recorder()
    _train(corpus, tmp_path / "reference", [uninterrupted], **settings)
    with pytest.raises(TrainingInterrupted):
        _train(corpus, tmp_path / "run", [first], **settings)
    _train(resume=tmp_path / "run", observers=[rest])
    assert {**first.losses, **rest.losses} == uninterrupted.losses
    assert uninterrupted.losses != reference["losses"]  # the masks were at work
    _assert_same_arrays(list_checkpoints(tmp_path / "run")[-1], list_checkpoints(tmp_path / "reference")[-1])


@pytest.mark.slow  # trains
def test_stopped_by_max_minutes_then_resumed_equals_uninterrupted(corpus, reference, tmp_path):
    """--max-minutes stops at a step boundary, validates and checkpoints; --resume goes on exactly."""
    out = tmp_path / "run"
    first, rest, lines = Recorder(), Recorder(), []
    # 0.0001 minutes: the deadline has passed by the end of the first call, whatever the machine.
    summary = _train(corpus, out, [first], lines=lines, **{**SETTINGS, "max_minutes": 0.0001})
    assert summary["stopped_by_time"] and summary["steps"] == 1 == len(first.losses)
    assert any("stopped at step 1 of 42: --max-minutes 0.0001 reached" in line and "the whole run's budget" in line
               and f"charlm train --resume {out} --max-minutes MORE" in line for line in lines), lines
    assert (out / "model.keras").exists() and read_state(list_checkpoints(out)[-1])["position"]["step"] == 1
    summary = _train(resume=out, observers=[rest], max_minutes=60.0)
    assert not summary["stopped_by_time"] and summary["steps"] == 42
    assert {**first.losses, **rest.losses} == reference["losses"]
    _assert_same_arrays(list_checkpoints(out)[-1], list_checkpoints(reference["dir"])[-1])


class RateRecorder(Observer):
    def __init__(self):
        self.rates = {}

    def on_step_end(self, run, step, logs):
        self.rates[step] = logs["lr"]


@pytest.mark.slow  # trains
def test_a_decaying_rate_resumes_where_it_left_off(corpus, tmp_path):
    """--lr-schedule cosine: the rate of step k is lr * (1 + cos(pi (k-1) / 42)) / 2, in one run or
    in a run stopped at step 10 and resumed; the resumed run equals the uninterrupted one."""
    import math

    settings = {**SETTINGS, "lr_schedule": "cosine"}
    whole, whole_rates = Recorder(), RateRecorder()
    _train(corpus, tmp_path / "whole", [whole, whole_rates], **settings)
    expected = {k: 0.01 * 0.5 * (1 + math.cos(math.pi * (k - 1) / 42)) for k in range(1, 43)}
    assert whole_rates.rates == pytest.approx(expected, rel=1e-6)
    first, rest, rates = Recorder(stop_at=10), Recorder(), RateRecorder()
    with pytest.raises(TrainingInterrupted):
        _train(corpus, tmp_path / "split", [first], **settings)
    _train(resume=tmp_path / "split", observers=[rest, rates])
    assert {**first.losses, **rest.losses} == whole.losses
    assert rates.rates == {k: whole_rates.rates[k] for k in range(11, 43)}


@pytest.mark.slow  # trains about 450 steps twice
def test_an_open_ended_run_resumed_in_its_cooldown_continues_it_exactly(corpus, tmp_path):
    """An open-ended run (no --epochs, --max-steps or --max-minutes: dropout 0.2, wsd, patience 3)
    stopped ten steps into the cooldown it began when validation stopped improving: the checkpoint
    holds the cooldown's steps, and the resumed run says so, takes the same rates and losses to the
    same end, weights and validations as the uninterrupted run."""
    settings = dict(cell="lstm", layers=1, hidden=64, embedding=16, batch_size=8, bptt=32, lr=0.03,
                    val_fraction=0.1, seed=3)
    whole, whole_rates = Recorder(), RateRecorder()
    summary = _train(corpus, tmp_path / "whole", [whole, whole_rates], **settings)
    start, end = summary["cooldown"]["start"], summary["cooldown"]["end"]
    assert 0 < start < end == summary["steps"]
    first, first_rates = Recorder(stop_at=start + 10), RateRecorder()
    with pytest.raises(TrainingInterrupted):
        _train(corpus, tmp_path / "split", [first, first_rates], **settings)
    position = read_state(list_checkpoints(tmp_path / "split")[-1])["position"]
    assert (position["step"], position["cooldown_start"], position["cooldown_end"]) == (start + 10, start, end)
    rest, rates, lines = Recorder(), RateRecorder(), []
    resumed = _train(resume=tmp_path / "split", observers=[rest, rates], lines=lines)
    assert (f"charlm: in the cooldown begun when validation stopped improving at step {start}: the rate falls to 0 "
            f"by step {end}, then the run stops") in lines
    assert sorted(rest.losses) == list(range(start + 11, end + 1))
    assert {**first.losses, **rest.losses} == whole.losses
    assert {**first_rates.rates, **rates.rates} == whole_rates.rates
    assert resumed["cooldown"] == summary["cooldown"] and resumed["best_val_loss"] == summary["best_val_loss"]
    _assert_same_arrays(list_checkpoints(tmp_path / "split")[-1], list_checkpoints(tmp_path / "whole")[-1])
    rows, expected = (json.loads((d / "history.json").read_text()) for d in (tmp_path / "split", tmp_path / "whole"))
    assert [(r["step"], r["val_loss"]) for r in rows] == [(r["step"], r["val_loss"]) for r in expected]


class FakeClock(Observer):
    """The run's clock (``clock=``), one second further after every step: elapsed time is steps taken."""

    def __init__(self, start=0.0):
        self.now = start

    def __call__(self):
        return self.now

    def on_step_end(self, run, step, logs):
        self.now += 1.0


@pytest.mark.slow  # trains
def test_a_schedule_by_the_clock_reaches_its_cooldown_and_resumes_on_the_same_curve(corpus, tmp_path):
    """--lr-schedule wsd --warmup 0.1 --max-minutes 0.5, on a clock that advances a second a step,
    in a run of 2,100 steps: the clock ends it after 30, step k at the rate of (k - 1) / 30 of the
    run (a 3-second warmup, a 6-second 1-sqrt cooldown), near 0 at its end. Stopped at step 10 and
    resumed on a clock that reads another time, it follows the same rates and losses to the same
    weights; then the spent budget is refused."""
    import math

    settings = {**SETTINGS, "epochs": 100, "lr_schedule": "wsd", "warmup": 0.1, "max_minutes": 0.5}

    def expected(k):
        progress = (k - 1) / 30
        if progress < 0.1:
            return 0.01 * progress / 0.1
        return 0.01 if progress <= 0.8 else 0.01 * (1 - math.sqrt((progress - 0.8) / 0.2))

    clock, whole, rates = FakeClock(), Recorder(), RateRecorder()
    summary = _train(corpus, tmp_path / "whole", [clock, whole, rates], clock=clock, **settings)
    assert summary["stopped_by_time"] and summary["steps"] == 30
    assert rates.rates == pytest.approx({k: expected(k) for k in range(1, 31)}, rel=1e-6)
    assert rates.rates[1] == 0.0 and rates.rates[30] < 0.001  # cooled down: a tenth of --lr at most
    assert read_state(list_checkpoints(tmp_path / "whole")[-1])["position"]["elapsed_seconds"] == 30.0

    first_clock, first = FakeClock(), Recorder(stop_at=10)
    with pytest.raises(TrainingInterrupted):
        _train(corpus, tmp_path / "split", [first_clock, first], clock=first_clock, **settings)
    assert read_state(list_checkpoints(tmp_path / "split")[-1])["position"]["elapsed_seconds"] == 10.0
    later, rest, resumed_rates = FakeClock(start=5000.0), Recorder(), RateRecorder()
    _train(resume=tmp_path / "split", observers=[later, rest, resumed_rates], clock=later)
    assert resumed_rates.rates == {k: rates.rates[k] for k in range(11, 31)}
    assert {**first.losses, **rest.losses} == whole.losses
    _assert_same_arrays(list_checkpoints(tmp_path / "split")[-1], list_checkpoints(tmp_path / "whole")[-1])
    with pytest.raises(CharlmError, match="already trained 0.50 minutes of its --max-minutes 0.5"):
        _train(resume=tmp_path / "whole")


@pytest.mark.slow  # trains
def test_several_steps_per_execution_train_the_same_run(corpus, reference, tmp_path):
    """--steps-per-execution 4: the same steps in calls of up to 4 (cut at checkpoints and
    epoch ends), every step still logged, checkpoints on the same steps."""
    recorder = Recorder()
    out = tmp_path / "run"
    summary = _train(corpus, out, [recorder], **{**SETTINGS, "steps_per_execution": 4})
    assert summary["steps"] == 42 and sorted(recorder.losses) == list(range(1, 43))
    np.testing.assert_allclose([recorder.losses[k] for k in range(1, 43)],
                               [reference["losses"][k] for k in range(1, 43)], rtol=1e-5)
    assert [read_state(p)["position"]["step"] for p in list_checkpoints(out)] == [35, 40, 42]


@pytest.mark.slow  # reads the reference run, which trains
def test_checkpoints_are_complete_and_only_the_newest_kept(reference):
    kept = list_checkpoints(reference["dir"])
    assert len(kept) == SETTINGS["keep"]
    assert [read_state(p)["position"]["step"] for p in kept] == [35, 40, 42]
    final = read_state(kept[-1])
    assert final["position"]["epoch"] == 3 and final["position"]["cursor"] == 0  # after the last epoch
    lm = charlm.load(reference["dir"] / "model.keras")
    assert final["tokenizer"]["vocabulary"] == lm.tokenizer.vocabulary
    assert not [p for p in (reference["dir"] / "checkpoints").iterdir() if p.name.startswith(".")]
    arrays = read_arrays(kept[-1])
    # Every stream's state: h and c of each LSTM layer, one row per stream.
    states = [arrays[key] for key in sorted(arrays) if key.startswith("states/")]
    assert [a.shape for a in states] == [(SETTINGS["batch_size"], SETTINGS["hidden"])] * 2 * SETTINGS["layers"]
    # Adam's step count and rate, and its two slots for every weight.
    optimizer = [key for key in arrays if key.startswith("optimizer/")]
    assert len(optimizer) == 2 + 2 * len(lm.model.trainable_variables)


@pytest.mark.slow  # trains
def test_allowed_changes_are_honoured_and_logged(reference, tmp_path):
    out = tmp_path / "more"
    shutil.copytree(reference["dir"], out)
    lines = []
    summary = _train(resume=out, lines=lines, epochs=3, lr=0.005)
    assert any("changed: --epochs 2 -> 3, --lr 0.01 -> 0.005" in line for line in lines), lines
    assert summary["steps"] == 63 and summary["epochs"] == 3
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["epochs"] == 3 and config["train"]["lr"] == 0.005
    # The optimizer's only float scalar is its learning rate (the other scalar is the int64 step count).
    rates = [v for k, v in read_arrays(list_checkpoints(out)[-1]).items()
             if k.startswith("optimizer/") and v.shape == () and v.dtype == np.float32]
    assert rates == [np.float32(0.005)]



@pytest.mark.slow  # trains
def test_weight_decay_may_change_on_resume(corpus, tmp_path):
    out = tmp_path / "adamw"
    _train(corpus, out, **{**SETTINGS, "optimizer": "adamw", "max_steps": 5})
    assert json.loads((out / "config.json").read_text())["train"]["weight_decay"] == 0.01  # the default, recorded
    lines = []
    summary = _train(resume=out, lines=lines, max_steps=10, weight_decay=0.05)
    assert any("changed: --max-steps 5 -> 10, --weight-decay 0.01 -> 0.05" in line for line in lines), lines
    assert summary["steps"] == 10 and json.loads((out / "config.json").read_text())["train"]["weight_decay"] == 0.05

@pytest.mark.slow  # trains
def test_divergence_stops_and_keeps_the_last_good_checkpoint_and_best_model(corpus, tmp_path):
    class Poison(Observer):
        """After step 23 (in epoch 2), one weight becomes NaN: the next step's loss is NaN."""

        def on_step_end(self, run, step, logs):
            if step == 23:
                bias = run.lm.model.get_layer("logits").bias
                bias.assign(np.full(bias.shape, np.nan, dtype="float32"))

    out = tmp_path / "diverged"
    with pytest.raises(CharlmError) as diverged:
        _train(corpus, out, [Poison()], **SETTINGS)
    message = str(diverged.value)
    assert "training diverged at step 24 (loss nan" in message
    assert f"charlm train --resume {out} --lr 0.005" in message and "ckpt-000005-step-21" in message
    kept = list_checkpoints(out)
    assert read_state(kept[-1])["position"]["step"] == 21
    assert all(np.isfinite(a).all() for a in read_arrays(kept[-1]).values())
    lm = charlm.load(out / "model.keras")  # the best model, from epoch 1
    assert all(np.isfinite(w).all() for w in lm.model.get_weights())
    assert lm.info["step"] == 21


def _start(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(Path(charlm.__file__).parent.parent)}
    return subprocess.Popen([sys.executable, "-m", "charlm", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(out, after: int, process, timeout=120):
    """Wait until a checkpoint newer than ``after`` (a count of checkpoints written) exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        names = list_checkpoints(out)
        if names and int(names[-1].name.split("-")[1]) > after:
            return int(names[-1].name.split("-")[1])
        time.sleep(0.02)
    raise AssertionError(f"no new checkpoint; process exited with {process.poll()}")


@pytest.mark.slow  # trains, in subprocesses
def test_real_processes_stopped_by_sigterm_and_sigkill_resume_exactly(tmp_path):
    """``charlm train`` killed twice (SIGTERM, then SIGKILL at a checkpoint boundary), then resumed."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    settings = {**SETTINGS, "checkpoint_every": 3, "keep": 2}  # 70 windows per epoch, 140 steps
    reference = tmp_path / "reference"
    _train(corpus, reference, **settings)
    out = tmp_path / "run"

    run = _start(["train", corpus, "--out", out, "--quiet", *_flags(settings)], tmp_path)
    _wait_for_checkpoint(out, 0, run)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("charlm: interrupted at step ") and last.endswith(f"resume with: charlm train --resume {out}")
    step = int(last.split("step ")[1].split()[0])
    assert read_state(list_checkpoints(out)[-1])["position"]["step"] == step

    run = _start(["train", "--resume", out, "--quiet"], tmp_path)
    seen = int(list_checkpoints(out)[-1].name.split("-")[1])
    _wait_for_checkpoint(out, seen + 1, run)
    run.kill()
    run.communicate(timeout=60)
    assert run.returncode == -signal.SIGKILL

    run = _start(["train", "--resume", out, "--quiet", "--json"], tmp_path)
    stdout, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["steps"] == 140
    _assert_same_arrays(list_checkpoints(out)[-1], list_checkpoints(reference)[-1])


# -- refusals, one line each -------------------------------------------------------------
# Against a copy of the shared tiny run (60 steps, TINY's settings): refusing trains nothing,
# and the copy keeps a refusal that went wrong from changing the model other tests share.


def _one_line_error(args, *fragments):
    return assert_one_line_error(invoke(*args), *fragments)


@pytest.fixture
def finished(tiny_run, tmp_path):
    """A copy of the shared tiny run's directory: a finished run of TINY's settings."""
    return shutil.copytree(tiny_run["run_dir"], tmp_path / "finished")


def test_resume_may_change_the_schedule_and_early_stopping(finished):
    """Accepted, these flags reach the next check: the finished run has no steps left."""
    _one_line_error(["train", "--resume", finished, "--lr-schedule", "wsd", "--warmup", "0.1", "--cooldown", "0.3",
                     "--patience", "3", "--val-every", "10"], f"already trained {TINY['max_steps']} of its")


@pytest.mark.parametrize("flag,value", [
    ("--hidden", 64), ("--layers", 1), ("--cell", "gru"), ("--batch-size", 4), ("--bptt", 16),
    ("--tokenizer", "byte"), ("--dropout", 0.5), ("--seed", 7), ("--val-fraction", 0.2), ("--optimizer", "sgd"),
    ("--ema", 0.99),
])
def test_resume_refuses_changes_to_the_model_or_data(finished, flag, value):
    before = sorted(p.name for p in list_checkpoints(finished))
    _one_line_error(["train", "--resume", finished, flag, value], f"{flag} {value} conflicts", "drop " + flag)
    assert sorted(p.name for p in list_checkpoints(finished)) == before


def test_resume_refuses_another_corpus(finished, corpus):
    before = sorted(p.name for p in list_checkpoints(finished))
    _one_line_error(["train", corpus, "--resume", finished, "--epochs", "3"], "not the text", "same corpus")
    assert sorted(p.name for p in list_checkpoints(finished)) == before


def test_resume_of_a_finished_run_says_how_to_continue(finished):
    _one_line_error(["train", "--resume", finished], f"already trained {TINY['max_steps']} of its "
                    f"{TINY['max_steps']} steps", "--epochs")


@pytest.mark.parametrize("case", ["missing", "not-a-run", "out", "init-from", "damaged-config"])
def test_bad_resume_requests(case, tmp_path, tiny_model_path):
    run = tmp_path / "run"
    args, fragment = ["train", "--resume", run], {
        "missing": "no such run directory", "not-a-run": "no config.json", "out": "--out cannot be combined",
        "init-from": "cannot be combined with --resume", "damaged-config": "config.json is damaged",
    }[case]
    if case != "missing":
        run.mkdir()
    if case == "out":
        args += ["--out", tmp_path / "elsewhere"]
    if case == "init-from":
        (run / "config.json").write_text("{}")
        args += ["--init-from", tiny_model_path]
    if case == "damaged-config":
        (run / "config.json").write_text('{"tokenizer": ')
    _one_line_error(args, fragment)


def test_new_run_into_an_interrupted_runs_directory_points_to_resume(finished, corpus, tmp_path):
    out = tmp_path / "started"
    out.mkdir()
    shutil.copy(finished / "config.json", out / "config.json")
    _one_line_error(["train", corpus, "--out", out], "already holds a run", f"--resume {out}")


@pytest.mark.parametrize("flags,fragment", [
    (["--checkpoint-every", "-1"], "--checkpoint-every"), (["--keep", "0"], "--keep"),
    (["--extend-vocab"], "--extend-vocab needs --init-from"),
])
def test_bad_checkpoint_and_fine_tuning_flags(flags, fragment, corpus, tmp_path):
    _one_line_error(["train", corpus, "--out", tmp_path / "o", *flags], fragment)
    assert not (tmp_path / "o").exists()


def test_tiny_settings_still_train_without_checkpoint_flags(tiny_run):
    """The shared tiny run (defaults: a checkpoint every 200 steps) ends with one at its last step."""
    kept = list_checkpoints(tiny_run["run_dir"])
    assert kept and read_state(kept[-1])["position"]["step"] == TINY["max_steps"]
    assert tiny_run["checkpoint"] == str(kept[-1])
