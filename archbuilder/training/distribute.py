"""Where a run trains: one device, several local devices, or several machines (tf.distribute).

    none          Keras's default: one device
    mirrored      MirroredStrategy over this machine's GPUs; without GPUs, `devices` logical CPUs
    multi-worker  MultiWorkerMirroredStrategy over the machines TF_CONFIG names (cluster.py)
    auto          mirrored where there are several GPUs (or --devices N > 1), else none

Keras 3 leaves gaps in multi-worker training that are closed here and in the callbacks:
- its `fit` reduces each step's scalar metrics with `strategy.reduce(MEAN, value, axis=0)`, which
  fails on scalars across workers (keras-team/keras#20585, tensorflow/tensorflow#72388);
  `_MultiWorker.reduce` reduces scalars over replicas only, which is what was meant;
- a worker that dies leaves the others waiting in a collective; every collective gets a timeout,
  and a watchdog ends a worker that makes no progress for that long (`Watchdog`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

from archbuilder.errors import UserError
from archbuilder.training.cluster import Cluster, check_port_free, read_cluster

MODES = ("none", "mirrored", "multi-worker", "auto")
# EX_TEMPFAIL: the run folder is intact, and rerunning the same command with --resume continues.
WORKER_LOST_EXIT_CODE = 75
DEFAULT_WORKER_TIMEOUT = 600  # seconds without progress before a worker gives the cluster up


class WorkerLost(UserError):
    exit_code = WORKER_LOST_EXIT_CODE


@dataclass
class Distribution:
    mode: str  # none, mirrored or multi-worker (auto resolved)
    strategy: object | None  # a tf.distribute.Strategy; None: Keras's default
    cluster: Cluster | None = None
    watchdog: Watchdog | None = None

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (one writer per run)."""
        return self.cluster is None or self.cluster.is_chief

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else nullcontext()

    def describe(self) -> str:
        if self.mode == "none":
            return "one device"
        devices = ", ".join(self.strategy.extended.worker_devices)
        if self.cluster is None:
            return f"mirrored over {self.replicas} devices ({devices})"
        return f"{self.cluster.describe()}, {self.replicas} replicas in all; this worker's devices: {devices}"


def start(mode: str, devices: int | None = None, worker_timeout: float = DEFAULT_WORKER_TIMEOUT) -> Distribution:
    """Set up `mode`. Must run before TensorFlow runs any operation (devices are fixed then)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if mode == "auto":
        mode = "mirrored" if (len(gpus) > 1 and devices != 1) or (devices or 1) > 1 else "none"
    if mode == "none":
        if devices and devices > 1:
            raise UserError(f"--devices {devices} needs --distribute mirrored or multi-worker")
        return Distribution("none", None)
    cluster = read_cluster() if mode == "multi-worker" else None
    if cluster is not None:
        check_port_free(cluster)
    local = _local_devices(tf, gpus, devices)
    if cluster is None:
        return Distribution("mirrored", tf.distribute.MirroredStrategy(local))
    # Creating the strategy connects to every peer; a peer that never arrives would block it forever.
    watchdog = Watchdog(worker_timeout, f"{cluster.describe()}: the other workers did not all arrive within "
                        f"{worker_timeout:g} s; check TF_CONFIG's addresses and start every worker")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
    strategy = _MultiWorker(tf)(communication_options=options)
    watchdog.message = (f"{cluster.describe()}: no progress for {worker_timeout:g} s: another worker "
                        "stopped or is unreachable")
    watchdog.beat()
    return Distribution("multi-worker", strategy, cluster, watchdog)


def inference_call(model):
    """The model's forward pass as one tf.function, called outside any replica: it reads each
    weight's local copy, so it needs no collective and may run on the chief alone."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False))


def _local_devices(tf, gpus, devices: int | None) -> list[str]:
    if gpus:
        if devices and devices > len(gpus):
            raise UserError(f"--devices {devices}: this machine has {len(gpus)} GPU(s)")
        return [f"/gpu:{i}" for i in range(devices or len(gpus))]
    count = devices or 1
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:  # one physical CPU as `count` logical devices, each with its own executor
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise UserError("--devices must be set before TensorFlow starts; run train in a fresh process") from None
    return [f"/cpu:{i}" for i in range(count)]


def _MultiWorker(tf):
    class MultiWorker(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            # Keras's fit reduces a whole (images, labels) batch to build the model symbolically;
            # this strategy reduces one value at a time.
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
            # keras-team/keras#20585: Keras's fit asks for axis 0 of the per-step scalar metrics.
            # The replicas' scalars are reduced across replicas alone (axis=None): their mean.
            if axis == 0 and _scalars(self, value):
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorker


def _scalars(strategy, value) -> bool:
    return all(getattr(v, "shape", None) is not None and v.shape.rank == 0
               for v in strategy.experimental_local_results(value))


class Watchdog:
    """Ends this process, with a clear message, when nothing has progressed for `timeout` seconds.

    A collective waiting on a dead peer may not return (and TensorFlow's own failure detection
    may end the process with a C++ abort instead of a message): this is the stated bound.
    """

    def __init__(self, timeout: float, message: str):
        self.timeout, self.message = timeout, message
        self.last = time.monotonic()
        thread = threading.Thread(target=self._watch, daemon=True, name="archbuilder-watchdog")
        thread.start()

    def beat(self) -> None:
        self.last = time.monotonic()

    def stop(self) -> None:
        """Training is over: what is left (the chief's evaluation) needs no other worker."""
        self.timeout = float("inf")

    def _watch(self) -> None:
        while True:
            left = self.last + self.timeout - time.monotonic()
            if left <= 0:
                print(f"{self.message}. Rerun the same command on every worker with --resume RUN_DIR; "
                      "the run folder keeps the last finished epoch.", file=sys.stderr, flush=True)
                os._exit(WORKER_LOST_EXIT_CODE)
            time.sleep(min(left, 1.0))
