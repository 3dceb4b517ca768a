"""`charlm plot` (charlm.plotting) of one run, of several runs, and of directories that are
not runs; reading a resumed run's step log."""

from __future__ import annotations

import json
import shutil

from tests.helpers import assert_one_line_error, invoke


def png_size(path):
    """(width, height) from a PNG's header."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_one_run(tiny_run, tmp_path):
    out = tmp_path / "run.png"
    result = invoke("plot", tiny_run["run_dir"], "-o", out)
    assert result.exit_code == 0, result.output
    width, height = png_size(out)
    assert 800 <= width <= 2000 and 300 <= height <= 1000
    assert 10_000 < out.stat().st_size < 2_000_000


def fake_run(path, epochs=4, agreement=True, resumed_at=None):
    """A run directory as training writes it: history.json per epoch and steps.csv per step."""
    path.mkdir()
    rows, lines = [], ["step,tokens_seen,loss,grad_norm,lr"]
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "step": 50 * epoch, "tokens_seen": 12800 * epoch, "train_loss": 3.0 / epoch,
               "val_loss": 3.1 / epoch, "val_bits_per_char": 4.4 / epoch, "saved": True}
        if agreement:
            row["agreement_accuracy"] = 0.5 + 0.1 * epoch
        rows.append(row)
    for step in range(1, 50 * epochs + 1):
        lines.append(f"{step},{256 * step},{3.2 * 50 / (50 + step):.4f},1.0,0.002")
    if resumed_at:  # a resumed run logs some steps twice; the later lines win
        lines += [f"{s},{256 * s},9.0,1.0,0.002" for s in range(resumed_at, 50 * epochs + 1)]
    (path / "history.json").write_text(json.dumps(rows))
    (path / "steps.csv").write_text("\n".join(lines) + "\n")
    return path


def test_plot_compares_runs_with_agreement(tiny_run, tmp_path):
    out, alone = tmp_path / "compare.png", tmp_path / "alone.png"
    other = fake_run(tmp_path / "other")
    result = invoke("plot", tiny_run["run_dir"], other, "-o", out)
    assert result.exit_code == 0, result.output
    assert invoke("plot", tiny_run["run_dir"], "-o", alone).exit_code == 0
    width, height = png_size(out)
    assert 800 <= width <= 2000 and 700 <= height <= 1600
    assert (width, height) == (png_size(alone)[0], 2 * png_size(alone)[1])  # a second row: agreement accuracy


def test_step_log_reading_keeps_the_last_line_per_step(tmp_path):
    from charlm.plotting import read_run

    run = read_run(fake_run(tmp_path / "resumed", resumed_at=120))
    assert run.steps == list(range(1, 201))
    assert run.loss[:119] == [float(f"{3.2 * 50 / (50 + step):.4f}") for step in range(1, 120)]
    assert run.loss[119:] == [9.0] * 81
    assert run.accuracy_columns() == ["agreement_accuracy"]


def test_plot_errors(tmp_path, tiny_run):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(invoke("plot", empty), "has no history.json")
    assert_one_line_error(invoke("plot", tmp_path / "nothing"), "not found")
    run = shutil.copytree(tiny_run["run_dir"], tmp_path / "copy")
    (run / "history.json").write_text("[]")
    assert_one_line_error(invoke("plot", run), "no epochs yet")
    assert_one_line_error(invoke("plot", tiny_run["run_dir"], "-o", tmp_path / "x.txt"), ".png")
    assert not list(tmp_path.glob("*.txt")) and not list(tmp_path.glob(".*"))
