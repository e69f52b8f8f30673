"""Weights of a Keras model held in memory whose layers nest other layers (keras-hub's ViT holds
its whole encoder in one layer), mapped onto a spec's model by order and shape.

weights_keras3.py maps a `.keras` file by its layer graph. A keras-hub model's file shows no such
graph: its config holds keras-hub's own classes with their constructor arguments, and its weights
are stored per sublayer attribute, in name order (an attention's `_key_dense` before its
`_query_dense`), not in the order the network uses them. In memory the order is there: a model lists
its variables in the order its layers created them, and each variable's path names the object
that holds it (`vit_encoder/transformer_block_1/mha/query/kernel`).

So each model's variables are grouped by that object (the path without its last part), in the
order the model lists them, and each of the reference's groups is paired with the first unpaired
group of ours with the same shapes. This is right whenever both models create same-shaped groups
in the same relative order; groups of other shapes may come in any order (keras-hub creates the
class token before the patch convolution, we after: they pair either way). It knows nothing of
ViT. A pairing that satisfies shapes may still be wrong for a network where two builds order
same-shaped layers differently, so outputs must be compared (tests/test_vit.py does).

    report = load_weights_from_model(model, keras_hub_classifier, strict=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from archbuilder.errors import Remedy, UserError
from archbuilder.keras.weights_h5 import WeightLoadReport, _shapes

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class VariableGroup:
    """The variables one object holds (a Dense's kernel and bias; an attention's query projection)."""

    path: str
    variables: tuple

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(int(d) for d in v.shape) for v in self.variables)

    def describe(self) -> str:
        return f"`{self.path}` {_shapes(self.shapes)}"


def variable_groups(model: "keras.Model") -> list[VariableGroup]:
    """The model's variables grouped by the object holding them, in the order the model lists them."""
    groups: dict[str, list] = {}
    for variable in model.weights:
        holder = variable.path.rsplit("/", 1)[0] if "/" in variable.path else variable.path
        groups.setdefault(holder, []).append(variable)
    return [VariableGroup(path, tuple(variables)) for path, variables in groups.items()]


def pair_by_order(ours: list[VariableGroup], theirs: list[VariableGroup]):
    """([(ours, theirs)], ours left unpaired, theirs left unpaired): each of theirs, in order, with
    the first unpaired of ours that has its shapes."""
    free: dict[tuple, list[int]] = {}
    for index, group in enumerate(ours):
        free.setdefault(group.shapes, []).append(index)
    pairs, lonely = [], []
    for group in theirs:
        waiting = free.get(group.shapes)
        if waiting:
            pairs.append((ours[waiting.pop(0)], group))
        else:
            lonely.append(group)
    taken = {id(mine) for mine, _ in pairs}
    return pairs, [g for g in ours if id(g) not in taken], lonely


def load_weights_from_model(model: "keras.Model", reference: "keras.Model", strict: bool = False) -> WeightLoadReport:
    """Assign `reference`'s weights to `model` (see the module docstring); a report of what paired.
    With `strict`, any group left unpaired on either side is a UserError and nothing is assigned."""
    pairs, missing, extra = pair_by_order(variable_groups(model), variable_groups(reference))
    report = WeightLoadReport(source=f"model {reference.name}", method="by order and shape")
    report.matched = [mine.path for mine, _ in pairs]
    report.missing_in_file = [group.describe() for group in missing]
    report.not_in_model = [group.describe() for group in extra]
    if not pairs:
        raise UserError(f"model {reference.name}: no group of weights has the shapes of one of {model.name}'s")
    if strict and not report.complete:
        raise UserError(report.format() + "\n", Remedy("{strict}: the model does not fit; nothing was loaded"))
    for mine, other in pairs:
        for variable, value in zip(mine.variables, other.variables):
            variable.assign(value)
    return report
