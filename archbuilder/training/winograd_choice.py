"""Whether winograd_conv.py's F(2x2, 3x3) pays for a convolution shape on *this* machine: timed
once, then cached.

Winograd trades products for transforms that run at memory speed, so whether it wins depends on
the CPU's arithmetic rate against its memory bandwidth, on oneDNN's kernel for the direct
convolution, on the shape and on the batch (more tiles make larger, faster matrix products:
14x14x256 -> 256 on the Zen 5 ran 1.02x at batch 8, 1.15-1.20x at 16 and 1.28x at 32;
bench/RESULTS.md). So `train` times forward pass plus both gradients of each candidate shape
(winograd_conv.py `candidate`) at the run's batch, Keras's op and Winograd interleaved call by
call, the fastest of REPEATS calls of each (other programs only ever add time to a call), once,
and keeps the answer in the user's cache folder under the machine key of the other kernel
choices (kernel_choice.py). Winograd is switched on only where it took at most SWITCH_BELOW of
Keras's time.

Cache file, one per machine key (`winograd-<hash>.json`, beside kernel_choice.py's):

    {"format": 1, "machine": {...}, "shapes": {"14x14x256 k3x3 s1 same f256 b32 float32":
        {"ms": {"keras": 45.5, "winograd": 35.5}, "switch": true}}}

`null`: Winograd failed on this machine. Editing `switch` there forces a decision (tests do so).
"""

from __future__ import annotations

import time

from archbuilder.runtime import quiet_loggers
from archbuilder.training.grouped_choice import interleaved_timings, kernel_steps
from archbuilder.training.instance_switch import gpu_present
from archbuilder.training.kernel_choice import (
    SWITCH_BELOW, KernelChoice, cache_path, decided_where, machine_key, read_shapes, untimed_shapes, write_shapes,
)
from archbuilder.training.winograd_conv import candidate, switch_winograd, winograd_convolution_op

CACHE_FORMAT = 1
CACHE_NAME = "winograd"
KERNELS = ("keras", "winograd")
REPEATS = 3  # timed calls per kernel, interleaved; the fastest is kept
# At most this many layers of a model switch, the first in its order: each adds ~0.2 s or more to
# the first training step (winograd_conv.py MAX_MAP), and issue 21 holds that step within 10 s of
# a later one. ResNet-34 has 11 candidates, the ResNet-50 forms 5-6, ResNet-101 23, ResNet-152 36
# (~4% of ResNet-101's step from 12 of its 23 in place of ~6% from all).
MAX_LAYERS = 12


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return f"{height}x{width}x{channels} k3x3 s1 {layer.padding} f{layer.filters} b{batch_size} {layer.compute_dtype}"


def _valid_entry(entry) -> bool:
    if not (isinstance(entry, dict) and isinstance(entry.get("switch"), bool) and isinstance(entry.get("ms"), dict)):
        return False
    return all(k in KERNELS and (v is None or isinstance(v, (int, float))) for k, v in entry["ms"].items())


def time_winograd(layer, batch_size: int, repeats: int = REPEATS) -> dict:
    """The cache entry for `layer`'s shape: milliseconds of the fastest call of forward + input and
    kernel gradients with Keras's op and with Winograd (None for one that fails), and the switch."""
    steps = kernel_steps(layer, batch_size, KERNELS, op_for=lambda conv, kernel: winograd_convolution_op(conv))
    fastest = interleaved_timings(steps, repeats, summary=min)
    ms = {kernel: fastest.get(kernel) for kernel in KERNELS}
    switch = None not in ms.values() and ms["winograd"] <= SWITCH_BELOW * ms["keras"]
    return {"ms": ms, "switch": switch}


def choose_winograd(model, batch_size: int, say=lambda message: None) -> KernelChoice:
    """Decide for each candidate convolution of `model` from the cache, or by timing its shape once;
    `say` announces a timing before it starts."""
    key = machine_key()
    path = cache_path(key, CACHE_NAME)
    timings = read_shapes(path, key, CACHE_FORMAT, _valid_entry)
    candidates = [layer for layer in model._flatten_layers(include_self=False) if candidate(layer)]
    missing = untimed_shapes(candidates, batch_size, timings, shape_key)
    if missing:
        say(f"timing Winograd 3x3 convolutions against TensorFlow's for {len(missing)} shape(s) on this CPU "
            f"at batch {batch_size}, once (cached in {path})")
        start = time.perf_counter()
        for name, layer in missing.items():
            with quiet_loggers("tensorflow"):  # a new tf.function per shape, on purpose
                timings[name] = time_winograd(layer, batch_size)
        say(f"timed Winograd convolutions in {time.perf_counter() - start:.1f} s")
    cached = write_shapes(path, key, CACHE_FORMAT, timings) if missing else True
    switched = [layer.name for layer in candidates if timings[shape_key(layer, batch_size)]["switch"]][:MAX_LAYERS]
    kept = [layer.name for layer in candidates if layer.name not in switched]
    return KernelChoice(switched, kept, timings, list(missing), path, cached)


def switch_winograd_where_faster(model, batch_size: int, say) -> KernelChoice | None:
    """`train`'s step: decide (cache or one-off timing), switch, and say what was decided and why."""
    if gpu_present() or not any(candidate(layer) for layer in model._flatten_layers(include_self=False)):
        return None
    choice = choose_winograd(model, batch_size, say)
    switch_winograd(model, set(choice.switched))
    where = decided_where(choice)
    by_shape: dict[str, list[str]] = {}
    for layer in model._flatten_layers(include_self=False):
        if layer.name in choice.switched or layer.name in choice.kept:
            by_shape.setdefault(shape_key(layer, batch_size), []).append(layer.name)
    for shape, names in by_shape.items():
        ms = choice.timings[shape]["ms"]
        timing = f"{ms['winograd']} ms against TensorFlow's {ms['keras']} ms per step"
        what = shape.rsplit(" b", 1)[0]  # the shape without the batch
        if choice.timings[shape]["switch"]:
            switched = [name for name in names if name in choice.switched]
            capped = "" if len(switched) == len(names) else (
                f"; {len(names) - len(switched)} more keep TensorFlow's: at most {MAX_LAYERS} layers switch, "
                "each adds to the first step")
            say(f"Winograd F(2x2, 3x3) for {len(switched)} convolution(s) of {what} ({timing}, {where}{capped})")
        else:
            say(f"TensorFlow's convolutions kept for {len(names)} of {what}: Winograd did not pay here "
                f"({timing}, {where})")
    return choice
