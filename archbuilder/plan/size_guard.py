"""Refuse networks that would not fit in memory, before anything is allocated. No TensorFlow.

The estimate is float32 throughout (4 bytes a value). With P parameters, A activation values per
image (the outputs of every layer, the input included, and what a layer makes on the way and keeps:
attention's N x N scores per head) and a batch of B images:

    inference:  4 * P                  the weights
              + 4 * A * B              every layer's output (an upper bound: Keras frees outputs
                                       no later layer reads, but a shortcut keeps its input alive)
    training:   4 * P * (2 + S)        weights, their gradients, and S optimizer slots per weight
                                       (Adam/AdamW: m and v, S = 2; SGD with momentum and RMSprop:
                                       S = 1; plain SGD: S = 0)
              + 4 * A * B * 2          every output is kept for the backward pass, and each gets a
                                       gradient of its own size (freed as the backward pass moves
                                       on, so this too errs on the safe side)

`validate`, `info`, `build` and `plot` check inference for one image; `train` checks training
at the spec's batch size and optimizer.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal

from archbuilder.errors import Remedy, UserError
from archbuilder.plan.graph import Node, Plan

BYTES_PER_VALUE = 4  # float32
DEFAULT_LIMIT = 16 * 2**30  # the machines this runs on have 24 GiB
LIMIT_VARIABLE = "ARCHBUILDER_MAX_MEMORY"
# What raises the limit, in the API's words (the command line says --max-memory).
RAISE_THE_LIMIT = Remedy(f"; raise it with {{max_memory}} or {LIMIT_VARIABLE} if this machine really has the memory")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    weight_bytes: int
    activation_bytes: int  # for the whole batch
    largest: Node  # the node that contributes most, to point the user at

    @property
    def total(self) -> int:
        return self.weight_bytes + self.activation_bytes

    what: str = "one image"  # what was estimated, for the message

    def describe(self, limit: int) -> str:
        training = self.what.startswith("training")
        return (
            f"estimated memory{'' if self.what == 'one image' else ' for ' + self.what} {format_bytes(self.total)} "
            f"({'weights, gradients and optimizer slots' if training else 'weights'} {format_bytes(self.weight_bytes)}, "
            f"activations {format_bytes(self.activation_bytes)}) exceeds the limit of {format_bytes(limit)}"
        )  # followed by RAISE_THE_LIMIT


def optimizer_slots(optimizer: str, momentum: float = 0.0) -> int:
    """Values an optimizer keeps per weight (the S of the module's formula)."""
    return {"adam": 2, "adamw": 2, "rmsprop": 1}.get(optimizer, 1 if momentum else 0)


def estimate(plan: Plan, batch_size: int = 1, training: bool = False, slots: int = 2) -> MemoryEstimate:
    """The module's formula; `slots` (S) counts only when `training`."""
    weight_copies = 2 + slots if training else 1
    activation_copies = 2 if training else 1

    weights = [node.params * weight_copies * BYTES_PER_VALUE for node in plan.nodes]
    activations = [(math.prod(node.out_shape) + node.stats.working) * batch_size * activation_copies * BYTES_PER_VALUE
                   for node in plan.nodes]
    what = f"training with batch {batch_size}" if training else (
        "one image" if batch_size == 1 else f"a batch of {batch_size}")
    largest = max(range(len(weights)), key=lambda i: weights[i] + activations[i])  # the first, on ties
    return MemoryEstimate(sum(weights), sum(activations), plan.nodes[largest], what)


def memory_limit(option: str | None = None) -> int:
    """The limit from `option` (max_memory, --max-memory), else $ARCHBUILDER_MAX_MEMORY, else 16 GiB."""
    if option is not None:
        return parse_size(option)
    text = os.environ.get(LIMIT_VARIABLE)
    if text is None:
        return DEFAULT_LIMIT
    try:
        return parse_size(text)
    except UserError as error:  # say where the bad size came from: the user may not remember setting it
        raise UserError(f"{LIMIT_VARIABLE}: {error}") from None


# No machine has more memory than this (1 YiB = 2**80 bytes); a larger size is a typo, or a number
# like 1e400 that float() would turn into infinity and int() into an OverflowError.
MAX_SIZE = 2**80


def parse_size(text: str) -> int:
    """'16GiB', '500 MB', '2e10' -> bytes. Read as a decimal, exactly: never a float overflow."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match[2].lower() not in _UNITS:
        raise UserError(f"cannot read memory size '{text}': use e.g. 16GiB, 500MB or 2e10 (bytes)")
    number, unit = Decimal(match[1]), _UNITS[match[2].lower()]
    if number > Decimal(MAX_SIZE) / unit:  # compared before multiplying: 1e999999999 stays cheap
        raise UserError(f"memory size '{text}' is larger than any machine's memory (more than "
                        "2**80 bytes, 1 YiB); use e.g. 64GiB")
    size = int(number * unit)
    if size <= 0:
        raise UserError(f"memory size '{text}' is not positive: every network needs some memory; use e.g. 16GiB")
    return size


def format_bytes(count: int) -> str:
    if count >= 1024**6:  # sizes from absurd specs can exceed a float's range; Decimal formats any int
        return f"{Decimal(count):.2e} B"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover
