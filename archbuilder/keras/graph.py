"""Materialize a plan as a Keras 3 functional model.

Each plan node becomes one Keras layer, in plan order, so the model's layers, names and shapes are
the plan's (a test checks this for every shipped spec). Importing this module imports Keras.
"""

from __future__ import annotations

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402

import archbuilder.keras.graph_walk  # noqa: E402,F401  (a deep model's graph sorted without recursion)
import archbuilder.keras.token_layers  # noqa: E402,F401  (registers the token primitives' Keras layers)

from dataclasses import replace  # noqa: E402

from archbuilder.keras.initializers import make_initializer  # noqa: E402
from archbuilder.plan.expand import context_of  # noqa: E402
from archbuilder.plan.graph import Plan  # noqa: E402
from archbuilder.plan.schema import Spec  # noqa: E402


def build_model(spec: Spec, plan: Plan | None = None) -> keras.Model:
    """The Keras model of a validated spec (its plan is expanded if not given)."""
    if plan is None:
        from archbuilder.plan.expand import expand

        plan = expand(spec)
    context = replace(context_of(spec), make_initializer=make_initializer)
    tensors: list = []
    layers: dict[int, keras.layers.Layer] = {}
    for node, name in zip(plan.nodes, _layer_names(plan)):
        if node.kind == "input":
            tensors.append(keras.Input(shape=node.out_shape, name=name))
            continue
        arguments = [tensors[i] for i in node.inputs]
        if node.shares is not None:  # `share:`: the first call's layer object again, so its weights
            layer = layers[node.shares]
        else:  # each primitive builds its own Keras layer, knowing its input shapes (batch axis aside)
            layer = layers[node.index] = node.layer.keras(context, name, [tuple(t.shape[1:]) for t in arguments])
        called = node.layer.keras_inputs(arguments)
        tensors.append(layer(called if node.layer.merge else called[0]))
    # Named outputs give a dict, so predictions and exports carry the names the spec gave them.
    outputs = {name: tensors[index] for name, index in plan.outputs.items()} if plan.outputs else tensors[-1]
    return keras.Model(inputs=tensors[0], outputs=outputs, name=spec.name)


def _layer_names(plan: Plan) -> list[str]:
    """Each node's name: its own, or a Keras-style automatic one (`activation`, `activation_1`, ...).

    Keras numbers unnamed layers per process, so a spec naming a layer `activation_1` could collide
    with one Keras named; numbering here, per model and skipping the spec's names, cannot.
    """
    taken = {node.name for node in plan.nodes if node.name}
    counts: dict[str, int] = {}
    names = []
    for node in plan.nodes:
        if node.shares is not None:  # the same Keras layer as the node it shares, so its name
            names.append(names[node.shares])
            continue
        name = node.name
        while name is None or (name in taken and node.name is None):
            base = "input_layer" if node.layer is None else node.layer.keras_base_name
            count = counts[base] = counts.get(base, -1) + 1
            name = base if count == 0 else f"{base}_{count}"
        taken.add(name)
        names.append(name)
    return names
