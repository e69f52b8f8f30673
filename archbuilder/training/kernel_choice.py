"""Whether cpu_kernels.py's matmul kernel gradient pays on *this* machine: timed once, then cached.

Which kernel TensorFlow runs for a convolution's kernel gradient depends on the CPU (AVX2 or
AVX-512), on whether oneDNN is on (TensorFlow turns it on by itself on CPUs with AVX512_VNNI,
AVX512_BF16 or AMX, such as Zen 4; archbuilder turns it on elsewhere) and on TensorFlow's version.
The 3.4x gain of the matmul path was measured on Zen 3 (bench/RESULTS.md); on another CPU oneDNN
may pick a better kernel for these shapes, and then the switch would cost time. No CPU feature
predicts that, so `train` times both paths for each candidate shape (kernel larger than its input)
with the run's batch size, once, and keeps the answer in the user's cache folder, keyed by what
decides the kernels: CPU model and flags, TensorFlow's version, the oneDNN setting, the thread
count. A cache that is unreadable, malformed or written for another machine key is ignored and
rewritten.

Cache file, one per machine key (`kernel-gradients-<hash>.json` in $ARCHBUILDER_CACHE_DIR, else
$XDG_CACHE_HOME/archbuilder, else ~/.cache/archbuilder):

    {"format": 1, "machine": {...}, "shapes": {"2x2x512 k3x3 s1x1 same f512 b32 float32":
        {"tensorflow_ms": 64.7, "matmul_ms": 19.2, "switch": true}}}

Editing `switch` there forces a decision (tests do so).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from archbuilder.atomic import atomic_write_text
from archbuilder.cache_folder import cache_dir, key_digest
from archbuilder.cpu_info import cpu_key, cpuinfo
from archbuilder.errors import NOT_JSON
from archbuilder.training.cpu_kernels import matmul_kernel_gradient_op, slow_kernel_gradient, use_fast_kernel_gradients
from archbuilder.training.instance_switch import gpu_present

CACHE_FORMAT = 1
# Switch only when the matmul path takes at most this share of TensorFlow's time. Single timings
# of one layer vary by ~10% between calls on a shared machine; inside that band the switch would
# be a coin toss, and keeping TensorFlow's kernel is the neutral choice.
SWITCH_BELOW = 0.9
REPEATS = 7  # timed calls per path, interleaved; the median is kept


def onednn_enabled() -> bool:
    """oneDNN's state as TensorFlow decided it at import (env var, else its CPU-feature default)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without the probe: the variable decides
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "") in ("1", "true", "True")


def machine_key() -> dict:
    """What decides which kernels TensorFlow runs here; a cache for another key is not used."""
    model, flags = cpuinfo()
    return {
        **cpu_key(model, flags),
        "avx512": any(flag.startswith("avx512") for flag in flags),
        "tensorflow": tf.__version__,
        "onednn": onednn_enabled(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def cache_path(key: dict | None = None, name: str = "kernel-gradients") -> Path:
    """This machine's cache file `name`-<hash>.json (grouped_choice.py keeps its own beside it)."""
    key = key or machine_key()
    return cache_dir() / f"{name}-{key_digest(key)}.json"


def shape_key(layer, batch_size: int) -> str:
    height, width, channels = layer.input.shape[1:4]
    return (f"{height}x{width}x{channels} k{layer.kernel_size[0]}x{layer.kernel_size[1]} "
            f"s{layer.strides[0]}x{layer.strides[1]} {layer.padding} f{layer.filters} b{batch_size} "
            f"{layer.compute_dtype}")


@dataclass(frozen=True)
class Timing:
    tensorflow_ms: float
    matmul_ms: float
    switch: bool


def _valid_entry(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("switch"), bool)
            and all(isinstance(entry.get(k), (int, float)) for k in ("tensorflow_ms", "matmul_ms")))


def read_shapes(path: Path, key: dict, form: int, valid_entry) -> dict[str, dict]:
    """The "shapes" of a machine's cache file (this module's, grouped_choice.py's) as stored, or {}
    for a missing, unreadable or malformed file, another format or another machine key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, *NOT_JSON):
        return {}
    if not (isinstance(data, dict) and data.get("format") == form and data.get("machine") == key
            and isinstance(data.get("shapes"), dict) and all(map(valid_entry, data["shapes"].values()))):
        return {}
    return data["shapes"]


def write_shapes(path: Path, key: dict, form: int, shapes: dict[str, dict]) -> bool:
    """Atomically; False where the cache folder cannot be written (the run goes on, uncached)."""
    try:
        atomic_write_text(path, json.dumps({"format": form, "machine": key, "shapes": dict(sorted(shapes.items()))},
                                           indent=1))
    except OSError:
        return False
    return True


def read_cache(path: Path, key: dict) -> dict[str, Timing]:
    """The cached timings, or {} for a missing, unreadable, malformed or foreign file."""
    return {name: Timing(float(e["tensorflow_ms"]), float(e["matmul_ms"]), e["switch"])
            for name, e in read_shapes(path, key, CACHE_FORMAT, _valid_entry).items()}


def write_cache(path: Path, key: dict, timings: dict[str, Timing]) -> bool:
    """Atomically; False where the cache folder cannot be written (the run goes on, uncached)."""
    shapes = {name: {"tensorflow_ms": t.tensorflow_ms, "matmul_ms": t.matmul_ms, "switch": t.switch}
              for name, t in timings.items()}
    return write_shapes(path, key, CACHE_FORMAT, shapes)


def single_convolution(layer, batch_size: int, seed: int = 0):
    """A fresh copy of convolution `layer` alone (a Conv2D, DepthwiseConv2D or SeparableConv2D),
    a random input batch and output gradient for it."""
    input_shape = tuple(layer.input.shape[1:])
    inputs = keras.Input(input_shape, dtype=layer.compute_dtype)
    kind = next((kind for kind in (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D) if isinstance(layer, kind)),
                keras.layers.Conv2D)
    conv = kind.from_config({**layer.get_config(), "name": "conv"})
    model = keras.Model(inputs, conv(inputs))
    rng = np.random.default_rng(seed)
    # float32 draws directly: a float64 array cast down took ~1.4x the time, and this runs before a
    # machine's first step (7 grouped shapes for ResNeXt-50)
    x = tf.cast(rng.standard_normal((batch_size, *input_shape), dtype=np.float32), layer.compute_dtype)
    upstream = tf.cast(rng.standard_normal((batch_size, *model.output_shape[1:]), dtype=np.float32),
                       layer.compute_dtype)
    return model, conv, x, upstream


def kernel_gradient_function(model, conv, x, upstream):
    """One tf.function: the forward pass plus the kernel's gradient (what a training step needs)."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(model(x) * upstream, "float32"))
        # The loss is returned too, so the forward pass is not pruned away as unused.
        return loss, tape.gradient(loss, conv.kernel)

    return step


def time_kernel_gradients(layer, batch_size: int, repeats: int = REPEATS) -> Timing:
    """Median milliseconds of forward + kernel gradient of `layer`'s shape, both ways, interleaved
    call by call so that a burst of load elsewhere hits both alike."""
    model, conv, x, upstream = single_convolution(layer, batch_size)
    stock = kernel_gradient_function(model, conv, x, upstream)
    fast_model, fast_conv, _, _ = single_convolution(layer, batch_size)
    fast_conv.convolution_op = matmul_kernel_gradient_op(fast_conv)
    fast = kernel_gradient_function(fast_model, fast_conv, x, upstream)
    times: dict = {stock: [], fast: []}
    for function in times:
        function()[1].numpy()  # traces and warms up
    for _ in range(repeats):
        for function, measured in times.items():
            start = time.perf_counter()
            function()[1].numpy()
            measured.append(time.perf_counter() - start)
    tensorflow_ms, matmul_ms = (round(1000 * statistics.median(times[f]), 2) for f in (stock, fast))
    return Timing(tensorflow_ms, matmul_ms, matmul_ms <= SWITCH_BELOW * tensorflow_ms)


@dataclass
class KernelChoice:
    """Per candidate layer: whether to switch, and the timing that decided it."""

    switched: list[str]
    kept: list[str]
    timings: dict  # by shape key: a Timing here, a cache entry in winograd_choice.py
    measured: list[str]  # shape keys timed in this run (the others came from the cache)
    cache: Path
    cached: bool  # False where the cache could not be written


def untimed_shapes(layers, batch_size: int, timings, key_of=shape_key) -> dict:
    """The first layer of each shape (`key_of(layer, batch_size)`) that `timings` holds no entry for:
    what a kernel choice still has to time, once per shape."""
    missing = {}
    for layer in layers:
        missing.setdefault(key_of(layer, batch_size), layer)
    return {name: layer for name, layer in missing.items() if name not in timings}


def choose_kernel_gradients(model, batch_size: int, say=lambda message: None) -> KernelChoice:
    """Decide for each candidate convolution of `model` (slow_kernel_gradient) from the cache, or
    by timing its shape once; `say` announces a measurement before it starts."""
    key = machine_key()
    path = cache_path(key)
    timings = read_cache(path, key)
    candidates = [layer for layer in model.layers if slow_kernel_gradient(layer)]
    missing = untimed_shapes(candidates, batch_size, timings)
    if missing:
        say(f"timing kernel gradients of {len(missing)} convolution shape(s) on this CPU, once "
            f"(cached in {path})")
        for name, layer in missing.items():
            try:
                timings[name] = time_kernel_gradients(layer, batch_size)
            except (tf.errors.OpError, ValueError, TypeError):  # no matmul path for this dtype/shape
                timings[name] = Timing(0.0, 0.0, False)
    cached = write_cache(path, key, timings) if missing else True
    switched = [layer.name for layer in candidates if timings[shape_key(layer, batch_size)].switch]
    kept = [layer.name for layer in candidates if layer.name not in switched]
    return KernelChoice(switched, kept, timings, list(missing), path, cached)


def decided_where(choice) -> str:
    """Where a kernel choice's timings came from, for `train`'s message (this module's, and
    grouped_choice.py's and winograd_choice.py's choices)."""
    source = "timed now" if choice.measured else "timed earlier"
    return f"{source} on this CPU, cached in {choice.cache}" if choice.cached else f"{source}; cache not writable"


def _ms(timing: Timing) -> str:
    return f"{timing.matmul_ms:g} ms against TensorFlow's {timing.tensorflow_ms:g} ms"


def switch_kernels_where_faster(model, batch_size: int, say) -> KernelChoice | None:
    """`train`'s step: decide (cache or one-off timing), switch, and say what was decided and why."""
    if gpu_present() or not any(slow_kernel_gradient(layer) for layer in model.layers):
        return None
    choice = choose_kernel_gradients(model, batch_size, say)
    use_fast_kernel_gradients(model, set(choice.switched))
    where = decided_where(choice)
    by_shape = {}
    for layer in model.layers:
        if layer.name in choice.switched or layer.name in choice.kept:
            by_shape.setdefault(shape_key(layer, batch_size), []).append(layer.name)
    for shape, names in by_shape.items():
        timing = choice.timings[shape]
        if timing.switch:
            say(f"fast CPU kernel gradients for {len(names)} convolutions: {', '.join(names)} "
                f"(matmul {_ms(timing)} per step, {where})")
        else:
            say(f"TensorFlow's kernel gradients for {', '.join(names)}: the matmul path did not pay here "
                f"({_ms(timing)} per step, {where})")
    return choice
