"""Stream batching on real data: row i of window k+1 continues row i of window k."""

import numpy as np
import pytest

from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.prepare import prepare
from charlm.errors import CharlmError
from charlm.data.streams import StreamBatches
from charlm.training.windows import windows
from tests.helpers import BUNDLED_CORPUS


def test_streams_are_contiguous_on_the_bundled_corpus():
    B, T = 16, 50
    data = prepare([BUNDLED_CORPUS], TokenizerConfig(), TrainConfig(batch_size=B, bptt=T))
    batches = data.train
    text = BUNDLED_CORPUS.read_text(encoding="utf-8")
    stream_length = data.train_tokens // B
    previous = None
    for k in range(len(batches)):
        x, y = batches.window(k)
        assert x.shape == y.shape == (B, T)
        assert (x[:, 1:] == y[:, :-1]).all()  # targets are the inputs shifted by one
        if previous is not None:
            assert (x[:, 0] == previous[:, -1]).all()  # row i continues where it stopped
        previous = y
    # Each row decodes to one contiguous piece of the original text.
    for row in (0, B // 2, B - 1):
        inputs = np.concatenate([batches.window(k)[0][row] for k in range(3)])
        piece = data.tokenizer.decode(inputs)
        assert text.find(piece) == row * stream_length


def test_dataset_yields_the_same_windows_in_order():
    ids = np.arange(1000)
    batches = StreamBatches(ids, 4, 10)
    for k, (x, y) in enumerate(windows(batches, start=3)):
        ex, ey = batches.window(k + 3)
        assert (x.numpy() == ex).all() and (y.numpy() == ey).all()
    assert k + 4 == len(batches)


def test_too_small_corpus_says_how_many_tokens_and_which_flag():
    with pytest.raises(CharlmError) as error:
        StreamBatches(np.arange(100), 8, 32, "validation")
    message = str(error.value)
    assert "264" in message and "--batch-size" in message and "--val-fraction" in message
