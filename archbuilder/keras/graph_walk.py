"""Keras's ordering of a functional model's layers, walked without recursion.

Keras 3 sorts a functional graph's nodes by a depth-first search that recurses once per layer
of depth (keras/src/ops/function.py `_build_map_helper`): under Python's default limit of 1,000
frames, a valid spec of ~950 layers in a chain (a ResNet with 100 blocks in a stage) failed to
build, save, load or plot with a RecursionError. Raising the limit instead would also let C
recursion (a hand-edited model file's deeply nested JSON) run deeper, past the thread's stack.

`install()` replaces that helper with the same search on a list: the same visiting order, so the
same nodes, operation indices and cycle error (tests/test_graph_walk.py compares the two on the
shipped specs); then a model's depth is bounded by memory, not by the frame limit.
"""

from __future__ import annotations

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()  # before Keras imports TensorFlow, with its start-up chatter

from keras.src import tree  # noqa: E402
from keras.src.ops import function as keras_function  # noqa: E402

_KERAS_HELPER = keras_function._build_map_helper  # kept for the comparison test
_DONE = object()


def build_map_helper(inputs, tensor, finished_nodes, nodes_in_progress, nodes_in_decreasing_depth,
                     operation_indices):
    """`_build_map_helper`'s depth-first search from `tensor`, with an explicit stack."""
    flat_inputs = tree.flatten(inputs)
    stack: list[tuple[object, object]] = []  # (node, iterator over its input tensors), root first

    def enter(tensor) -> None:
        operation, node_index, _ = tensor._keras_history
        if not operation:
            return
        node = operation._inbound_nodes[node_index]
        if node in finished_nodes:  # a shared subgraph, walked already
            return
        if not node.is_input and tensor in flat_inputs:  # a declared input made outside the graph
            finished_nodes.add(node)
            return
        if node in nodes_in_progress:
            raise ValueError(f"Tensor {tensor} from operation '{operation.name}' is part of a cycle.")
        if operation not in operation_indices:
            operation_indices[operation] = len(operation_indices)
        nodes_in_progress.add(node)
        stack.append((node, iter(() if node.is_input else node.input_tensors)))

    enter(tensor)
    while stack:
        node, remaining = stack[-1]
        following = next(remaining, _DONE)
        if following is not _DONE:
            enter(following)
            continue
        stack.pop()
        finished_nodes.add(node)
        nodes_in_progress.remove(node)
        nodes_in_decreasing_depth.append(node)


def install() -> None:
    keras_function._build_map_helper = build_map_helper


install()
