"""The spec language: pydantic v2 models of an architecture file. Imports no TensorFlow.

A spec is a stem (a list of primitive layers), stages (each a run of one block type) and a head
(another list of primitive layers). Block types are looked up by name in a closed registry
(`archbuilder.plan.blocks`); there is no eval and no import-by-string from YAML.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.plan.blocks import BLOCK_TYPES, block_type_names
from archbuilder.spec.base import StrictModel
from archbuilder.spec.layers import DenseLayer, Layer, LayerName, PositiveInt
from archbuilder.spec.training import TrainingSpec



# ---------------------------------------------------------------------------------------------
# Defaults shared by every layer of a spec
# ---------------------------------------------------------------------------------------------


class InitializerSpec(StrictModel):
    """A kernel initializer by name.

    `glorot_uniform_tf1` draws exactly what TensorFlow 1's `glorot_uniform(seed=...)` drew, so the
    notebook's printed block outputs can be reproduced; the others are Keras 3's own initializers.
    """

    type: Literal[
        "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal",
        "glorot_uniform_tf1",
    ] = "glorot_uniform"
    # Keras turns seeds into int64 tensors; a larger one would pass here and fail in `build`.
    seed: Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | None = None

    @model_validator(mode="after")
    def _tf1_needs_seed(self) -> "InitializerSpec":
        if self.type == "glorot_uniform_tf1" and self.seed is None:
            raise PydanticCustomError("spec", "glorot_uniform_tf1 needs a seed, as TensorFlow 1 did (e.g. seed: 0)")
        return self


class BatchNormDefaults(StrictModel):
    axis: Literal[-1, 3] = -1
    epsilon: Annotated[float, Field(gt=0)] = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.99
    # Under tf.distribute, compute each batch's mean and variance over all replicas (Keras's
    # BatchNormalization(synchronized=True)) instead of per replica: see README "Scaling out".
    synchronized: bool = False


class Defaults(StrictModel):
    kernel_initializer: InitializerSpec = InitializerSpec()
    use_bias: bool = True  # convolutions' bias; the dense head layer has its own `use_bias`
    batch_norm: BatchNormDefaults = BatchNormDefaults()
    # How block layers are named: `notebook` -> res2a_branch2a / bn2a_branch2a (the notebook and
    # Caffe's ResNets); `keras` -> conv2_block1_1_conv / conv2_block1_1_bn (keras.applications).
    naming: Literal["notebook", "keras"] = "notebook"


class InputSpec(StrictModel):
    shape: Annotated[list[PositiveInt], Field(min_length=3, max_length=3)]
    name: LayerName | None = None


# ---------------------------------------------------------------------------------------------
# Stages of blocks
# ---------------------------------------------------------------------------------------------

Shortcut = Literal["projection_first", "projection_if_needed", "identity"]


class StageSpec(StrictModel):
    """A run of `repeats` blocks of one type.

    shortcut:
      projection_first     the notebook: the first block is a convolutional block (1x1 conv + BN
                           shortcut, carrying the stride), the rest identity blocks;
      projection_if_needed the paper's ResNet-18/34: a projection only where the shape changes;
      identity             every block adds its input unchanged (the input must already match).
    """

    block: str
    filters: Annotated[list[PositiveInt], Field(min_length=1)]
    kernel: PositiveInt = 3
    stride: PositiveInt = 1
    repeats: PositiveInt = 1
    # The stage's number in layer names (`res{label}{letter}_branch2a`); default: index + 2,
    # since the stem is stage 1 in the notebook.
    # Bounded so that block names stay within a layer name's 128 characters.
    label: Annotated[int, Field(ge=0, le=999_999)] | None = None
    shortcut: Shortcut = "projection_first"

    @field_validator("block")
    @classmethod
    def _known_block(cls, name: str) -> str:
        if name not in BLOCK_TYPES:
            close = difflib.get_close_matches(name, block_type_names(), n=1)
            raise PydanticCustomError(
                "spec", "unknown block type '{name}'; {hint}valid types: {valid}",
                {"name": name, "valid": ", ".join(block_type_names()),
                 "hint": f"did you mean '{close[0]}'? " if close else ""},
            )
        return name

    @field_validator("filters")
    @classmethod
    def _filters_fit_block(cls, filters: list[int], info: ValidationInfo) -> list[int]:
        block = info.data.get("block")  # absent when `block` itself was invalid
        if block is not None and len(filters) != BLOCK_TYPES[block].num_filters:
            raise PydanticCustomError(
                "spec",
                "block type '{block}' takes {wanted} filter counts, got {got}",
                {"block": block, "wanted": BLOCK_TYPES[block].num_filters, "got": len(filters), "received": filters},
            )
        return filters


# ---------------------------------------------------------------------------------------------
# The whole spec
# ---------------------------------------------------------------------------------------------


class Spec(StrictModel):
    """An architecture file after `extends` and `--set` are resolved."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=128)]
    input: InputSpec
    classes: PositiveInt | None = None
    defaults: Defaults = Defaults()
    stem: list[Layer] = []
    stages: list[StageSpec] = []
    head: list[Layer] = []
    training: TrainingSpec | None = None

    @model_validator(mode="after")
    def _classes_given_when_used(self) -> "Spec":
        if self.classes is None:
            for index, layer in enumerate(self.head):
                if isinstance(layer, DenseLayer) and layer.units == "classes":
                    raise PydanticCustomError(
                        "spec",
                        "head.{index} uses units: classes, but the spec sets no top-level 'classes'",
                        {"index": index, "field": "classes"},
                    )
        return self

    def stage_label(self, index: int) -> int:
        label = self.stages[index].label
        return index + 2 if label is None else label
