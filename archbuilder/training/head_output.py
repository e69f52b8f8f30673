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


def check_one_vector_per_image(shape, where: str) -> None:
    """`train` and `evaluate` know classifiers only: per image, one vector of class scores. A map
    (a U-Net's HxWxC) or several outputs (a dict of named ones, or a list) are refused in one line,
    before any data is read."""
    if isinstance(shape, dict) or isinstance(shape, list) or len(shape) != 1:
        if isinstance(shape, dict):
            shown = f"{len(shape)} named outputs (" + ", ".join(
                f"{name}: {'x'.join(str(d) for d in dims)}" for name, dims in shape.items()) + ")"
        else:
            shown = "several outputs" if isinstance(shape, list) else "x".join(str(d) for d in shape) + " per image"
        raise UserError(
            f"{where}: the model outputs {shown}, not one value per class; `train` and `evaluate` handle "
            "classifiers only (segmentation maps and several outputs are not trained here yet); a classifier's "
            "head ends in a dense layer of `units: classes` (e.g. global_average_pool, then dense)"
        )


def plan_output(plan):
    """What a plan outputs per image: one shape, or each named output's shape by name."""
    named = plan.output_nodes()
    return plan.output.out_shape if named is None else {name: node.out_shape for name, node in named.items()}


def per_image_output(model):
    """The shape of what the model outputs for one image; for named outputs a dict of them, for
    several unnamed ones a list of batch shapes."""
    from archbuilder.keras.model_files import named_output_shapes

    if (named := named_output_shapes(model)) is not None:
        return {name: shape[1:] for name, shape in named.items()}
    output = model.output_shape
    if isinstance(output, dict):
        return list(output.values())
    if isinstance(output, list) or any(isinstance(d, (tuple, list)) for d in output):
        return list(output)
    return tuple(output)[1:]


def check_classifier_output(model, classes: int, where: str) -> None:
    """The model must output one value per class, through softmax or linear: refuse before training."""
    check_one_vector_per_image(per_image_output(model), where)
    shape = tuple(model.output_shape)
    if shape[-1] != classes:
        raise UserError(
            f"{where}: the model outputs {shape[-1]} values but the data has {classes} classes; "
            "let the head's dense layer use `units: classes`"
        )
    output_kind(model, where)
