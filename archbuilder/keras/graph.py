"""Materialize a plan as a Keras 3 functional model.

Each plan node becomes one Keras layer, in plan order, so the model's layers, names and shapes are
the plan's (a test checks this for every shipped spec). Importing this module imports Keras.
"""

from __future__ import annotations

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402

from archbuilder.plan.graph import Node, Plan  # noqa: E402
from archbuilder.keras.initializers import make_initializer  # noqa: E402
from archbuilder.spec.schema import Spec  # noqa: E402
from archbuilder.spec.layers import pair  # noqa: E402


def build_model(spec: Spec, plan: Plan | None = None) -> keras.Model:
    """The Keras model of a validated spec (its plan is expanded if not given)."""
    if plan is None:
        from archbuilder.plan.expand import expand

        plan = expand(spec)
    factory = _LayerFactory(spec)
    tensors: list = []
    for node, name in zip(plan.nodes, _layer_names(plan)):
        if node.kind == "input":
            tensors.append(keras.Input(shape=node.out_shape, name=name))
            continue
        layer = factory.make(node, name)
        arguments = [tensors[i] for i in node.inputs]
        tensors.append(layer(arguments if node.kind == "add" else arguments[0]))
    return keras.Model(inputs=tensors[0], outputs=tensors[-1], name=spec.name)


class _LayerFactory:
    """Keras layers for plan nodes, with the spec's defaults filled in."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.defaults = spec.defaults

    def make(self, node: Node, name: str) -> keras.layers.Layer:
        return getattr(self, "_" + node.kind)(node.layer, name)

    def _zero_padding(self, layer, name):
        ph, pw = pair(layer.padding)
        return keras.layers.ZeroPadding2D(padding=(ph, pw), name=name)

    def _conv(self, layer, name):
        return keras.layers.Conv2D(
            filters=layer.filters, kernel_size=pair(layer.kernel), strides=pair(layer.stride),
            padding=layer.padding,
            use_bias=self.defaults.use_bias if layer.use_bias is None else layer.use_bias,
            kernel_initializer=make_initializer(self.defaults.kernel_initializer), name=name,
        )

    def _batch_norm(self, layer, name):
        bn = self.defaults.batch_norm
        return keras.layers.BatchNormalization(
            axis=bn.axis,
            epsilon=bn.epsilon if layer.epsilon is None else layer.epsilon,
            momentum=bn.momentum if layer.momentum is None else layer.momentum,
            synchronized=bn.synchronized, name=name,
        )

    def _activation(self, layer, name):
        return keras.layers.Activation(layer.activation, dtype=_output_dtype(layer), name=name)

    def _max_pool(self, layer, name):
        return keras.layers.MaxPooling2D(pool_size=pair(layer.pool), strides=_stride(layer), padding=layer.padding, name=name)

    def _average_pool(self, layer, name):
        return keras.layers.AveragePooling2D(pool_size=pair(layer.pool), strides=_stride(layer), padding=layer.padding, name=name)

    def _global_average_pool(self, layer, name):
        return keras.layers.GlobalAveragePooling2D(name=name)

    def _flatten(self, layer, name):
        return keras.layers.Flatten(name=name)

    def _dense(self, layer, name):
        return keras.layers.Dense(
            units=self.spec.classes if layer.units == "classes" else layer.units,
            activation=layer.activation, use_bias=layer.use_bias,
            kernel_initializer=make_initializer(self.defaults.kernel_initializer),
            dtype=_output_dtype(layer), name=name,
        )

    def _add(self, layer, name):
        return keras.layers.Add(name=name)


def _output_dtype(layer) -> str | None:
    """A softmax computes in float32 under a mixed-precision policy (16-bit exp overflows and
    rounds probabilities); None leaves every other layer to the global policy."""
    return "float32" if layer.activation == "softmax" else None


# Keras's automatic name for each kind of layer (the snake-cased class name).
_KERAS_BASE_NAMES = {
    "input": "input_layer", "zero_padding": "zero_padding2d", "conv": "conv2d", "batch_norm": "batch_normalization",
    "activation": "activation", "max_pool": "max_pooling2d", "average_pool": "average_pooling2d",
    "global_average_pool": "global_average_pooling2d", "flatten": "flatten", "dense": "dense", "add": "add",
}


def _layer_names(plan: Plan) -> list[str]:
    """Each node's name: its own, or a Keras-style automatic one (`activation`, `activation_1`, ...).

    Keras numbers unnamed layers per process, so a spec naming a layer `activation_1` could collide
    with one Keras named; numbering here, per model and skipping the spec's names, cannot.
    """
    taken = {node.name for node in plan.nodes if node.name}
    counts: dict[str, int] = {}
    names = []
    for node in plan.nodes:
        name = node.name
        while name is None or (name in taken and node.name is None):
            base = _KERAS_BASE_NAMES[node.kind]
            count = counts[base] = counts.get(base, -1) + 1
            name = base if count == 0 else f"{base}_{count}"
        taken.add(name)
        names.append(name)
    return names


def _stride(layer) -> tuple[int, int] | None:
    return pair(layer.stride) if layer.stride is not None else None
