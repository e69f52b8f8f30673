"""The one way the fused training kernels are switched on: a layer *instance* gets its own `call`.

Never the class: the model's config and saved files stay those of stock Keras layers, and a model
loaded for --resume is switched again. Each fused_*.py module says which layers it takes
(`fusable`) and what runs instead (its call).
"""

from __future__ import annotations

import functools

import tensorflow as tf


# The compute dtypes the layer switches take: float32, and bfloat16 under `mixed_bfloat16`
# (float32 weights; each switch's module says how its bfloat16 values compare with Keras's).
SWITCHED_DTYPES = ("float32", "bfloat16")


@functools.cache
def gpu_present() -> bool:
    """Whether TensorFlow sees a GPU: where cuDNN runs these layers, the CPU switches stay off.
    Cached: the logical devices are fixed once TensorFlow has initialized them."""
    return bool(tf.config.list_logical_devices("GPU"))


def float32_layer(layer) -> bool:
    """Computing in float32 with float32 weights: what the per-shape kernel switches take (in
    bfloat16 their sums would round differently again)."""
    return layer.compute_dtype == "float32" and layer.variable_dtype == "float32"


def known_map(layer, which: str = "input") -> tuple[int, int, int] | None:
    """(height, width, channels) of `layer`'s 4-D input (or output), where all three are known;
    None where the layer is not yet called, is shared by several inputs, is not 4-D or a size is
    unknown (the switches are decided per shape)."""
    try:
        height, width, channels = getattr(layer, which).shape[1:]
    except (AttributeError, ValueError):
        return None
    return None if None in (height, width, channels) else (height, width, channels)


def plain_weights(layer) -> bool:
    """Whether `layer` multiplies by its own float kernel: no LoRA adapter, not quantized (the
    switched calls read `layer.kernel` and would skip either)."""
    return not getattr(layer, "lora_enabled", False) and getattr(layer, "quantization_mode", None) is None


def sole_consumer(layer):
    """The layer that `layer`'s output feeds, where `layer` is called once and that output feeds one
    layer call only; else None. A switch that rewrites a pair of layers together (fused_padding.py,
    fused_squeeze_excite.py) needs each to be only the other's."""
    consumers = getattr(layer, "_outbound_nodes", [])
    if len(getattr(layer, "_inbound_nodes", [])) != 1 or len(consumers) != 1:
        return None
    return consumers[0].operation


def switch_instances(model, fusable, fused_call, *, cpu_only: bool = True, attribute: str = "call") -> list[str]:
    """Give every layer of `model` that `fusable` accepts, and that has no call of its own yet,
    the call `fused_call(layer)`; the names of those layers. With `cpu_only`, none where
    TensorFlow sees a GPU (its kernels for these layers are already fused there). `attribute`:
    the method replaced, `call` or a part Keras's call asks for (synchronized_moments.py's
    `_moments`)."""
    if cpu_only and gpu_present():
        return []
    switched = []
    for layer in model._flatten_layers(include_self=False):
        if fusable(layer) and attribute not in vars(layer):
            setattr(layer, attribute, fused_call(layer))
            switched.append(layer.name)
    return switched
