"""TF_CONFIG, checked before TensorFlow sees it: every mistake is one clear line, never a hang.

TensorFlow reads TF_CONFIG when MultiWorkerMirroredStrategy is created; a malformed value there is
a C++ error, an unknown task type or index a Python traceback deep in the cluster resolver, and
a port already taken a gRPC abort. This module reads the same JSON and refuses it first. No
TensorFlow is imported here.

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass

from archbuilder.errors import NOT_JSON, Remedy, UserError, json_reason

# Task types that train; MultiWorkerMirroredStrategy has no parameter servers or evaluators.
TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    task_type: str
    task_index: int
    addresses: dict[str, list[str]]  # task type -> "host:port" per index

    @property
    def workers(self) -> int:
        return sum(len(self.addresses.get(kind, ())) for kind in TRAINING_TASKS)

    @property
    def is_chief(self) -> bool:
        """The one writer: the `chief` task, or worker 0 where there is no chief (TensorFlow's rule)."""
        if "chief" in self.addresses:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def rank(self) -> int:
        """0 for the chief, then the workers in order: the worker's place in the cluster."""
        offset = len(self.addresses.get("chief", ()))
        return self.task_index if self.task_type == "chief" else offset + self.task_index

    @property
    def address(self) -> str:
        return self.addresses[self.task_type][self.task_index]

    def describe(self) -> str:
        return f"{self.task_type} {self.task_index} of {self.workers} ({self.address})"

    def lost_peers(self, error_text: str) -> list[str]:
        """The other tasks a TensorFlow error names (`/job:worker/replica:0/task:1`, or an address),
        described; where it names none and there is one other task, that one: it is the one lost."""
        # "The following tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1": the list
        error_text = error_text.split("unhealthy", 1)[-1]
        others = [(kind, index) for kind in TRAINING_TASKS for index in range(len(self.addresses.get(kind, ())))
                  if (kind, index) != (self.task_type, self.task_index)]
        named = [(kind, index) for kind, index in others
                 if re.search(rf"/job:{kind}(?:/replica:\d+)?/task:{index}(?!\d)", error_text)
                 or self.addresses[kind][index] in error_text]
        return [f"{kind} {index} ({self.addresses[kind][index]})"
                for kind, index in (named or (others if len(others) == 1 else []))]


def read_cluster(text: str | None = None) -> Cluster:
    """The cluster TF_CONFIG describes (`text`, or the environment's), checked."""
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text or not text.strip():
        raise UserError("", Remedy(
            "{distribute} needs TF_CONFIG, e.g. TF_CONFIG='{{\"cluster\": {{\"worker\": "
            "[\"host1:12345\", \"host2:12345\"]}}, \"task\": {{\"type\": \"worker\", \"index\": 0}}}}'",
            (("distribute", "multi-worker"),)))
    try:
        config = json.loads(text)
    except NOT_JSON as error:
        reason = f"{error.msg} at character {error.pos}" if isinstance(error, json.JSONDecodeError) else json_reason(error)
        raise UserError(f"TF_CONFIG: not valid JSON: {reason} (received: {text[:200]!r})") from None
    if not isinstance(config, dict):
        raise UserError(f"TF_CONFIG: must be a JSON object with 'cluster' and 'task' (received: {text[:200]!r})")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise UserError("TF_CONFIG: 'cluster' must map task types to lists of host:port addresses")
    if not isinstance(task, dict):
        raise UserError("TF_CONFIG: 'task' must be an object {\"type\": ..., \"index\": ...}")
    addresses: dict[str, list[str]] = {}
    for kind, hosts in cluster.items():
        if kind not in TRAINING_TASKS:
            raise UserError(f"TF_CONFIG: cluster: unknown task type {kind!r}; multi-worker training uses 'chief' and 'worker'")
        if not isinstance(hosts, list) or not hosts:
            raise UserError(f"TF_CONFIG: cluster.{kind}: must be a non-empty list of host:port addresses")
        for host in hosts:
            _check_address(f"cluster.{kind}", host)
        addresses[kind] = list(hosts)
    if len(addresses.get("chief", ())) > 1:
        raise UserError(f"TF_CONFIG: cluster.chief: there can be only one chief (received {len(addresses['chief'])})")
    every = [host for hosts in addresses.values() for host in hosts]
    repeated = sorted({host for host in every if every.count(host) > 1})
    if repeated:
        raise UserError(f"TF_CONFIG: cluster: {', '.join(repeated)} is given to more than one task")
    kind, index = task.get("type"), task.get("index", 0)
    if not isinstance(kind, str) or kind not in addresses:  # a list or object is no key (a TypeError)
        known = ", ".join(repr(k) for k in addresses)
        raise UserError(f"TF_CONFIG: task.type: {kind!r} is not a task type of the cluster ({known})")
    if isinstance(index, bool) or not isinstance(index, int):
        raise UserError(f"TF_CONFIG: task.index: must be an integer, the task's place in cluster.{kind} "
                        f"(received: {json.dumps(index)[:60]}, a {_json_type(index)})")
    if not 0 <= index < len(addresses[kind]):
        raise UserError(
            f"TF_CONFIG: task.index: {index!r} is out of range: the cluster has {len(addresses[kind])} "
            f"{kind} task(s), indexes 0 to {len(addresses[kind]) - 1}"
        )
    return Cluster(kind, index, addresses)


def _json_type(value) -> str:
    return {bool: "boolean", str: "string", float: "number", list: "list", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__)


def _check_address(where: str, host) -> None:
    if not isinstance(host, str) or ":" not in host:
        raise UserError(f"TF_CONFIG: {where}: {host!r} is not a host:port address")
    port = host.rpartition(":")[2]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"TF_CONFIG: {where}: {host!r} has no valid port (1 to 65535)")


def check_port_free(cluster: Cluster) -> None:
    """This task's server port must be free; TensorFlow's gRPC server would abort the process."""
    port = int(cluster.address.rpartition(":")[2])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as gRPC sets it: a port left in TIME_WAIT by an earlier run is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise UserError(
                f"TF_CONFIG: {cluster.describe()}: port {port} is already in use "
                f"({error.strerror}); stop what holds it or give this task another port"
            ) from None
