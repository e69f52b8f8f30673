"""Expand a validated Spec into a Plan (stem layers, every block's layers, head layers).

This is the step where "stage 3, 4 bottleneck blocks, stride 2" becomes res3a_branch2a …
res3d_branch2c, with each layer's static output shape, parameters and MACs. No TensorFlow.
"""

from __future__ import annotations

from archbuilder.plan.blocks import BLOCK_TYPES, BlockContext
from archbuilder.plan.graph import Plan, PlanBuilder, PlanError
from archbuilder.plan.naming import BlockNames, block_letter
from archbuilder.spec.schema import Spec

MAX_INPUT_SEARCH = 1 << 14


def expand(spec: Spec, input_shape: tuple[int, int, int] | None = None) -> Plan:
    """The spec's plan; raises PlanError where a layer cannot take its input."""
    g = PlanBuilder(spec.name, use_bias=spec.defaults.use_bias, classes=spec.classes,
                    batch_norm_axis=spec.defaults.batch_norm.axis)
    x = g.input(tuple(input_shape or spec.input.shape), spec.input.name)

    for index, layer in enumerate(spec.stem):
        g.enter("stem", "stem", ("stem", index), f"stem layer {index}")
        x = g.layer(layer, x)

    for stage_index, stage in enumerate(spec.stages):
        block_type = BLOCK_TYPES[stage.block]
        label = spec.stage_label(stage_index)
        for block_index in range(stage.repeats):
            names = BlockNames(spec.defaults.naming, label, block_index)
            stride = stage.stride if block_index == 0 else 1
            g.enter(names.group, stage.block, ("stages", stage_index),
                    f"stage {label} block {block_letter(block_index)}")
            block = BlockContext(
                filters=tuple(stage.filters), kernel=stage.kernel, stride=stride,
                projection=_needs_projection(stage.shortcut, block_index, stride, g.shape(x),
                                             block_type.out_channels(tuple(stage.filters))),
                names=names,
            )
            x = block_type.expand(g, x, block)

    for index, layer in enumerate(spec.head):
        g.enter("head", "head", ("head", index), f"head layer {index}")
        x = g.layer(layer, x)
    return g.plan


def _needs_projection(policy: str, block_index: int, stride: int, in_shape, out_channels: int) -> bool:
    if policy == "projection_first":
        return block_index == 0
    if policy == "projection_if_needed":
        return stride != 1 or in_shape[-1] != out_channels
    return False  # identity: residual_output checks that the shapes really match


def smallest_input(spec: Spec, budget: int = 200, node_budget: int = 50_000) -> tuple[int, int] | None:
    """The smallest (height, width) for which the spec's plan works, channels unchanged.

    Height and width are independent through convolutions and pooling, so each is searched with
    the other held large. At most `budget` plans, and about `node_budget` nodes in all, are
    expanded (a 20,000-layer network would otherwise take a minute); None if nothing up to
    MAX_INPUT_SEARCH works or the budget runs out.
    """
    channels = spec.input.shape[2]
    try:
        nodes = len(expand(spec, (MAX_INPUT_SEARCH, MAX_INPUT_SEARCH, channels)).nodes)
    except PlanError:
        return None
    budget = min(budget, node_budget // nodes)
    tries = [0]

    def works(height: int, width: int) -> bool:
        tries[0] += 1
        if tries[0] > budget:
            raise _OutOfBudget
        try:
            expand(spec, (height, width, channels))
            return True
        except PlanError:
            return False

    def search(fits) -> int | None:
        if not fits(MAX_INPUT_SEARCH):
            return None
        low, high = 1, MAX_INPUT_SEARCH  # fits(high) holds
        while low < high:
            middle = (low + high) // 2
            if fits(middle):
                high = middle
            else:
                low = middle + 1
        return low

    try:
        height = search(lambda h: works(h, MAX_INPUT_SEARCH))
        width = search(lambda w: works(MAX_INPUT_SEARCH, w))
        if height is None or width is None:
            return None
        # Shapes that must match (shortcut adds) can make some sizes fail between working ones.
        while not works(height, width):
            height, width = height + 1, width + 1
        return height, width
    except _OutOfBudget:
        return None


class _OutOfBudget(Exception):
    pass
