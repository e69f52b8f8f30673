"""A/B of fused training kernels (archbuilder/training/fused_layers.py: GELU, layer norm,
self-attention, batch norm): whole training steps of one zoo network, with and without some of
them, in one process.

    .venv/bin/python bench/fused_kernels.py convnext_tiny [--kernels gelu,layer_norm] [--batch 16] [--steps 8] [--as-train]

Both models are built from architectures/imagenet/NAME.yaml (10 classes) with the same weights and
get what `train` switches on every CPU (fused Adam and its direct updates, the fused layers of fused_layers.py, depthwise
grouped convolutions), except that the first, "stock", leaves out the switches named by --kernels
(default: GELU, layer norm and attention). With --as-train both also get the per-shape switches
`train` makes after them (from the user's kernel cache, timed now where it has none) and the
folded paddings, so the ratio is the one a `cli.py train` step sees. They train on the same
random batch, alternating (each round starts with the other one), so the machine's load hits
both alike. Prints each model's median
step (the first two dropped: tracing) and the median per-round ratio stock / fused.
bench/RESULTS.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archbuilder.runtime import configure_tensorflow_environment  # noqa: E402

configure_tensorflow_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from archbuilder import api  # noqa: E402
from archbuilder.training.depthwise_choice import DEPTHWISE_GRADIENT  # noqa: E402
from archbuilder.training.direct_updates import use_direct_updates  # noqa: E402
from archbuilder.training.fused_adam import use_fused_adam  # noqa: E402
from archbuilder.training.fused_layers import SWITCHES, use_fused_layers  # noqa: E402
from archbuilder.training.grouped_conv import is_depthwise, switch_grouped_convolutions, switchable  # noqa: E402
from archbuilder.training.pointwise_choice import POINTWISE, SEPARABLE  # noqa: E402
from archbuilder.training.winograd_choice import WINOGRAD  # noqa: E402


def make(network: str, leave_out: list[str]):
    keras.utils.set_random_seed(0)
    model = api.build(ROOT / "architectures" / "imagenet" / f"{network}.yaml", ["classes=10"])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    use_fused_adam(model.optimizer)
    use_direct_updates(model.optimizer)
    switched = use_fused_layers(model, leave_out)
    switch_grouped_convolutions(model, {layer.name: "depthwise" for layer in model._flatten_layers(include_self=False)
                                        if switchable(layer) and is_depthwise(layer)})
    print("fused:", ", ".join(f"{len(layers)} {name}" for name, layers in switched.items()))
    return model


def grouped_on_native(model) -> None:
    """The grouped convolutions `make` leaves on Keras's XLA path (groups < channels) on `native`,
    the kernel `train`'s timing picks for ResNeXt-50 on the CPUs measured so far."""
    switch_grouped_convolutions(model, {layer.name: "native" for layer in model._flatten_layers(include_self=False)
                                        if switchable(layer) and not is_depthwise(layer)})


def switch_timed_kernels(model, batch: int, say=lambda message: None) -> None:
    """The per-shape timed switches `train` makes after the grouped ones, in loop.py's order
    (Winograd, 1x1 products, separable 1x1 halves, depthwise kernel gradients), each decided from
    the user's cache or timed now, without train's per-run budget."""
    for switch in (WINOGRAD, POINTWISE, SEPARABLE, DEPTHWISE_GRADIENT):
        switch.switch_where_faster(model, batch, say)


def switch_as_train(model, batch: int, say=lambda message: None) -> None:
    """Everything `train` switches after `make`'s switches, in loop.py's order: grouped convolutions
    on `native`, the timed per-shape switches, then the folded paddings."""
    from archbuilder.training.fused_padding import use_folded_padding

    grouped_on_native(model)
    switch_timed_kernels(model, batch, say)
    use_folded_padding(model)


def alternating_steps(models: dict, batch: int, count: int) -> dict[str, list[float]]:
    """Seconds of each of `count` training steps of each model on one random batch (10 classes),
    the models taking turns and each round starting one model later, so that the machine's load
    hits all alike."""
    first = next(iter(models.values()))
    x = np.random.RandomState(0).uniform(0, 255, (batch, *first.input_shape[1:])).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for step in range(count):
        for name in order[step % len(order):] + order[:step % len(order)]:
            start = time.perf_counter()
            models[name].train_on_batch(x, y)
            times[name].append(time.perf_counter() - start)
    return times


def convolution_training_step(convolve):
    """A tf.function of (x, kernel, upstream): `convolve(x, kernel)` and its gradients for x and
    kernel given the upstream gradient: one layer's forward pass and both gradients."""
    import tensorflow as tf

    @tf.function
    def step(x, kernel, upstream):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = convolve(x, kernel)
        return (y, *tape.gradient(y, [x, kernel], output_gradients=upstream))

    return step


def alternating_calls(functions: dict, arguments, repeats: int) -> dict[str, float]:
    """Median milliseconds of each of `functions` called on `arguments` (every output read back),
    the functions taking turns call by call, `repeats` calls each (the first calls, tracing, are
    the caller's)."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            for tensor in function(*arguments):
                tensor.numpy()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def step_medians(times: dict[str, list[float]], baseline: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per model of alternating_steps' `times`: the median step (the first two dropped: tracing) and
    the median per-round ratio of `baseline`'s step to its own."""
    medians = {name: round(statistics.median(t[2:]), 3) for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(times[baseline][2:], t[2:])) for name, t in times.items()}
    return medians, ratios


def add_step_arguments(parser, networks: str) -> None:
    """--networks (default `networks`), --batch and --steps of a whole-step A/B (alternating_steps)."""
    parser.add_argument("--networks", default=networks)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="at least 3: step_medians drops the first two")


def parse_step_arguments(parser):
    """The parsed arguments, refused where --steps leaves step_medians nothing to take."""
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps: at least 3 (the first two are dropped)")
    return args


def cpu_line() -> str:
    """The CPU model, whether it has AVX-512, and the load: the first line of a bench's output."""
    text = Path("/proc/cpuinfo").read_text()
    cpu = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    return f"CPU {cpu}, avx512f: {'avx512f' in text}, load {os.getloadavg()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network")
    parser.add_argument("--kernels", default="gelu,layer_norm,attention",
                        help=f"the switches the stock model leaves out, of: {', '.join(SWITCHES)}")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8, help="at least 3: step_medians drops the first two")
    parser.add_argument("--as-train", action="store_true",
                        help="both models also get train's per-shape switches (grouped kernels on native, "
                             "switch_timed_kernels from the user's cache) and folded paddings, as loop.py makes them")
    args = parse_step_arguments(parser)
    kernels = [name.strip() for name in args.kernels.split(",") if name.strip()]
    if not kernels or set(kernels) - set(SWITCHES):
        parser.error(f"--kernels: name one or more of {', '.join(SWITCHES)}")
    models = {"stock": make(args.network, kernels), "fused": make(args.network, [])}
    if args.as_train:
        for model in models.values():
            switch_as_train(model, args.batch)
    times = alternating_steps(models, args.batch, args.steps)
    medians, ratios = step_medians(times, "stock")
    for name in models:
        print(f"{name}: median step {medians[name]:.3f} s", [round(t, 2) for t in times[name]])
    rounds = [round(a / b, 3) for a, b in zip(times["stock"][2:], times["fused"][2:])]
    print(f"stock / fused, median per round: {ratios['fused']:.3f}", rounds)


if __name__ == "__main__":
    main()
