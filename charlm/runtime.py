"""Importing Keras on the TensorFlow backend, quietly, and only when a command needs it."""

from __future__ import annotations

import contextlib
import os
import sys

from charlm.errors import CharlmError

# XLA's copy insertion with region analysis (off by default on CPU): it lets a loop update a
# buffer in place when readers of that buffer inside the loop body are not all inputs of the
# update, where the default analysis copies the whole buffer every iteration.
_REGION_ANALYSIS = "--xla_cpu_copy_insertion_use_region_analysis"
_region_analysis = None  # whether it is in force, decided on the first import_keras()


def _request_region_analysis() -> bool:
    """Asks XLA for region analysis unless XLA_FLAGS already decides, and says whether it is in
    force. XLA reads XLA_FLAGS once, at its first compilation: a flag added after that has no
    effect, so charlm counts on its own only when TensorFlow was not loaded yet."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _REGION_ANALYSIS in flags:  # the user's own setting
        return f"{_REGION_ANALYSIS}=false" not in flags
    os.environ["XLA_FLAGS"] = f"{flags} {_REGION_ANALYSIS}=true".strip()
    return "tensorflow" not in sys.modules


def xla_region_analysis() -> bool:
    """Whether XLA compiles this process's loops with region analysis (see above): the LSTM
    backward pass then writes its gate gradients over the gates it reads (charlm.nn.kernels),
    which without it would cost a copy of the gates every step."""
    return bool(_region_analysis)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 while TensorFlow's native libraries load.

    They print absl/CUDA start-up notices straight to fd 2 (bypassing Python and
    TF_CPP_MIN_LOG_LEVEL), which would bury charlm's one-line messages.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Return the ``keras`` module, refusing any backend but TensorFlow.

    charlm's trainer, sampler and distribution code use ``tf.function``,
    ``tf.distribute`` and tf.data directly, so JAX and PyTorch backends are not
    supported; it says so up front rather than training something subtly wrong.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow's pooling (BFC) allocator for host memory instead of plain malloc. A training
    # step allocates tens of megabytes of temporaries (the kernels' per-step outputs, XLA's
    # buffers); from malloc they are fresh pages every step, and the page faults cost more
    # than some of the products: 1.2x training throughput (LSTM 2x256, B=64, 2-core CPU).
    # TensorFlow reads it when it first allocates, so it must be set before that.
    # TF_CPU_ALLOCATOR_USE_BFC=false in the environment turns it off.
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    global _region_analysis
    if _region_analysis is None:
        _region_analysis = _request_region_analysis()
    with _quiet_stderr():
        import keras
        import tensorflow as tf

        # Device discovery prints its own notices (no CUDA driver, ...) the first
        # time anything asks; ask now, while fd 2 is silenced.
        tf.config.list_physical_devices()
        tf.get_logger().setLevel("ERROR")
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise CharlmError(
            f"charlm needs the TensorFlow backend of Keras, but KERAS_BACKEND is {backend!r}; "
            "unset KERAS_BACKEND or set it to tensorflow"
        )
    return keras
