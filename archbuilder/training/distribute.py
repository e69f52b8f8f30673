"""Where a run trains: one device, several local devices, or several machines (tf.distribute).

    none          Keras's default: one device
    mirrored      MirroredStrategy over this machine's GPUs; without GPUs, `devices` logical CPUs
    multi-worker  MultiWorkerMirroredStrategy over the machines TF_CONFIG names (cluster.py)
    auto          mirrored where there are several GPUs (or --devices N > 1), else none

Keras 3 leaves gaps in multi-worker training that are closed here and in the callbacks:
- its `fit` reduces each step's scalar metrics with `strategy.reduce(MEAN, value, axis=0)`, which
  fails on scalars across workers (keras-team/keras#20585, tensorflow/tensorflow#72388);
  `_MultiWorker.reduce` reduces scalars over replicas only, which is what was meant;
- a worker that dies leaves the others waiting in a collective, and a peer that never arrives
  blocks the strategy's creation; every collective gets a timeout, and a watchdog process ends a
  worker that makes no progress for that long (`Watchdog`).
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass

from archbuilder.errors import Remedy, UserError, shown
from archbuilder.training.cluster import Cluster, check_port_free, read_cluster

MODES = ("none", "mirrored", "multi-worker", "auto")
# EX_TEMPFAIL: the run folder is intact, and rerunning the same command with --resume continues.
WORKER_LOST_EXIT_CODE = 75
DEFAULT_WORKER_TIMEOUT = 600  # seconds without progress before a worker gives the cluster up


# How long workers wait for the chief's end of a run (evaluating a test set of any size, saving):
# a day. The wait ends at once when the chief's process ends, as the coordination service does.
_END_BARRIER_MS = 24 * 3600 * 1000


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

    def leave_together(self) -> None:
        """Wait here until every worker of the cluster has reached the end of its run.

        The chief keeps working after the last training step (its test evaluation, saving, the
        confusion matrix) while the other workers are done. A worker that exited then would stop
        sending heartbeats to the coordination service the chief hosts, whose native error lines
        ("The tasks have crashed", "stopped sending heartbeats") then reach the chief's terminal
        after a run that succeeded. So every worker waits at one barrier, which the chief reaches
        when it has finished; then all end within moments of each other. A barrier that fails (a
        peer died meanwhile) changes nothing of a run that is over: it is ignored."""
        if self.cluster is None:
            return
        from tensorflow.python.eager import context

        try:
            context.context().wait_at_barrier("archbuilder-run-end", _END_BARRIER_MS)
        except Exception:  # noqa: BLE001  (any runtime error: the run's result is already decided)
            pass

    def describe(self) -> str:
        if self.mode == "none":
            return "one device"
        devices = ", ".join(self.strategy.extended.worker_devices)
        if self.cluster is None:
            return f"mirrored over {self.replicas} devices ({devices})"
        return f"{self.cluster.describe()}, {self.replicas} replicas in all; this worker's devices: {devices}"


def planned_distribution(mode: str) -> Cluster | None:
    """The cluster a `multi-worker` run joins, TF_CONFIG checked (None for other modes). Called
    before TensorFlow is imported, so that a mistake there costs no wait."""
    return read_cluster() if mode == "multi-worker" else None


def start(mode: str, devices: int | None = None, worker_timeout: float = DEFAULT_WORKER_TIMEOUT) -> Distribution:
    """Set up `mode`. Must run before TensorFlow runs any operation (devices are fixed then)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if mode == "auto":
        mode = "mirrored" if (len(gpus) > 1 and devices != 1) or (devices or 1) > 1 else "none"
    if mode == "none":
        if devices and devices > 1:
            raise UserError("", Remedy("{devices} needs {distribute}", (("devices", devices), ("distribute", "mirrored"))))
        return Distribution("none", None)
    cluster = planned_distribution(mode)
    if cluster is None:
        return Distribution("mirrored", tf.distribute.MirroredStrategy(_local_devices(tf, gpus, devices)))
    check_port_free(cluster)
    _worker_devices(tf, gpus, devices)
    # Creating the strategy connects to every peer; a peer that never arrives would block it forever.
    watchdog = Watchdog(worker_timeout, f"{cluster.describe()}: the other workers did not all arrive within "
                        f"{worker_timeout:g} s; check TF_CONFIG's addresses and start every worker. Nothing was written")
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=worker_timeout)
    strategy = _MultiWorker(tf)(communication_options=options)
    watchdog.say(f"{cluster.describe()}: no progress for {worker_timeout:g} s: another worker "
                 "stopped or is unreachable")
    watchdog.beat()
    return Distribution("multi-worker", strategy, cluster, watchdog)


def check_last_batches(counts: dict[str, int], batch_size: int, replicas: int) -> None:
    """Every replica needs an image of every global batch: a last batch of fewer images than
    replicas would leave one with none, and TensorFlow's step fails on it (shapes mismatch).
    `counts`: images per split that is fed through the replicas ("training", "validation")."""
    if replicas < 2:
        return
    if batch_size % replicas:  # Keras builds the model from the first batch's replica slices summed
        raise UserError(
            f"the global batch of {batch_size} does not split evenly over {replicas} replicas; use a multiple "
            f"of {replicas}", Remedy(" (e.g. {batch_size})", (("batch_size", max(replicas, batch_size - batch_size % replicas)),)))
    for name, count in counts.items():
        last = count % batch_size
        if 0 < last < replicas:
            fits = [b for b in range(max(replicas, batch_size - 8), batch_size + 9)
                    if b % replicas == 0 and all(c % b == 0 or c % b >= replicas for c in counts.values())]
            hint = Remedy(" (e.g. {batch_size})", (("batch_size", min(fits, key=lambda b: abs(b - batch_size))),)) if fits else None
            raise UserError(
                f"{count} {name} images in global batches of {batch_size} leave a last batch of {last}, "
                f"fewer than the {replicas} replicas: one would have no image. Choose a batch size that "
                f"leaves none or at least {replicas}", hint)


def inference_call(model):
    """The model's forward pass as one tf.function, called outside any replica: it reads each
    weight's local copy, so it needs no collective and may run on the chief alone."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False))


# Mirrored replicas on one CPU split it into logical devices: a way to run (and test) what a
# machine of several GPUs runs, never faster than one replica. 64 is beyond any use of that.
MAX_CPU_REPLICAS = 64


def _local_devices(tf, gpus, devices: int | None) -> list[str]:
    if gpus:
        return [f"/gpu:{i}" for i in range(len(_local_gpus(gpus, devices) if devices else gpus))]
    count = devices or 1
    if count > MAX_CPU_REPLICAS:  # 100,000 took minutes of silence, 2**31-1 a MemoryError, before any check
        raise UserError("", Remedy(f"{{devices}}: at most {MAX_CPU_REPLICAS} replicas on a CPU without GPUs (each one "
                                   "logical device of the one CPU, with its own threads and copy of the weights)",
                                   (("devices", count),)))
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:  # one physical CPU as `count` logical devices, each with its own executor
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise UserError("", Remedy("{devices} must be set before TensorFlow starts; train in a fresh process")) from None
    return [f"/cpu:{i}" for i in range(count)]


def _worker_devices(tf, gpus, devices: int | None) -> None:
    """`devices` replicas on this worker: MultiWorkerMirroredStrategy takes every GPU it sees, so the
    first N are made the visible ones. Without GPUs it runs one replica per worker on the CPU (it
    does not use logical CPU devices), so more is refused rather than ignored."""
    if not devices:
        return
    if not gpus:
        if devices > 1:
            raise UserError("", Remedy(
                "{devices} under {distribute}: without GPUs each worker trains one replica on its CPU "
                "(TensorFlow's multi-worker strategy takes GPUs only); leave it out, or give each worker GPUs",
                (("devices", devices), ("distribute", "multi-worker"))))
        return
    tf.config.set_visible_devices(_local_gpus(gpus, devices), "GPU")


def _local_gpus(gpus, devices: int):
    if devices > len(gpus):
        raise UserError("", Remedy(f"{{devices}}: this machine has {len(gpus)} GPU(s)", (("devices", devices),)))
    return gpus[:devices]


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

    A collective waiting on a dead peer may not return, and creating the strategy while a peer
    never arrives blocks inside TensorFlow's C++ runtime holding Python's GIL (so no thread of
    this process could act, and it ignores SIGTERM). The watch is therefore a small separate
    process: told of progress through a pipe, it prints the message and SIGKILLs this process
    when told nothing for `timeout` seconds, and ends by itself when this process ends.
    """

    def __init__(self, timeout: float, message: str):
        import subprocess

        self.timeout = timeout
        self._message = message
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCH, str(os.getpid()), str(timeout), message],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True,
        )

    def _send(self, line: str) -> None:
        try:
            self.process.stdin.write(line.encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the watch has ended: nothing is watched any more

    def say(self, message: str, run_root: str | os.PathLike | None = None) -> None:
        """What to print if the time runs out from now on (training has started: say how to resume,
        with the run folder once it is known)."""
        self._message = message
        self._send("say " + _resume_hint(message, run_root).replace("\n", " "))

    def resume_at(self, run_root: str | os.PathLike) -> None:
        """The run folder is known: the message names it in the command to resume."""
        self.say(self._message, run_root)

    def beat(self) -> None:
        self._send("beat")

    def stop(self) -> None:
        """Training is over: what is left (the chief's evaluation) needs no other worker."""
        self._send("stop")


def _resume_hint(message: str, run_root=None) -> str:
    folder = shown(run_root) if run_root is not None else "RUN_DIR"
    return (f"{message}. Rerun the same command on every worker with --resume {folder}; the run folder "
            "keeps the last finished epoch.")


# The watch process: no TensorFlow, a few MiB. argv: parent pid, timeout seconds, message.
# It ignores SIGINT and SIGTERM: Ctrl-C reaches the terminal's whole process group, and the trainer
# answers it by stopping with the other workers, which is progress the watch must keep watching.
_WATCH = r"""
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
deadline, pending = time.monotonic() + timeout, b""
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        try:
            os.kill(parent, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sys.exit(0)
    if select.select([0], [], [], min(left, 1.0))[0]:
        data = os.read(0, 65536)
        if not data:
            sys.exit(0)  # the trainer has ended
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            if line == b"beat":
                deadline = time.monotonic() + timeout
            elif line == b"stop":
                sys.exit(0)
            elif line.startswith(b"say "):
                message = line[4:].decode()
"""
