"""The basic block of ResNet-18/34: two fxf convolutions with batch norm (He et al. 2015, Fig. 2)."""

from __future__ import annotations

from archbuilder.plan.blocks import BlockContext, register_block, residual_output
from archbuilder.plan.graph import PlanBuilder


@register_block("basic", num_filters=2)
def basic(g: PlanBuilder, x: int, block: BlockContext) -> int:
    """Two fxf convolutions (filters [F1, F2]); ResNet-18/34."""
    f1, f2 = block.filters
    names = block.names
    y = g.conv(x, f1, kernel=block.kernel, stride=block.stride, padding="same", name=names.conv("2a"))
    y = g.batch_norm(y, name=names.batch_norm("2a"))
    y = g.activation(y, "relu", name=names.relu("2a"))
    y = g.conv(y, f2, kernel=block.kernel, padding="same", name=names.conv("2b"))
    y = g.batch_norm(y, name=names.batch_norm("2b"))
    return residual_output(g, x, y, block)
