"""The spec language: pydantic v2 models of an architecture file. Imports no TensorFlow.

A spec is a stem (a list of primitive layers), stages (each a run of one block type) and a head
(another list of primitive layers). Block types are defined in YAML (`blocks:` here, in imported
libraries, or the standard library); there is no eval and no import-by-string from YAML.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.layers import DenseLayer, Layer
from archbuilder.layers.base import LayerName, PositiveInt
from archbuilder.spec.base import StrictModel
from archbuilder.spec.blocks import BlockDef, BlockName, Identifier, StageSpec, refuse_reserved
from archbuilder.spec.initializer import InitializerSpec
from archbuilder.spec.training import TrainingSpec

__all__ = ["Spec", "StageSpec", "InitializerSpec", "Defaults", "InputSpec", "Multipliers"]


# ---------------------------------------------------------------------------------------------
# Defaults shared by every layer of a spec
# ---------------------------------------------------------------------------------------------


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


class Multipliers(StrictModel):
    """Network-level width and depth multipliers (MobileNet's alpha, EfficientNet's coefficients):
    block params declared `scale: width` become make_divisible(value * width, 8); each stage's
    `repeats` becomes ceil(repeats * depth). At 1.0 nothing changes."""

    width: Annotated[float, Field(gt=0, le=64)] = 1.0
    depth: Annotated[float, Field(gt=0, le=64)] = 1.0


Number = Union[Annotated[int, Field(ge=-(2**53), le=2**53)], Annotated[float, Field(ge=-1e15, le=1e15)]]


# ---------------------------------------------------------------------------------------------
# The whole spec
# ---------------------------------------------------------------------------------------------


class Spec(StrictModel):
    """An architecture file after `extends` and `--set` are resolved."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-]+$", max_length=128)]
    input: InputSpec
    classes: PositiveInt | None = None
    defaults: Defaults = Defaults()
    # Resolved before validation (spec/resolve.py); listed so editors know them.
    imports: Optional[list[Annotated[str, Field(min_length=1)]]] = Field(
        None, description="Block-library files (relative to this file) whose `blocks:` this spec uses.")
    variables: Annotated[dict[Identifier, Number], Field(max_length=256)] = {}
    multipliers: Multipliers = Multipliers()
    drop_path_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    blocks: Annotated[dict[BlockName, BlockDef], Field(max_length=1024)] = {}
    stem: list[Layer] = []
    stages: list[StageSpec] = []
    head: list[Layer] = []
    training: TrainingSpec | None = None

    @model_validator(mode="after")
    def _variables_free(self) -> "Spec":
        refuse_reserved(self.variables, "variable", "variables")
        return self

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

    def stage_labels(self) -> list[int]:
        """Every stage's label, in order (two stages may share one)."""
        return [self.stage_label(i) for i in range(len(self.stages))]
