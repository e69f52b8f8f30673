"""The layer switches `train` makes on every CPU, in one place: each keeps a layer's math and its
model file and runs it as fewer, faster kernels (their modules say how and what it measured).

`leave_out` exists for bench/fused_kernels.py, which measures a step with and without some of them.
"""

from __future__ import annotations

from archbuilder.training.fused_add import use_fused_add
from archbuilder.training.fused_attention import use_fused_attention
from archbuilder.training.fused_batch_norm import use_fused_batch_norm
from archbuilder.training.fused_conv_bias import use_fused_conv_bias
from archbuilder.training.fused_dense import use_fused_dense
from archbuilder.training.fused_gelu import use_fused_gelu
from archbuilder.training.fused_global_pool import use_fused_global_pool
from archbuilder.training.fused_layer_norm import use_fused_layer_norm
from archbuilder.training.fused_squeeze_excite import use_fused_squeeze_excite
from archbuilder.training.fused_swish import use_fused_swish

SWITCHES = {
    "batch_norm": use_fused_batch_norm,
    "gelu": use_fused_gelu,
    "swish": use_fused_swish,
    "layer_norm": use_fused_layer_norm,
    "attention": use_fused_attention,
    "dense": use_fused_dense,  # after gelu and swish: a Dense with either is theirs (a layer is switched once)
    "conv_bias": use_fused_conv_bias,
    "add": use_fused_add,
    # before global_pool: a squeeze-and-excitation block's pool is this switch's (a layer is switched once)
    "squeeze_excite": use_fused_squeeze_excite,
    "global_pool": use_fused_global_pool,
}


def use_fused_layers(model, leave_out=()) -> dict[str, list[str]]:
    """Make every switch of SWITCHES but those named in `leave_out` on `model`'s layers; the
    names of the layers each one switched."""
    unknown = set(leave_out) - set(SWITCHES)
    if unknown:
        raise ValueError(f"no such switch: {', '.join(sorted(unknown))} (known: {', '.join(SWITCHES)})")
    return {name: switch(model) for name, switch in SWITCHES.items() if name not in leave_out}
