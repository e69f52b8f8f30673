"""What a classifier's head outputs, and so which loss trains it and how predictions are read.

A head ending in softmax outputs probabilities: categorical cross-entropy on them. A head ending
in a linear layer outputs logits: the same loss with `from_logits=True` (softmax inside the loss,
which is also the numerically stable form), and `predict`/`evaluate` apply the softmax. Any other
last activation (relu, sigmoid, ...) is not a distribution over classes and is refused.
"""

from __future__ import annotations

from typing import Literal

from archbuilder.errors import UserError

OutputKind = Literal["probabilities", "logits"]


def last_activation(model) -> str:
    """The name of the activation the model's output passes through last ('linear' if none)."""
    layer = model.layers[-1]
    activation = getattr(layer, "activation", None)
    if activation is None:
        return "linear"
    return getattr(activation, "__name__", str(activation))


def output_kind(model, where: str = "") -> OutputKind:
    """'probabilities' (softmax head) or 'logits' (linear head); a UserError for anything else."""
    name = last_activation(model)
    if name == "softmax":
        return "probabilities"
    if name == "linear":
        return "logits"
    prefix = f"{where}: " if where else ""
    raise UserError(
        f"{prefix}the head's last layer ends in a '{name}' activation, which is not a distribution over classes; "
        "end it with activation: softmax (probabilities) or linear (logits, trained with from_logits)"
    )


def classification_loss(model, label_smoothing: float = 0.0, where: str = ""):
    """Categorical cross-entropy on what this head outputs."""
    import keras

    return keras.losses.CategoricalCrossentropy(
        from_logits=output_kind(model, where) == "logits", label_smoothing=label_smoothing
    )


def check_classifier_output(model, classes: int, where: str) -> None:
    """The model must output one value per class, through softmax or linear: refuse before training."""
    shape = tuple(model.output_shape)
    if len(shape) != 2:
        raise UserError(
            f"{where}: the model's output has shape {list(shape[1:])}, not one value per class; "
            "end the head with a dense layer of `units: classes` (e.g. global_average_pool, then dense)"
        )
    if shape[-1] != classes:
        raise UserError(
            f"{where}: the model outputs {shape[-1]} values but the data has {classes} classes; "
            "let the head's dense layer use `units: classes`"
        )
    output_kind(model, where)
