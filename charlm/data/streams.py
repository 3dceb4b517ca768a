"""Laying a token sequence out as B parallel streams for truncated BPTT.

Starting from the sequential token ids of a split, e.g. the alphabet with B=4::

    a b c d e f g h i j k l m n o p q r s t u v w x

we cut it into B contiguous streams, dropping the few tokens that do not fit,
and stack them as the rows of a (B, L) matrix::

    ┌ a b c d e f ┐
    │ g h i j k l │
    │ m n o p q r │
    └ s t u v w x ┘

Each window of T columns is one batch: inputs ``streams[:, k*T : k*T+T]`` and
targets shifted one token to the right. Row i of batch k+1 continues row i of
batch k, which is what lets a recurrent state carry from one batch to the next
(stateful truncated BPTT): gradients flow within a window, the state across
windows. The rows are independent, so the model can't learn dependencies
between, say, "f" and "g" -- the price of batching. Nothing is shuffled.

Only whole windows are used (static shapes, as XLA and TPUs want), so up to
T tokens at the end of each stream are never predicted. :mod:`charlm.training.windows`
feeds the windows to the training steps.
"""

from __future__ import annotations

import numpy as np

from charlm.config import flag
from charlm.errors import CharlmError


class StreamBatches:
    """The (inputs, targets) windows of one split, each of shape (B, T)."""

    def __init__(self, ids, batch_size: int, bptt: int, split_name: str = "training"):
        ids = np.asarray(ids)
        needed = batch_size * (bptt + 1)
        if len(ids) < needed:
            raise CharlmError(
                f"the {split_name} split has {len(ids):,} tokens, but {flag('batch_size')} {batch_size} x "
                f"({flag('bptt')} {bptt} + 1) = {needed:,} are needed; lower {flag('batch_size')} or {flag('bptt')}"
                + (f", or raise {flag('val_fraction')}" if split_name == "validation" else ", or use a larger corpus")
            )
        self.batch_size = batch_size
        self.bptt = bptt
        stream_length = len(ids) // batch_size
        # (B, L): row i is the i-th contiguous stream.
        self.streams = ids[: batch_size * stream_length].reshape(batch_size, stream_length)
        # A window needs T inputs plus one more target token.
        self.num_windows = (stream_length - 1) // bptt

    def __len__(self) -> int:
        return self.num_windows

    @property
    def tokens_per_window(self) -> int:
        return self.batch_size * self.bptt

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of window ``k``, both (B, T) int32."""
        start = k * self.bptt
        x = self.streams[:, start : start + self.bptt]
        y = self.streams[:, start + 1 : start + self.bptt + 1]
        return x.astype(np.int32), y.astype(np.int32)

    def __iter__(self):
        for k in range(self.num_windows):
            yield self.window(k)
