"""Training under tf.distribute means the same as on one device: two replicas in one process
(MirroredStrategy), and two worker processes (MultiWorkerMirroredStrategy), also across a resume.

No accelerator here: two logical CPU devices stand in for two replicas, and the workers talk
over 127.0.0.1. (The compiled steps themselves are tested in test_steps.py.)
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import PROGRAMS


@pytest.mark.slow  # starts subprocesses
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
    # --ema: the averages, updated in replica context, are the same on two replicas as on one.
    for a, b in zip(one["averages"], two["averages"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-3, atol=1e-4)
    assert len(one["averages"]) == len(two["averages"]) > 0
    assert set(two["average_copies"]) == {2}  # mirrored: one identical copy per replica
    # Replica r carried the states of streams r*b..(r+1)*b: same states, same order.
    for a, b in zip(one["states"], two["states"]):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-3, atol=1e-4)


@pytest.mark.slow  # starts subprocesses
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


# No dropout and a constant rate: a run resumed with a larger --max-steps then takes the steps of
# one that had the larger budget from the start.
MULTI_WORKER_FLAGS = ["--cell", "gru", "--layers", "1", "--hidden", "32", "--embedding", "16", "--batch-size", "8",
                      "--bptt", "32", "--dropout", "0", "--lr-schedule", "constant", "--val-fraction", "0.1",
                      "--quiet", "--json"]


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


@pytest.mark.slow  # starts subprocesses
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


@pytest.mark.slow  # starts subprocesses
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
