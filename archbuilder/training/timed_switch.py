"""A convolution kernel that `train` switches on only for the shapes where it measured faster than
Keras's on *this* machine: timed once per machine and shape, then cached.

Whether another way of computing a convolution wins depends on the CPU's arithmetic rate against
its memory bandwidth, on oneDNN's kernel for the direct convolution, on the shape and on the batch
(winograd_choice.py and pointwise_choice.py give measured examples of each). So `train` times
forward pass plus both gradients of each candidate shape at the run's batch, Keras's op and the
other interleaved call by call, the fastest of REPEATS calls of each (other programs only ever add
time to a call), once, and keeps the answer in the user's cache folder under the machine key of the
other kernel choices (kernel_choice.py). The other kernel is switched on only where it took at most
SWITCH_BELOW of Keras's time.

Cache file, one per switch and machine key (`<cache_name>-<hash>.json`, beside kernel_choice.py's):

    {"format": 1, "machine": {...}, "shapes": {"14x14x256 k3x3 s1 same f256 b32 float32":
        {"ms": {"keras": 45.5, "winograd": 35.5}, "switch": true}}}

`null`: that kernel failed on this machine. Editing `switch` there forces a decision (tests do so).
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from typing import Callable

from archbuilder.runtime import quiet_loggers
from archbuilder.training.grouped_choice import interleaved_timings, kernel_steps
from archbuilder.training.instance_switch import gpu_present
from archbuilder.training.kernel_choice import (
    SWITCH_BELOW, KernelChoice, cache_path, decided_where, machine_key, read_shapes, untimed_shapes, write_shapes,
)

CACHE_FORMAT = 1
REPEATS = 3  # timed calls per kernel, interleaved; the fastest is kept
# Seconds of timing a run for the budgeted switches together (see TimingBudget). 2.5: with 3.0,
# EfficientNet-B1's first run on a machine came to 8.8-9.5 s extra on the Zen 5 (bench/RESULTS.md,
# thirteenth and fourteenth sessions), too near the 10 s for a noisier machine.
TIMING_BUDGET_S = 2.5


@dataclass
class TimingBudget:
    """Seconds of timing left in this run, shared by the budgeted switches. The timing happens
    before a machine's first step, which issue 21 holds within 10 s of a later one: each switch
    times at least one shape a run, but begins no further shape that would, at the mean time a
    shape took it so far, end past what is left. Shapes left untimed keep Keras's op in this run
    and are timed by later runs."""

    seconds: float = TIMING_BUDGET_S


@dataclass(frozen=True)
class TimedSwitch:
    """One such kernel: which layers may take it, how its shapes are keyed, what it gives a layer
    (`replacement(layer)` becomes the instance's `hook`), and how `train` names it."""

    kernel: str  # its name in the cache's "ms" beside "keras" ("winograd", "matmul")
    cache_name: str  # the cache file's stem
    candidate: Callable  # layer -> bool
    shape_key: Callable  # (layer, batch_size) -> str
    replacement: Callable  # layer -> what the instance's `hook` becomes
    title: str  # what train says was switched: "Winograd F(2x2, 3x3)"
    timed: str  # what train says it times: "Winograd 3x3 convolutions"
    max_layers: int | None = None  # at most this many layers switch, the first in the model's order
    cap_reason: str = ""  # why, for train's message
    # The instance attribute switched: Conv2D's `convolution_op` (the hook its call calls; another
    # switch's call keeps calling it), or the whole `call` of a layer without such a hook.
    hook: str = "convolution_op"
    baseline: str = "TensorFlow's"  # whose kernel it is timed against, for train's messages
    kept_as: str = "TensorFlow's convolutions"  # what stays where it does not pay
    # Whether its timing draws on the run's TimingBudget, where `train` passes one.
    budgeted: bool = False

    @property
    def kernels(self) -> tuple[str, str]:
        return ("keras", self.kernel)

    def valid_entry(self, entry) -> bool:
        if not (isinstance(entry, dict) and isinstance(entry.get("switch"), bool) and isinstance(entry.get("ms"), dict)):
            return False
        return all(k in self.kernels and (v is None or isinstance(v, (int, float))) for k, v in entry["ms"].items())

    def time_shape(self, layer, batch_size: int, repeats: int = REPEATS) -> dict:
        """The cache entry for `layer`'s shape: milliseconds of the fastest call of forward + input
        and kernel gradients with Keras's op and with this kernel (None for one that fails), and
        the switch."""
        steps = kernel_steps(layer, batch_size, self.kernels, op_for=lambda conv, kernel: self.replacement(conv),
                             hook=self.hook)
        fastest = interleaved_timings(steps, repeats, summary=min)
        ms = {kernel: fastest.get(kernel) for kernel in self.kernels}
        switch = None not in ms.values() and ms[self.kernel] <= SWITCH_BELOW * ms["keras"]
        return {"ms": ms, "switch": switch}

    def choose(self, model, batch_size: int, say=lambda message: None, budget: TimingBudget | None = None) -> KernelChoice:
        """Decide for each candidate convolution of `model` from the cache, or by timing its shape
        once (within `budget` if this switch is budgeted, and then drawing on it); `say` announces
        a timing before it starts."""
        key = machine_key()
        path = cache_path(key, self.cache_name)
        timings = read_shapes(path, key, CACHE_FORMAT, self.valid_entry)
        candidates = [layer for layer in model._flatten_layers(include_self=False) if self.candidate(layer)]
        missing = untimed_shapes(candidates, batch_size, timings, self.shape_key)
        # The shapes most layers share first, and among those the smallest (the input's and
        # output's values: what a timed call moves): where a budget stops the timing, what was
        # timed decides the most layers for the seconds spent.
        sharing = collections.Counter(self.shape_key(layer, batch_size) for layer in candidates)
        missing = dict(sorted(missing.items(), key=lambda item: (
            -sharing[item[0]], math.prod(item[1].input.shape[1:]) + math.prod(item[1].output.shape[1:]))))
        measured = []
        budget = budget if self.budgeted else None
        if missing:
            within = "" if budget is None else f", within {max(budget.seconds, 0):.1f} s this run"
            say(f"timing {self.timed} against {self.baseline} for {len(missing)} shape(s) on this CPU "
                f"at batch {batch_size}, once{within} (cached in {path})")
            start = time.perf_counter()
            for name, layer in missing.items():
                spent = time.perf_counter() - start
                # Stop where the next shape, costing the mean so far, would end past the budget.
                if measured and budget is not None and spent * (len(measured) + 1) / len(measured) > budget.seconds:
                    break
                with quiet_loggers("tensorflow"):  # a new tf.function per shape, on purpose
                    timings[name] = self.time_shape(layer, batch_size)
                measured.append(name)
            left, spent = len(missing) - len(measured), time.perf_counter() - start
            if budget is not None:
                budget.seconds -= spent
            say(f"timed {self.timed} in {spent:.1f} s"
                + (f"; {left} shape(s) left for later runs, TensorFlow's op until then" if left else ""))
        cached = write_shapes(path, key, CACHE_FORMAT, timings) if measured else True
        switched = [layer.name for layer in candidates
                    if timings.get(self.shape_key(layer, batch_size), {}).get("switch")][:self.max_layers]
        kept = [layer.name for layer in candidates if layer.name not in switched]
        return KernelChoice(switched, kept, timings, measured, path, cached)

    def switch(self, model, names) -> list[str]:
        """Give the candidate convolutions of `model` named in `names` this kernel; their names.
        Nothing where TensorFlow sees a GPU (cuDNN chooses its own algorithms)."""
        if gpu_present():
            return []
        switched = []
        for layer in model._flatten_layers(include_self=False):
            if layer.name in names and self.candidate(layer):
                setattr(layer, self.hook, self.replacement(layer))
                switched.append(layer.name)
        return switched

    def switch_where_faster(self, model, batch_size: int, say, budget: TimingBudget | None = None) -> KernelChoice | None:
        """`train`'s step: decide (cache or one-off timing, within `budget`), switch, and say what
        was decided and why."""
        if gpu_present() or not any(self.candidate(layer) for layer in model._flatten_layers(include_self=False)):
            return None
        choice = self.choose(model, batch_size, say, budget)
        self.switch(model, set(choice.switched))
        where = decided_where(choice)
        by_shape: dict[str, list[str]] = {}
        for layer in model._flatten_layers(include_self=False):
            if layer.name in choice.switched or layer.name in choice.kept:
                by_shape.setdefault(self.shape_key(layer, batch_size), []).append(layer.name)
        for shape, names in by_shape.items():
            if shape not in choice.timings:  # left for a later run (the budget)
                continue
            ms = choice.timings[shape]["ms"]
            timing = f"{ms[self.kernel]} ms against {self.baseline} {ms['keras']} ms per step"
            what = shape.rsplit(" b", 1)[0]  # the shape without the batch
            if choice.timings[shape]["switch"]:
                switched = [name for name in names if name in choice.switched]
                capped = "" if len(switched) == len(names) else (
                    f"; {len(names) - len(switched)} more keep {self.baseline}: at most {self.max_layers} layers "
                    f"switch, {self.cap_reason}")
                say(f"{self.title} for {len(switched)} convolution(s) of {what} ({timing}, {where}{capped})")
            else:
                say(f"{self.kept_as} kept for {len(names)} of {what}: {self.title} did not pay here ({timing}, {where})")
        return choice
