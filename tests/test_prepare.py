"""charlm.data.prepare, the front of the data pipeline: the vocabulary comes from the training
split only, and bad corpus, cache and TFDS arguments are one-line errors."""

from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.prepare import prepare
from tests.helpers import assert_one_line_error, invoke


def test_vocabulary_comes_from_training_split_only(tmp_path):
    # "Z" occurs only in the last 10% of the text: the validation split.
    text = "abcab cabca " * 400 + "ZZZZ abc " * 40
    path = tmp_path / "c.txt"
    path.write_text(text)
    data = prepare([path], TokenizerConfig(), TrainConfig(batch_size=2, bptt=8, val_fraction=0.1))
    assert "Z" not in data.tokenizer.vocabulary
    assert data.tokenizer.unk_id in set(data.validation.streams.reshape(-1).tolist())


def test_bad_inputs_are_one_line_errors(tmp_path):
    assert_one_line_error(invoke("train", tmp_path / "nothing-*.txt", "-o", tmp_path / "r"), "no files match")
    (tmp_path / "file").write_text("x")
    corpus = tmp_path / "c.txt"
    corpus.write_text("some text " * 100)
    assert_one_line_error(invoke("train", corpus, "-o", tmp_path / "r", "--cache-dir", tmp_path / "file" / "cache"),
                          "cache directory", "--cache-dir")
    assert_one_line_error(invoke("train", corpus, "-o", tmp_path / "r", "--tfds-split", "train"),
                          "--tfds-split", "tfds:")
    assert not (tmp_path / "r").exists()
