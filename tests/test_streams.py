"""StreamBatches on a memory-mapped token file: the same windows as on an array, nothing copied."""

import numpy as np
import pytest

from charlm.data.streams import StreamBatches
from charlm.data.tokenfile import token_dtype
from charlm.training.windows import windows


@pytest.fixture
def mapped(tmp_path):
    """10,007 token ids 0..250 as a uint8 file, memory-mapped read-only, and the same in memory."""
    ids = (np.arange(10_007) * 7 % 251).astype(np.uint8)
    path = tmp_path / "ids.tokens"
    ids.tofile(path)
    return np.memmap(path, dtype=np.uint8, mode="r"), ids.astype(np.int32)


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


@pytest.mark.slow  # imports TensorFlow
def test_dataset_over_a_memmap_yields_the_windows_in_order(mapped):
    memmap, _ = mapped
    batches = StreamBatches(memmap, 4, 50)
    for k, (x, y) in enumerate(windows(batches, start=2)):
        ex, ey = batches.window(k + 2)
        assert np.array_equal(x.numpy(), ex) and np.array_equal(y.numpy(), ey)
    assert k + 3 == len(batches)


@pytest.mark.parametrize("vocab_size,dtype", [(2, np.uint8), (256, np.uint8), (257, np.uint16),
                                              (65_536, np.uint16), (65_537, np.uint32)])
def test_token_dtype_is_the_narrowest_that_fits(vocab_size, dtype):
    assert token_dtype(vocab_size) == dtype
