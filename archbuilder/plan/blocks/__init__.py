"""The closed registry of block types. Imports no TensorFlow.

A block type is a function that appends primitive layers to a `PlanBuilder`: the same
description serves static inference and the Keras builder, so they cannot drift apart.
YAML chooses a block by name from this registry; nothing is imported or evaluated from a string.

    @register_block("bottleneck", num_filters=3)
    def bottleneck(g: PlanBuilder, x: int, block: BlockContext) -> int: ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from archbuilder.plan.graph import PlanBuilder
from archbuilder.plan.naming import BlockNames
from archbuilder.plan.shapes import format_shape


@dataclass(frozen=True)
class BlockContext:
    """What one block needs to know about its place in the network."""

    filters: tuple[int, ...]
    kernel: int
    stride: int  # this block's stride: the stage's for its first block, 1 after
    projection: bool  # whether the shortcut is a 1x1 conv + BN projection
    names: BlockNames


BlockFunction = Callable[[PlanBuilder, int, BlockContext], int]


@dataclass(frozen=True)
class BlockType:
    name: str
    num_filters: int  # how many filter counts `filters:` takes
    expand: BlockFunction
    summary: str

    def out_channels(self, filters: tuple[int, ...]) -> int:
        return filters[-1]


BLOCK_TYPES: dict[str, BlockType] = {}


def register_block(name: str, *, num_filters: int) -> Callable[[BlockFunction], BlockFunction]:
    def register(function: BlockFunction) -> BlockFunction:
        if name in BLOCK_TYPES:
            raise ValueError(f"block type '{name}' is registered twice")
        summary = (function.__doc__ or "").strip().splitlines()[0] if function.__doc__ else ""
        BLOCK_TYPES[name] = BlockType(name, num_filters, function, summary)
        return function

    return register


def block_type_names() -> list[str]:
    return sorted(BLOCK_TYPES)


def residual_output(g: PlanBuilder, block_input: int, main: int, block: BlockContext) -> int:
    """Add the shortcut to the main path and apply the final ReLU, as every ResNet block does.

    The projection shortcut (1x1 conv carrying the block's stride, then BN) is added after the
    main path, which is the order the notebook creates its layers in.
    """
    if block.projection:
        shortcut = g.conv(block_input, block.filters[-1], kernel=1, stride=block.stride, name=block.names.conv("1"))
        shortcut = g.batch_norm(shortcut, name=block.names.batch_norm("1"))
    else:
        shortcut = block_input
        if g.shape(shortcut) != g.shape(main):
            raise g.error(
                f"identity shortcut does not fit: the block's input is {format_shape(g.shape(shortcut))} "
                f"but its output is {format_shape(g.shape(main))}; "
                "use shortcut: projection_first or projection_if_needed"
            )
    added = g.add([main, shortcut], name=block.names.add())
    return g.activation(added, "relu", name=block.names.out())


# Built-in block types register themselves on import.
from archbuilder.plan.blocks import basic, bottleneck  # noqa: E402,F401
