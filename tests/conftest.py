"""Shared fixtures: the bundled corpus, a small slice of it, and one tiny trained model
that every test needing a model shares (training it once keeps the suite fast)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = REPO / "corpora" / "agreement" / "data" / "train.txt"
BUNDLED_SUITE = REPO / "corpora" / "agreement" / "data" / "agreement.tsv"
SHARED_DATA = REPO.parent / "shared" / "data"

# The tiny model's settings: small enough to train in seconds on 2 cores.
TINY = dict(cell="lstm", layers=2, hidden=32, embedding=16, batch_size=8, bptt=32, epochs=1,
            max_steps=60, lr=0.01, val_fraction=0.1, seed=1)


def shared_data(*parts) -> Path:
    """A path under ../shared/data, or skip the test where that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the reference data lives beside the project, not in it)")
    return path


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
def wide_lm(tiny_model_path):
    """An untrained one-layer LSTM of 128 units over the tiny model's vocabulary: wide enough
    that evaluation compiles its forward pass with XLA (``charlm.nn.forward.choose_kernels``)."""
    import charlm
    from charlm.config import ModelConfig
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    tokenizer = charlm.load(tiny_model_path).tokenizer
    config = ModelConfig(cell="lstm", layers=1, hidden=128, embedding=16)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)
