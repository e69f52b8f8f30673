"""Shared by this folder's one-off per-layer benches (depthwise_tf/_torch.py, pointwise_tf/_torch.py):
EfficientNet-B0's layer shapes at batch 32 and the loop that times them."""

import statistics
import time

BATCH = 32
# Depthwise layers as `train` sees them (the cache's keys: stride-2 layers VALID after their
# padding): (height = width, channels, kernel, stride, padding, layers of that shape).
DEPTHWISE = [(112, 32, 3, 1, "SAME", 1), (113, 96, 3, 2, "VALID", 1), (56, 144, 3, 1, "SAME", 1),
             (59, 144, 5, 2, "VALID", 1), (28, 240, 5, 1, "SAME", 1), (29, 240, 3, 2, "VALID", 1),
             (14, 480, 3, 1, "SAME", 2), (14, 480, 5, 1, "SAME", 1), (14, 672, 5, 1, "SAME", 2),
             (17, 672, 5, 2, "VALID", 1), (7, 1152, 5, 1, "SAME", 3), (7, 1152, 3, 1, "SAME", 1)]
# 1x1 layers: (height = width, channels in, channels out, layers of that shape).
POINTWISE = [(112, 32, 16, 1), (112, 16, 96, 1), (56, 96, 24, 1), (56, 24, 144, 2), (56, 144, 24, 1),
             (28, 144, 40, 1), (28, 40, 240, 2), (28, 240, 40, 1), (14, 240, 80, 1), (14, 80, 480, 3),
             (14, 480, 80, 2), (14, 480, 112, 1), (14, 112, 672, 3), (14, 672, 112, 2), (7, 672, 192, 1),
             (7, 192, 1152, 4), (7, 1152, 192, 3), (7, 1152, 320, 1), (7, 320, 1280, 1)]


def time_shape(label: str, functions: dict, layers: int, totals: dict, repeats: int = 7) -> dict:
    """Median milliseconds of each of `functions` (called with no arguments, in turns, `repeats`
    times each, no output read back: TensorFlow's `.numpy()` would time a copy too); prints them
    after `label`, adds `layers` x each to `totals`."""
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    for name, ms in medians.items():
        totals[name] = totals.get(name, 0) + layers * ms
    print(f"{label} x{layers}: " + "  ".join(f"{name} {ms:.2f}" for name, ms in medians.items()), flush=True)
    return medians
