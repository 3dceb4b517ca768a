"""How charlm runs: Keras on the TensorFlow backend, started quietly with the settings charlm
needs, and the one decision of which kernels a model runs on and whether XLA compiles them.

Every module that uses TensorFlow calls :func:`import_keras` before importing it, because
TensorFlow reads some of these settings (the host allocator, XLA's flags) only when it starts.
This is the one module that imports TensorFlow inside a function: it must set them first.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

from charlm.errors import CharlmError

# XLA fuses each step's gate arithmetic and removes the per-op cost of the time loop, but it
# compiles once per batch shape (seconds), which small models do not win back.
XLA_MIN_HIDDEN = 128

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

    charlm's training steps, sampler and distribution code use ``tf.function``,
    ``tf.distribute`` and tf.data directly, so JAX and PyTorch backends are not
    supported; it says so up front rather than training something subtly wrong.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow's pooling (BFC) allocator for host memory instead of plain malloc: a training
    # step's tens of megabytes of temporaries would otherwise be fresh pages, page faults and
    # all, every step (BENCHMARKS.md). TensorFlow reads it when it first allocates.
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


@dataclass(frozen=True)
class Kernels:
    """What a model's passes run on: ``charlm`` -- charlm's own kernels
    (:mod:`charlm.nn.kernels`) rather than the Keras layers; ``xla`` -- compiled with XLA."""

    charlm: bool
    xla: bool


def choose_kernels(model_config, on_gpu: bool, replicas: int = 1, charlm: bool | None = None) -> Kernels:
    """The kernels for a model of ``model_config`` (None: a model charlm did not build, which
    only Keras' layers can run). On a CPU charlm's kernels beat Keras' generic loop; on a GPU
    the Keras layers' cuDNN path beats both; ``charlm`` overrides that choice. XLA compiles
    charlm's kernels (it cannot compile cuDNN) from :data:`XLA_MIN_HIDDEN` units, on one
    replica (it does not compile the cross-replica sums of a distributed step)."""
    if charlm is None:
        charlm = model_config is not None and not on_gpu
    return Kernels(charlm, charlm and model_config is not None and replicas == 1
                   and model_config.hidden >= XLA_MIN_HIDDEN)
