"""What the test files share: paths, the tiny model's settings, the session fixtures (made
visible to every test by ``tests/conftest.py``), and helpers for the command line.

The session fixtures train one tiny model once; every test that needs a trained model
uses it (training it once keeps the suite fast).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = REPO / "corpora" / "agreement" / "data" / "train.txt"
BUNDLED_SUITE = REPO / "corpora" / "agreement" / "data" / "agreement.tsv"
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROGRAMS = Path(__file__).resolve().parent / "programs"

# The tiny model's settings: small enough to train in seconds on 2 cores. No dropout and a
# constant rate, pinned: tests compare runs against it step by step.
TINY = dict(cell="lstm", layers=2, hidden=32, embedding=16, dropout=0.0, batch_size=8, bptt=32, epochs=1,
            max_steps=60, lr=0.01, lr_schedule="constant", val_fraction=0.1, seed=1)

ERROR_PREFIX = "charlm: error:"


def shared_data(*parts) -> Path:
    """A path under ../shared/data, or skip the test where that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives beside the project, not in it)")
    return path


# ---- the command line ------------------------------------------------------------------------


def invoke(*args):
    """``charlm ARGS...`` through click's runner (arguments may be paths or numbers); the
    result has ``exit_code``, ``stdout`` and ``stderr``."""
    from click.testing import CliRunner

    from charlm.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, *fragments, code: int = 1) -> str:
    """The way every failure a user can cause ends: exit status ``code`` (1; 2 for usage
    errors), and on stderr exactly one line, starting with "charlm: error:", that contains each
    of ``fragments``; no traceback. ``result`` is a click runner result or a
    ``subprocess.CompletedProcess``. Returns the error line."""
    exit_code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    stdout, stderr = result.stdout or "", result.stderr or ""
    assert exit_code == code, f"exit status {exit_code}, expected {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and stderr.endswith("\n"), f"not one line: {stderr!r}"
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), stderr
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def run_python(code: str, *args, timeout: int = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -c CODE ARGS...`` in a fresh interpreter: its exit status and output."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# ---- session fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """The first 60,000 characters of the bundled corpus, as a file."""
    text = BUNDLED_CORPUS.read_text(encoding="utf-8")[:60_000]
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_corpus) -> dict:
    """The summary of one short training run on ``tiny_corpus`` (shared by many tests)."""
    import charlm

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return charlm.train(tiny_corpus, out, progress=False, log=lambda line: None, **TINY)


@pytest.fixture(scope="session")
def tiny_model_path(tiny_run) -> Path:
    return Path(tiny_run["model_path"])


@pytest.fixture(scope="session")
def lm(tiny_model_path):
    """The tiny model, loaded once. Shared: a test that changes its weights loads its own copy."""
    import charlm

    return charlm.load(tiny_model_path)


@pytest.fixture(scope="session")
def wide_lm(lm):
    """An untrained one-layer LSTM of 128 units over the tiny model's vocabulary: wide enough
    that evaluation compiles its forward pass with XLA (``charlm.runtime.choose_kernels``)."""
    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    tokenizer = lm.tokenizer
    config = ModelConfig(cell="lstm", layers=1, hidden=128, embedding=16)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)

