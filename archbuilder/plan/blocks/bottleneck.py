"""The notebook's bottleneck block: 1x1 -> fxf -> 1x1 convolutions with batch norm.

With a projection shortcut it is the notebook's "convolutional block" (the stride sits on the
first 1x1 conv and on the shortcut, as in the notebook and keras.applications' ResNet v1);
without, its "identity block".
"""

from __future__ import annotations

from archbuilder.plan.blocks import BlockContext, register_block, residual_output
from archbuilder.plan.graph import PlanBuilder


@register_block("bottleneck", num_filters=3)
def bottleneck(g: PlanBuilder, x: int, block: BlockContext) -> int:
    """1x1, fxf, 1x1 convolutions (filters [F1, F2, F3]); ResNet-50/101/152."""
    f1, f2, f3 = block.filters
    names = block.names
    y = g.conv(x, f1, kernel=1, stride=block.stride, name=names.conv("2a"))
    y = g.batch_norm(y, name=names.batch_norm("2a"))
    y = g.activation(y, "relu", name=names.relu("2a"))
    y = g.conv(y, f2, kernel=block.kernel, padding="same", name=names.conv("2b"))
    y = g.batch_norm(y, name=names.batch_norm("2b"))
    y = g.activation(y, "relu", name=names.relu("2b"))
    y = g.conv(y, f3, kernel=1, name=names.conv("2c"))
    y = g.batch_norm(y, name=names.batch_norm("2c"))
    return residual_output(g, x, y, block)
