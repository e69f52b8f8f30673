"""tf.distribute: mirrored training equals single-device training; real multi-worker runs of
`cli.py train` on 127.0.0.1 (one writer, equal weights, a killed worker, bad TF_CONFIG).

Every process here is bounded: subprocess timeouts, and process groups killed on the way out.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from train_support import REPO, TINY_SPEC, cli, cli_env, free_ports, image_folder

TINY_NO_BN = REPO / "tests" / "specs" / "tiny_no_bn.yaml"
# A worker that sees no progress for this long gives up (train --worker-timeout): short enough
# for tests, long enough for a loaded 2-core machine's TensorFlow start-up and first trace.
WORKER_TIMEOUT = 60
# Every process must have ended by then: the watchdog's bound plus TensorFlow's start and exit.
PROCESS_BOUND = WORKER_TIMEOUT + 90


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=16)


def _tf_config(ports: list[int], index: int, kind: str = "worker") -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": kind, "index": index}})


class Workers:
    """`cli.py train` worker processes, each in its own process group, killed on exit."""

    def __init__(self, tmp_path: Path):
        self.tmp_path, self.processes = tmp_path, []

    def start(self, args, tf_config: str, index: int) -> subprocess.Popen:
        scratch = self.tmp_path / f"tmp-{index}"  # the worker's TMPDIR: must be left empty
        scratch.mkdir(exist_ok=True)
        log = open(self.tmp_path / f"worker-{index}.log", "w")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "cli.py"), "train", *map(str, args), "--quiet",
             "--worker-timeout", str(WORKER_TIMEOUT)],
            cwd=REPO, env={**cli_env(), "TF_CONFIG": tf_config, "TMPDIR": str(scratch)},
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        process.log_path = log.name
        self.processes.append(process)
        return process

    def wait_all(self, bound: float = PROCESS_BOUND) -> list[str]:
        deadline = time.monotonic() + bound
        for process in self.processes:
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill_all()
                pytest.fail(f"a worker did not end within {bound} s:\n" + "\n".join(self.logs()))
        return self.logs()

    def logs(self) -> list[str]:
        return [Path(p.log_path).read_text() for p in self.processes]

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill_all()


def _fingerprints(log: str) -> list[str]:
    return re.findall(r"final weights ([0-9a-f]{16})", log)


# --- (a) MirroredStrategy on logical CPUs == one device ------------------------------------------

# 1e-5: the mirrored step computes each replica's mean loss gradient over half the batch and sums
# the halves in an all-reduce, where one device sums the whole batch at once; float32 rounds the
# two orders differently by about 1e-7 relative (a few ulps) per step, and convolutions on 8
# images may use other oneDNN kernels than on 16 (again rounding only). Over 6 steps of SGD at
# learning rate 0.05 on weights of order 0.1-1 that stays below 1e-6; 1e-5 leaves a margin
# while any real difference (a replica seeing the wrong slice, a missing all-reduce, a gradient
# scaled by the replica count) moves weights by 1e-3 or more, which the test also checks happens.
EQUAL_WEIGHTS = 1e-5


def test_mirrored_on_two_logical_cpus_trains_the_single_device_weights(photos):
    spec = TINY_NO_BN  # no batch norm: no layer sees only its replica's slice (see README, Batch norm)
    overrides = ["training.optimizer=sgd", "training.momentum=0", "training.learning_rate=0.05",
                 "training.fast_cpu_kernels=false"]
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "helpers" / "mirrored_equivalence.py"), str(spec), str(photos),
         "2", "2", *[a for s in overrides for a in ("--set", s)]],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == 2 and figures["steps"] == 6
    assert figures["max_change"] > 1e-3  # training moved the weights: the comparison means something
    assert figures["max_difference"] < EQUAL_WEIGHTS, figures


def test_synchronized_batch_norm_reaches_keras():
    from archbuilder.keras.graph import build_model
    from archbuilder.spec.validate import load_checked_spec

    import keras

    for synchronized in (True, False):
        spec = load_checked_spec(TINY_SPEC, overrides=[f"defaults.batch_norm.synchronized={str(synchronized).lower()}"]).spec
        layers = [layer for layer in build_model(spec).layers if isinstance(layer, keras.layers.BatchNormalization)]
        assert layers and all(layer.synchronized is synchronized for layer in layers)


# --- (b) two real workers: one writer, equal weights ----------------------------------------------

RUN_FILES = {"best.keras", "checkpoints", "classes.txt", "confusion_matrix.png", "curves.png", "history.csv",
             "metrics.json", "run.json", "spec.yaml", "state.json"}


def test_two_workers_train_equal_weights_and_only_the_chief_writes(tmp_path, photos):
    ports = free_ports(2)
    runs = [tmp_path / "chief-run", tmp_path / "worker-run"]  # as on two machines: each its own --out
    with Workers(tmp_path) as workers:
        for index in (0, 1):
            workers.start([TINY_SPEC, "--data", photos, "--test", photos, "--epochs", "3", "--out", runs[index],
                           "--distribute", "multi-worker"], _tf_config(ports, index), index)
        logs = workers.wait_all()
    assert [p.returncode for p in workers.processes] == [0, 0], "\n".join(logs)
    chief, worker = (_fingerprints(log) for log in logs)
    assert len(chief) == 1 and chief == worker, logs  # every weight, BatchNorm statistics included
    assert RUN_FILES <= {p.name for p in runs[0].iterdir()}
    assert not runs[1].exists()  # the other worker wrote no run folder
    assert [p for p in (tmp_path / "tmp-1").rglob("*")] == []  # and left nothing in its TMPDIR
    state = json.loads((runs[0] / "state.json").read_text())
    assert state["epochs_done"] == 3 and len(state["history"]) == 3
    evaluated = cli("evaluate", runs[0] / "best.keras", "--data", photos, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["images"] == 48


# --- (c) SIGKILL one worker: the other ends within the bound, --resume finishes ------------------

@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["worker-killed", "chief-killed"])
def test_a_killed_worker_ends_the_others_and_resume_finishes(tmp_path, photos, victim):
    ports, run = free_ports(2), tmp_path / "run"  # one folder: the resume reads it on both
    args = [TINY_SPEC, "--data", photos, "--epochs", "4", "--out", run, "--distribute", "multi-worker"]
    with Workers(tmp_path) as workers:
        for index in (0, 1):
            workers.start(args, _tf_config(ports, index), index)
        deadline = time.monotonic() + 300
        while not (run / "state.json").exists():  # the first epoch finished: kill mid-run
            assert time.monotonic() < deadline and all(p.poll() is None for p in workers.processes), workers.logs()
            time.sleep(0.2)
        killed_at = time.monotonic()
        os.killpg(workers.processes[victim].pid, signal.SIGKILL)
        survivor = workers.processes[1 - victim]
        survivor.wait(timeout=PROCESS_BOUND)
        ended_after = time.monotonic() - killed_at
        log = workers.logs()[1 - victim]
    assert survivor.returncode != 0 and ended_after < WORKER_TIMEOUT + 30, (ended_after, log)
    assert "Traceback" not in log, log
    if survivor.returncode == 75:
        assert "--resume" in log
    done = json.loads((run / "state.json").read_text())["epochs_done"]
    assert 1 <= done < 4
    ports, again = free_ports(2), tmp_path / "resume"
    again.mkdir()
    with Workers(again) as workers:
        for index in (0, 1):
            workers.start(["--resume", run, "--distribute", "multi-worker"], _tf_config(ports, index), index)
        logs = workers.wait_all()
    assert [p.returncode for p in workers.processes] == [0, 0], logs
    state = json.loads((run / "state.json").read_text())
    assert [row["epoch"] for row in state["history"]] == [1, 2, 3, 4]
    assert _fingerprints(logs[0]) == _fingerprints(logs[1])


# --- (d) bad TF_CONFIG: one clear line, bounded, nothing written ---------------------------------

@pytest.mark.parametrize("tf_config, message", [
    ("{not json", "TF_CONFIG: not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}',
     "unknown task type 'ps'"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "evaluator", "index": 0}}',
     "task.type: 'evaluator' is not a task type of the cluster"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 2}}',
     "task.index: 2 is out of range"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "is not a host:port address"),
    ("", "--distribute multi-worker needs TF_CONFIG"),
    ("[1, 2]", "TF_CONFIG: must be a JSON object"),
], ids=["malformed-json", "unknown-task-type", "task-type-not-in-cluster", "index-out-of-range", "no-port",
        "missing", "not-an-object"])
def test_bad_tf_config_is_a_clear_line(tf_config, message):
    from archbuilder.errors import UserError
    from archbuilder.training.cluster import read_cluster

    with pytest.raises(UserError, match=re.escape(message)) as caught:
        read_cluster(tf_config)
    assert "\n" not in str(caught.value)


def test_a_port_in_use_exits_2_before_anything_is_written(tmp_path, photos):
    with socket.socket() as taken:  # TensorFlow's gRPC server would abort the process on it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1], free_ports(1)[0]]
        result = subprocess.run(
            [sys.executable, str(REPO / "cli.py"), "train", str(TINY_SPEC), "--data", str(photos),
             "--out", str(tmp_path / "run"), "--distribute", "multi-worker"],
            cwd=REPO, env={**cli_env(), "TF_CONFIG": _tf_config(ports, 0)}, capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 2 and f"port {ports[0]} is already in use" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_peer_that_never_arrives_ends_the_worker_within_the_timeout(tmp_path, photos):
    ports = free_ports(2)
    with Workers(tmp_path) as workers:
        started = time.monotonic()
        workers.start([TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--distribute", "multi-worker"],
                      _tf_config(ports, 0), 0)
        log = workers.wait_all()[0]
    # Blocked inside TensorFlow's C++ start-up, the worker is ended by its watchdog process (SIGKILL).
    assert workers.processes[0].returncode == -signal.SIGKILL, log
    assert "did not all arrive within 60 s" in log and "Traceback" not in log, log
    assert time.monotonic() - started < PROCESS_BOUND
    assert not (tmp_path / "run").exists()
