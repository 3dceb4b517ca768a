"""``charlm train`` through click's runner: the happy path and every bad input of the core."""

import json
import os
import subprocess
import sys
import time

import pytest
from tests.helpers import assert_one_line_error, invoke

FLAGS = ["--cell", "gru", "--layers", "1", "--hidden", "16", "--embedding", "8", "--batch-size", "4",
         "--bptt", "16", "--max-steps", "6", "--val-fraction", "0.1"]


def test_help_is_fast_and_does_not_import_tensorflow():
    code = "import sys, charlm.cli; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "charlm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout
    assert time.perf_counter() - start < 5  # generous: the machine is shared; typically ~0.4 s


def test_train_json_summary(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", tiny_corpus, "--out", out, *FLAGS, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 6 and (out / "model.keras").exists()
    assert summary["model_path"] == str(out / "model.keras")


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


def test_invalid_utf8_names_file_and_offset_or_is_replaced(tiny_corpus, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(tiny_corpus.read_bytes()[:1000] + "café".encode("latin-1") + tiny_corpus.read_bytes())
    result = invoke("train", bad, "--out", tmp_path / "o", *FLAGS)
    assert_one_line_error(result, "latin1.txt", "byte 1003", "--encoding-errors replace")
    result = invoke("train", bad, "--out", tmp_path / "o2", *FLAGS, "--encoding-errors", "replace", "--quiet")
    assert result.exit_code == 0, result.output


def test_corpus_too_small(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("a tiny corpus\n" * 20)
    assert_one_line_error(invoke("train", small, "--out", tmp_path / "o"), "tokens", "--batch-size", "--bptt")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag,value", [
    ("--layers", 0), ("--hidden", -4), ("--embedding", 0), ("--batch-size", 0), ("--bptt", 0),
    ("--dropout", 1.0), ("--dropout", -0.1), ("--lr", 0), ("--epochs", 0), ("--val-fraction", 1.5),
    ("--max-steps", -1), ("--max-minutes", 0), ("--steps-per-execution", 0), ("--lr-decay-start", 1.0),
])
def test_nonsense_hyperparameters(flag, value, tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tmp_path / "o", flag, value), flag)


def test_unknown_choice_is_one_line(tiny_corpus, tmp_path):
    assert_one_line_error(invoke("train", tiny_corpus, "--cell", "transformer"), "--cell", code=2)


def test_output_directory_not_writable(tiny_corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(invoke("train", tiny_corpus, "--out", blocker, *FLAGS), "not a directory")
    assert_one_line_error(invoke("train", tiny_corpus, "--out", blocker / "sub", *FLAGS), "output directory")


def test_existing_model_is_never_overwritten(tiny_run, tiny_corpus):
    before = os.stat(tiny_run["model_path"]).st_mtime_ns
    assert_one_line_error(invoke("train", tiny_corpus, "--out", tiny_run["run_dir"], *FLAGS), "already holds")
    assert os.stat(tiny_run["model_path"]).st_mtime_ns == before


def test_no_temporary_model_files_left(tiny_run):
    from pathlib import Path

    leftovers = [p.name for p in Path(tiny_run["run_dir"]).iterdir() if p.name.startswith(".")]
    assert leftovers == []
