"""TensorFlow Datasets as a corpus source, prepared locally with the real TFDS machinery (no network)."""

import json
import shutil
import time

import numpy as np
import pytest

from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.prepare import DataConfig, prepare
from tests.helpers import BUNDLED_CORPUS, TINY, assert_one_line_error, invoke, shared_data

pytestmark = pytest.mark.slow  # TFDS takes seconds to import and to prepare a dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A TFDS data directory holding charlm_agreement, prepared by TFDS's download_and_prepare."""
    from charlm.data.tfds_source import import_tfds, project_builder

    tfds = import_tfds()
    assert project_builder("charlm_agreement")
    path = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("charlm_agreement", data_dir=str(path))
    assert not builder.is_prepared()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    assert builder.is_prepared()
    return path


def test_locally_prepared_dataset_gives_its_splits_as_tokens(data_dir, tmp_path):
    data = prepare(["tfds:charlm_agreement"], TokenizerConfig(), TrainConfig(batch_size=8, bptt=32),
                   data_config=DataConfig(tfds_data_dir=str(data_dir), cache_dir=str(tmp_path)))
    lines = BUNDLED_CORPUS.read_text(encoding="utf-8").splitlines()
    cut = len(lines) - round(len(lines) * 0.05)  # the builder's split
    train_text, val_text = "\n".join(lines[:cut]) + "\n", "\n".join(lines[cut:]) + "\n"
    name = "tfds:charlm_agreement/default/1.0.0"
    assert data.files == (f"{name}[train]", f"{name}[validation]")
    assert (data.train_tokens, data.val_tokens) == (len(train_text), len(val_text))
    ids = np.fromfile(data.token_file, dtype=np.uint8)
    assert data.tokenizer.decode(ids[: data.train_tokens]) == train_text
    assert data.tokenizer.decode(ids[data.train_tokens:]) == val_text
    assert "<doc>" not in data.tokenizer.vocabulary  # one example per split: no boundary inside a region
    # One split, cut by --val-fraction, as a file would be.
    single = prepare(["tfds:charlm_agreement"], TokenizerConfig(), TrainConfig(batch_size=8, bptt=32, val_fraction=0.1),
                     data_config=DataConfig(tfds_data_dir=str(data_dir), tfds_split="train"))
    assert single.train_tokens + single.val_tokens == len(train_text)
    assert single.val_tokens == round(len(train_text) * 0.1)


def test_charlm_train_on_a_tfds_dataset(data_dir, tmp_path):
    settings = {**TINY, "max_steps": 10}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    result = invoke("train", "tfds:charlm_agreement", "--tfds-data-dir", data_dir, "--cache-dir", tmp_path / "c",
                    "-o", tmp_path / "run", "--json", "-q", *flags)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 10 and summary["best_val_loss"] < np.log(summary["vocab_size"])  # below uniform
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "tfds:charlm_agreement" in json.dumps(config)


def test_project_dataset_is_prepared_on_first_use(tmp_path):
    """The project's own builders need no download, so charlm prepares them itself."""
    data = prepare(["tfds:charlm_agreement/generated"], TokenizerConfig(), TrainConfig(batch_size=8, bptt=32),
                   data_config=DataConfig(tfds_data_dir=str(tmp_path / "tfds"), tfds_split="train,validation"))
    assert (tmp_path / "tfds" / "charlm_agreement" / "generated" / "1.0.0").is_dir()
    assert data.train_tokens > 500_000 and data.val_tokens > 20_000


@pytest.mark.parametrize("args,expected", [
    (["tfds:no_such_dataset_xyz"], "unknown TFDS dataset 'no_such_dataset_xyz'"),
    (["tfds:charlm_agreement", "--tfds-key", "book_text"], "no feature 'book_text'; its text features: text"),
    (["tfds:charlm_agreement", "--tfds-split", "test"], "no split 'test'"),
    (["tfds:charlm_agreement", "--tfds-split", "a,b,c"], "one split or TRAIN,VALIDATION"),
    (["tfds:charlm_agreement", "more.txt"], "must be the only corpus"),
])
def test_bad_tfds_input_is_one_line(data_dir, tmp_path, args, expected):
    assert_one_line_error(invoke("train", *args, "--tfds-data-dir", data_dir, "-o", tmp_path / "r"), expected)


def test_unprepared_public_dataset_says_how_to_prepare_offline_without_hanging(tmp_path):
    started = time.monotonic()
    result = invoke("train", "tfds:tiny_shakespeare", "--tfds-data-dir", tmp_path, "-o", tmp_path / "r")
    assert_one_line_error(result, "not prepared", "--tfds-manual-dir", "input.txt")
    result = invoke("train", "tfds:tiny_shakespeare", "--tfds-data-dir", tmp_path, "--tfds-manual-dir", tmp_path,
                    "-o", tmp_path / "r")
    assert_one_line_error(result, "needs input.txt in --tfds-manual-dir")
    assert time.monotonic() - started < 60  # refused, never a download attempt with retries
    assert not (tmp_path / "r").exists()


@pytest.mark.shared_data
def test_public_dataset_prepared_from_a_manual_dir(tmp_path):
    """tiny_shakespeare, TFDS's own builder, prepared offline from the file it would download."""
    source = shared_data("corpora", "tinyshakespeare.txt")
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(source, manual / "input.txt")
    data = prepare(["tfds:tiny_shakespeare"], TokenizerConfig(), TrainConfig(batch_size=8, bptt=32),
                   data_config=DataConfig(tfds_data_dir=str(tmp_path / "tfds"), tfds_manual_dir=str(manual)))
    text = source.read_text(encoding="utf-8")
    # TFDS's split: train 90 %, validation 5 %, test 5 %, one example each.
    assert data.files[0].startswith("tfds:tiny_shakespeare/")
    assert data.train_tokens == int(len(text) * 0.9)
    assert data.tokenizer.decode(data.train.streams[0][:40]) == text[:40]
