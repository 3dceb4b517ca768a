"""The windows of :class:`charlm.data.streams.StreamBatches` as tf.data pipelines that feed
the training steps: in order, from any window on (a resumed run starts mid-epoch), on one
device or split across replicas (replica r always gets rows ``r*b : (r+1)*b``, b = B/R: the
streams whose states it carries; see :mod:`charlm.training.distribute`)."""

from __future__ import annotations

from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

# Windows read ahead of the training step: one slice each, so a couple suffice.
PREFETCH = 2


def pipeline_options():
    """tf.data options for the window pipelines: autotuning off. The pipeline is one slice
    per window and gains nothing from it, and with it on, dropping an iterator before its end
    (a segment cut short, a stopped run, every epoch's end) stalled the program for seconds."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def windows(batches, start: int = 0, stop: int | None = None):
    """A ``tf.data.Dataset`` of windows ``start, start+1, ..., stop-1`` (default: to the last)
    of ``batches``, in order, prefetched: (x, y), each (B, T) int32."""
    shape = (batches.batch_size, batches.bptt)

    def load(k):
        x, y = tf.numpy_function(batches.window, [k], (tf.int32, tf.int32), stateful=False)
        return tf.ensure_shape(x, shape), tf.ensure_shape(y, shape)

    numbers = tf.data.Dataset.range(start, len(batches) if stop is None else stop)
    return numbers.map(load).prefetch(PREFETCH).with_options(pipeline_options())


def replica_windows(strategy, batches, start: int = 0, stop: int | None = None):
    """A distributed dataset of windows ``start, ..., stop-1`` (default: to the last) where
    replica r gets rows ``r*b : (r+1)*b`` (b = B/R) of each window: its own streams, always.

    Each input pipeline (one per worker) yields, for every window, the blocks of its local
    replicas in order; tf.distribute hands consecutive elements of a pipeline to consecutive
    local replicas.
    """
    replicas = strategy.num_replicas_in_sync
    rows = batches.batch_size // replicas
    shape = (rows, batches.bptt)

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first_block = context.input_pipeline_id * local

        def load(element):
            window, block = element // local, first_block + element % local

            def rows_of(k, b):
                x, y = batches.window(int(k))
                return x[b * rows : (b + 1) * rows], y[b * rows : (b + 1) * rows]

            x, y = tf.numpy_function(rows_of, [window, block], (tf.int32, tf.int32), stateful=False)
            return tf.ensure_shape(x, shape), tf.ensure_shape(y, shape)

        elements = tf.data.Dataset.range(start * local, (len(batches) if stop is None else stop) * local)
        return elements.map(load).prefetch(PREFETCH).with_options(pipeline_options())

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(dataset_fn, options)
