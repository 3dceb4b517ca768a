"""StreamBatches: B contiguous streams cut into windows of T tokens, where row i of window
k+1 continues row i of window k; on the bundled corpus, on an array and on a memory-mapped
token file (the same windows, nothing copied); and the dataset that feeds them to training."""

import numpy as np
import pytest

from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.prepare import prepare
from charlm.data.streams import StreamBatches
from charlm.errors import CharlmError
from tests.helpers import BUNDLED_CORPUS


@pytest.fixture
def mapped(tmp_path):
    """10,007 token ids 0..250 as a uint8 file, memory-mapped read-only, and the same in memory."""
    ids = (np.arange(10_007) * 7 % 251).astype(np.uint8)
    path = tmp_path / "ids.tokens"
    ids.tofile(path)
    return np.memmap(path, dtype=np.uint8, mode="r"), ids.astype(np.int32)


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


def test_windows_on_a_memmap_equal_windows_on_an_array(mapped):
    memmap, ids = mapped
    B, T = 6, 17
    on_file, in_memory = StreamBatches(memmap, B, T), StreamBatches(ids, B, T)
    assert len(on_file) == len(in_memory) == (10_007 // B - 1) // T
    for k in range(len(on_file)):
        (x, y), (ex, ey) = on_file.window(k), in_memory.window(k)
        assert x.dtype == y.dtype == np.int32 and x.shape == (B, T)
        assert np.array_equal(x, ex) and np.array_equal(y, ey)


def test_streams_are_a_view_of_the_map_not_a_copy(mapped):
    memmap, _ = mapped
    batches = StreamBatches(memmap[:9_000], 4, 10)
    assert np.shares_memory(batches.streams, memmap)
    assert not batches.streams.flags.writeable  # read-only map: training can never scribble on the cache


@pytest.mark.parametrize("source,batch_size,bptt,start", [("array", 4, 10, 3), ("memmap", 4, 50, 2)])
def test_dataset_yields_the_same_windows_in_order(mapped, source, batch_size, bptt, start):
    """charlm.training.windows: the windows from ``start`` to the last, as ``window(k)`` gives them."""
    from charlm.training.windows import windows

    ids = np.arange(1000) if source == "array" else mapped[0]
    batches = StreamBatches(ids, batch_size, bptt)
    seen = 0
    for k, (x, y) in enumerate(windows(batches, start=start)):
        ex, ey = batches.window(k + start)
        assert np.array_equal(x.numpy(), ex) and np.array_equal(y.numpy(), ey)
        seen += 1
    assert seen == len(batches) - start > 0


def test_too_small_corpus_says_how_many_tokens_and_which_flag():
    with pytest.raises(CharlmError) as error:
        StreamBatches(np.arange(100), 8, 32, "validation")
    message = str(error.value)
    assert "264" in message and "--batch-size" in message and "--val-fraction" in message
