"""TensorFlow's stateful uniform random stream (Philox4x32-10), reproduced in NumPy.

TensorFlow 1's `tf.random_uniform(shape, seed=s)` with no graph seed runs the `RandomUniform`
kernel with the seed pair (87654321, s); a fresh kernel starts its Philox counter at zero, so every
variable drawn that way takes a prefix of one and the same stream. Reproducing the stream here,
rather than calling the TF op, makes the draw independent of how TF caches kernels (an eager call
of the op continues its stream from call to call) and of the Keras backend. A test checks it
bit for bit against `tf.raw_ops.RandomUniform` in a freshly traced `tf.function`.

Reference: tensorflow/core/lib/random/philox_random.h and random_distributions.h.
"""

from __future__ import annotations

import numpy as np

TF1_DEFAULT_GRAPH_SEED = 87654321  # tensorflow/python/framework/random_seed.py, DEFAULT_GRAPH_SEED

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # multipliers
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)  # key increments
_LOW32 = np.uint64(0xFFFFFFFF)
_ROUNDS = 10


def philox_uint32(count: int, seed: int, seed2: int) -> np.ndarray:
    """The first `count` uint32 outputs of TF's PhiloxRandom(seed, seed2), in TF's order.

    Each counter value yields 4 numbers; element j comes from counter j // 4, lane j % 4,
    which is how TF's FillPhiloxRandom splits the work into groups of four.
    """
    groups = (count + 3) // 4
    index = np.arange(groups, dtype=np.uint64)
    c0 = (index & _LOW32).astype(np.uint32)
    c1 = (index >> np.uint64(32)).astype(np.uint32)
    c2 = np.full(groups, seed2 & 0xFFFFFFFF, dtype=np.uint32)
    c3 = np.full(groups, (seed2 >> 32) & 0xFFFFFFFF, dtype=np.uint32)
    k0 = np.uint32(seed & 0xFFFFFFFF)
    k1 = np.uint32((seed >> 32) & 0xFFFFFFFF)
    for round_index in range(_ROUNDS):
        p0 = _M0 * c0.astype(np.uint64)
        p1 = _M1 * c2.astype(np.uint64)
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _LOW32).astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _LOW32).astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if round_index < _ROUNDS - 1:
            k0 = np.uint32((int(k0) + int(_W0)) & 0xFFFFFFFF)
            k1 = np.uint32((int(k1) + int(_W1)) & 0xFFFFFFFF)
    return np.stack([c0, c1, c2, c3], axis=1).reshape(-1)[:count]


def uint32_to_unit_float(bits: np.ndarray) -> np.ndarray:
    """TF's Uint32ToFloat: 23 random mantissa bits under exponent 0, minus 1 -> [0, 1)."""
    return ((bits & np.uint32(0x7FFFFF)) | np.uint32(127 << 23)).view(np.float32) - np.float32(1.0)


class _StreamCache:
    """Every draw with one seed pair is a prefix of the same stream: compute it once, grown as
    needed, so a whole network costs one stream as long as its largest kernel."""

    def __init__(self):
        self._streams: dict[tuple[int, int], np.ndarray] = {}

    def uniform(self, count: int, seed: int, seed2: int) -> np.ndarray:
        stream = self._streams.get((seed, seed2))
        if stream is None or len(stream) < count:
            stream = uint32_to_unit_float(philox_uint32(count, seed, seed2))
            stream.setflags(write=False)
            self._streams[(seed, seed2)] = stream
        return stream[:count]


_cache = _StreamCache()


def tf1_random_uniform(shape: tuple[int, ...], minval: float, maxval: float, seed: int) -> np.ndarray:
    """What TF 1's `tf.random_uniform(shape, minval, maxval, seed=seed)` returned in a fresh graph
    with no graph-level seed: `rnd * (maxval - minval) + minval`, in float32 as TF computed it."""
    count = int(np.prod(shape, dtype=np.int64))
    unit = _cache.uniform(count, TF1_DEFAULT_GRAPH_SEED, seed).reshape(shape)
    low, high = np.float32(minval), np.float32(maxval)
    return unit * (high - low) + low
