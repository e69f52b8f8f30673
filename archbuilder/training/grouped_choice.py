"""Which kernel each grouped convolution trains with on *this* machine: timed once, then cached.

grouped_conv.py has three exact ways to run a grouped convolution whose groups are fewer than its
input channels (`depthwise_sum`, `split`, `native`); which is fastest depends on the CPU, on
oneDNN and on the shape (channels per group, map size, batch), and `native` runs only where
TensorFlow's CPU kernel accepts grouped filters. So `train` times forward pass plus both
gradients (input and kernel: what a training step needs) of each shape, all candidates
interleaved call by call, once, and keeps the fastest in the user's cache folder, keyed by the
same machine key as the kernel-gradient switch (kernel_choice.py). A convolution with groups =
input channels runs as `depthwise` without timing. Keras's own XLA path is not a candidate: it is
the slow path this replaces, and timing it would compile XLA for every shape
(bench/grouped_conv.py times it beside the others).

The timing is paid before a machine's first step (issue 21 wants that step within 10 s of a later
one), so it is kept small; every candidate computes the same numbers, so a choice made cheaply
can cost speed, never correctness:
- at most TIMING_BATCH images per call, whatever the run's batch (the entry's key says the batch
  timed, so runs with batches of 8 and more share it). Per image the kernels' costs kept their
  order from 4 to 32 images: on ResNeXt-50's 7 shapes at 224x224 (a busy 2-core Intel Xeon
  with AMX, 2026-12-02) `split` (32 convolutions in place of one) took 1.5-2.1x `native`'s time
  at 8 images and 1.1-1.7x at 32: relatively worse at 8, never better;
- `depthwise_sum` is timed only where `native` fails: where `native` runs it lost every shape
  measured by 4-20x (ResNeXt-50's 7 shapes on an AVX-512 AMD EPYC at 112x112, batch 8, and on
  that Xeon at 224x224, batch 32; it writes an extra tensor channels-per-group times the
  output's size), so timing it cost seconds for a candidate that does not win;
- one copy of the layer, all candidates on the same input, REPEATS calls each (a candidate more
  than DROP_ABOVE times the fastest after two rounds is not called again), and the fastest call
  of each compared: other programs only ever add time to a call, and on a busy machine they
  added 2-5x to single calls (the same call took 40 ms, then 202 ms), which swamps a median of
  three.

Cache file, one per machine key (`grouped-convolutions-<hash>.json`, beside kernel_choice.py's):

    {"format": 1, "machine": {...}, "shapes": {"58x58x128 k3x3 s1 valid f128 g32 b8 float32":
        {"ms": {"native": 24.1, "split": 47.0}, "kernel": "native"}}}

`null`: that kernel failed on this machine; a kernel left out was not timed. Editing `kernel`
there forces a choice (tests do so); "keras" keeps Keras's own op for that shape.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from archbuilder.runtime import quiet_loggers
from archbuilder.training.grouped_conv import TIMED, grouped_convolution_op, is_depthwise, switch_grouped_convolutions, switchable
from archbuilder.training.instance_switch import gpu_present
from archbuilder.training.kernel_choice import (
    cache_path, decided_where, machine_key, read_shapes, single_convolution, untimed_shapes, write_shapes,
)

CACHE_FORMAT = 1
CACHE_NAME = "grouped-convolutions"
KEEP_KERAS = "keras"  # a cached "kernel": none of ours ran for that shape, Keras's op stays
REPEATS = 3  # timed calls per kernel, interleaved; the fastest is kept
# After two timed rounds, kernels whose fastest call is more than this many times the fastest
# kernel's are not timed again: they cannot win, and calling them costs the most.
DROP_ABOVE = 2.0
TIMING_BATCH = 8  # images per timed call at most (see the module's docstring)
FALLBACK = "depthwise_sum"  # timed only where `native` fails


def timing_batch(batch_size: int) -> int:
    return min(batch_size, TIMING_BATCH)


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return (f"{height}x{width}x{channels} k{layer.kernel_size[0]}x{layer.kernel_size[1]} s{layer.strides[0]} "
            f"{layer.padding} f{layer.filters} g{layer.groups} b{batch_size} {layer.compute_dtype}")


def _valid_entry(entry) -> bool:
    if not (isinstance(entry, dict) and isinstance(entry.get("ms"), dict)):
        return False
    if entry.get("kernel") not in (*TIMED, KEEP_KERAS):
        return False
    return all(k in TIMED and (v is None or isinstance(v, (int, float))) for k, v in entry["ms"].items())


def read_cache(path: Path, key: dict) -> dict[str, dict]:
    """The cached entries by shape key, or {} for a missing, unreadable, malformed or foreign file."""
    return read_shapes(path, key, CACHE_FORMAT, _valid_entry)


def write_cache(path: Path, key: dict, shapes: dict[str, dict]) -> bool:
    """Atomically; False where the cache folder cannot be written (the run goes on, uncached)."""
    return write_shapes(path, key, CACHE_FORMAT, shapes)


def training_gradients_function(model, conv, x, upstream):
    """One tf.function: the forward pass and the gradients of input and kernel (a separable
    convolution's two kernels)."""
    kernels = [conv.kernel] if hasattr(conv, "kernel") else [conv.depthwise_kernel, conv.pointwise_kernel]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(model(x) * upstream)
        return loss, *tape.gradient(loss, [x, *kernels])

    return step


def kernel_steps(layer, batch_size: int, kernels, copy=None, op_for=None, hook: str = "convolution_op") -> dict:
    """For each of `kernels` ("keras": Keras's own op), a training_gradients_function of one copy
    of `layer` (`copy`: single_convolution's, to reuse; the same weights, input and output
    gradient for all), traced with that kernel (the instance's `hook`, its `convolution_op` or its
    `call`, set to `op_for(conv, kernel)`, by default grouped_convolution_op) and called once
    (compiled, warm), with its first call's results and seconds: {kernel: (step, results,
    seconds)}; a kernel that fails here (e.g. no CPU kernel for grouped filters) is left out."""
    model, conv, x, upstream = copy or single_convolution(layer, batch_size)
    steps = {}
    for kernel in kernels:
        start = time.perf_counter()
        # The layer calls its `hook` when the function is traced (its first call), so each
        # function keeps the kernel set here; Keras's own is the class's.
        vars(conv).pop(hook, None)
        try:
            if kernel != "keras":
                setattr(conv, hook, (op_for or grouped_convolution_op)(conv, kernel))
            step = training_gradients_function(model, conv, x, upstream)
            results = [t.numpy() for t in step()]
        except (tf.errors.OpError, ValueError, TypeError):
            continue
        steps[kernel] = (step, results, time.perf_counter() - start)
    return steps


def interleaved_timings(steps: dict, repeats: int, drop_above: float | None = None,
                        summary=statistics.median) -> dict[str, float]:
    """Milliseconds per call of each step (`summary` of its calls: the median, or `min`), called in
    turn so that a burst of load elsewhere hits all alike. With `drop_above`, a step whose fastest
    call after two rounds is slower than that many times the fastest step's is not called again
    (its times stand): it cannot win, and calling it costs the most."""
    times: dict[str, list[float]] = {kernel: [] for kernel in steps}
    for round_ in range(repeats):
        for kernel, (step, _, _) in steps.items():
            if round_ >= 2 and drop_above and min(times[kernel]) > drop_above * min(map(min, times.values())):
                continue
            start = time.perf_counter()
            [t.numpy() for t in step()]
            times[kernel].append(time.perf_counter() - start)
    return {kernel: round(1000 * summary(measured), 2) for kernel, measured in times.items()}


def time_kernels(layer, batch_size: int, kernels=TIMED, repeats: int = REPEATS) -> dict[str, float | None]:
    """Milliseconds of the fastest call of forward + input and kernel gradients of `layer`'s shape
    with each of `kernels`, interleaved; None for a kernel that fails here. FALLBACK, if among
    `kernels`, is timed only where `native` is not among them or fails (else left out)."""
    copy = single_convolution(layer, batch_size)
    first = [kernel for kernel in kernels if kernel != FALLBACK or "native" not in kernels]
    steps = kernel_steps(layer, batch_size, first, copy)
    if FALLBACK in kernels and FALLBACK not in first and "native" not in steps:
        steps.update(kernel_steps(layer, batch_size, [FALLBACK], copy))
    fastest = interleaved_timings(steps, repeats, DROP_ABOVE, summary=min)
    return {kernel: fastest.get(kernel) for kernel in kernels if kernel in first or "native" not in steps}


@dataclass
class GroupedChoice:
    """Per grouped convolution: the kernel it runs with, and the timings that decided it."""

    kernels: dict[str, str]  # layer name -> kernel
    timings: dict[str, dict]  # shape key -> cache entry
    measured: list[str]  # shape keys timed in this run (the others came from the cache)
    cache: Path
    cached: bool  # False where the cache could not be written


def choose_grouped_kernels(model, batch_size: int, say=lambda message: None) -> GroupedChoice:
    """Pick a kernel for each switchable grouped convolution of `model`: `depthwise` where groups
    = channels, else the cached or newly timed fastest; `say` announces a timing before it starts."""
    key = machine_key()
    path = cache_path(key, CACHE_NAME)
    timings = read_cache(path, key)
    layers = [layer for layer in model._flatten_layers(include_self=False) if switchable(layer)]
    timed_batch = timing_batch(batch_size)
    missing = untimed_shapes([layer for layer in layers if not is_depthwise(layer)], timed_batch, timings, shape_key)
    if missing:
        say(f"timing grouped convolution kernels ({', '.join(TIMED)}) for {len(missing)} shape(s) on this CPU "
            f"at batch {timed_batch}, once (cached in {path})")
        start = time.perf_counter()
        for name, layer in missing.items():
            # One new tf.function per kernel and shape, on purpose: TensorFlow's retracing warning
            # ("5 out of the last 15 calls ...") would tell the user to fix what is intended.
            with quiet_loggers("tensorflow"):
                ms = time_kernels(layer, timed_batch)
            ran = [k for k in ms if ms[k] is not None]
            # `split` runs wherever plain convolutions do; if nothing ran, Keras's op stays.
            timings[name] = {"ms": ms, "kernel": min(ran, key=ms.get) if ran else KEEP_KERAS}
        say(f"timed grouped convolution kernels in {time.perf_counter() - start:.1f} s")
    cached = write_cache(path, key, timings) if missing else True
    kernels = {layer.name: "depthwise" if is_depthwise(layer) else timings[shape_key(layer, timed_batch)]["kernel"]
               for layer in layers}
    kernels = {name: kernel for name, kernel in kernels.items() if kernel != KEEP_KERAS}
    return GroupedChoice(kernels, timings, list(missing), path, cached)


def switch_grouped_where_faster(model, batch_size: int, say) -> GroupedChoice | None:
    """`train`'s step: decide (depthwise, or cache, or one-off timing), switch, and say what was
    decided and why."""
    if gpu_present() or not any(
            switchable(layer) for layer in model._flatten_layers(include_self=False)):
        return None
    choice = choose_grouped_kernels(model, batch_size, say)
    switch_grouped_convolutions(model, choice.kernels)
    depthwise = [name for name, kernel in choice.kernels.items() if kernel == "depthwise"]
    if depthwise:
        say(f"grouped convolutions with one group per channel run as depthwise convolutions "
            f"(TensorFlow's CPU kernel, not Keras's XLA-compiled one): {len(depthwise)} layer(s)")
    where = decided_where(choice)
    by_kernel: dict[str, list[str]] = {}
    for name, kernel in choice.kernels.items():
        if kernel != "depthwise":
            by_kernel.setdefault(kernel, []).append(name)
    for kernel, names in by_kernel.items():
        say(f"grouped convolutions as `{kernel}` (the fastest here, {where}): {len(names)} layer(s)")
    return choice
