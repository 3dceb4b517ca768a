"""Choosing devices and a tf.distribute strategy, and feeding streams to replicas.

Semantics under R replicas (one device is the case R = 1):

- The global batch of B streams is split into R blocks of B/R consecutive rows;
  replica r always gets block r of every window, so it carries the states of
  its own streams from one window to the next, exactly as one device would.
- The loss is the mean over all B x T tokens of the window.
- Gradients are summed across replicas *before* clipping, so ``--clipnorm``
  clips the same global gradient as on one device. (Keras' optimizer option
  ``clipnorm`` would clip each replica's share on its own, before the
  all-reduce, which is not the same thing.)
"""

from __future__ import annotations

import json
import os

from charlm.config import DeviceConfig, flag
from charlm.errors import CharlmError
from charlm.runtime import import_keras

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)


def _tpu_available() -> bool:
    # Asking a TPU resolver on an ordinary machine contacts a cloud metadata
    # server and can hang; only ask where a TPU is announced.
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR") or os.path.exists("/dev/accel0"))


def make_strategy(config: DeviceConfig):
    """The strategy for ``config`` and a one-line description of the devices it uses."""
    device, strategy = config.device, config.strategy
    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    # Physical, not logical, devices: listing logical ones starts TensorFlow's
    # runtime, after which multi-worker collectives can no longer be set up.
    gpus = [] if device == "cpu" else tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise CharlmError("--device gpu: TensorFlow sees no GPU on this machine; use --device cpu or auto")
    want_tpu = strategy == "tpu" or device == "tpu" or (strategy == "auto" and device == "auto" and _tpu_available())
    if want_tpu:
        return _tpu_strategy()
    if strategy == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise CharlmError("--strategy multi-worker reads the cluster from TF_CONFIG, which is not set")
        try:
            cluster = json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise CharlmError("TF_CONFIG is not valid JSON") from None
        chosen = tf.distribute.MultiWorkerMirroredStrategy()
        task = cluster.get("task", {})
        return chosen, (f"MultiWorkerMirroredStrategy: {chosen.num_replicas_in_sync} replicas, "
                        f"this is {task.get('type', 'worker')} {task.get('index', 0)}")
    local = tf.config.list_logical_devices("GPU" if gpus else "CPU")
    names = [d.name for d in local]
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1 and device != "cpu"):
        chosen = tf.distribute.MirroredStrategy(names)
        return chosen, f"MirroredStrategy over {len(names)} devices: {', '.join(names)}"
    chosen = tf.distribute.OneDeviceStrategy(names[0])
    return chosen, f"one device: {names[0]}"


def _tpu_strategy():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        raise CharlmError(f"no TPU found ({str(error).splitlines()[0][:200]}); use --device cpu or gpu") from None
    chosen = tf.distribute.TPUStrategy(resolver)
    return chosen, f"TPUStrategy: {chosen.num_replicas_in_sync} TPU cores"


def check_batch(strategy, batch_size: int):
    """Every replica needs the same whole number of streams."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise CharlmError(
            f"{flag('batch_size')} {batch_size} does not split evenly over {replicas} replicas; "
            f"use a multiple of {replicas}"
        )
