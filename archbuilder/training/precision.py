"""`training.precision`: Keras's global dtype policy while a run's model is built and trained.

Under `mixed_float16` Keras's `compile` wraps the optimizer in a LossScaleOptimizer (float16's
small range would flush small gradients to zero); `mixed_bfloat16` has float32's range and needs
none. Softmax layers are built in float32 (keras/graph.py). The policy is put back afterwards, so
a process that trains twice (the tests) does not carry it over.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras

# CPU flags of native bfloat16 arithmetic (AVX512_BF16: AMD Zen 4 and later, Intel Cooper Lake;
# AMX: Intel Sapphire Rapids and later). Without them TensorFlow's CPU kernels emulate bfloat16.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


@contextmanager
def precision_policy(name: str):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def emulated_bfloat16_note(precision: str, flags: list[str], gpu: bool) -> str | None:
    """What to tell a user who trains in `mixed_bfloat16` on a CPU (`flags`, from /proc/cpuinfo)
    without native bfloat16: TensorFlow emulates it there, and steps are slower than float32's
    (bench/RESULTS.md: the Zen 3 and first-generation EPYC runs); None where it does not apply
    (another precision, a GPU, or flags unknown, e.g. off Linux)."""
    if precision != "mixed_bfloat16" or gpu or not flags or any(flag in flags for flag in NATIVE_BFLOAT16_FLAGS):
        return None
    return ("note: this CPU has no native bfloat16 (no AVX512_BF16 or AMX flag): TensorFlow emulates it, "
            "so mixed_bfloat16 trains slower than float32 here")
