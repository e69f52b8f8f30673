"""The whole spec file as pydantic v2 models: a stem (a list of primitive layers and block calls),
stages (each a run of one block type) and a head (another such list), with the block types the
spec defines. Imports no TensorFlow.

These models compose the primitive layers (archbuilder/layers) with the block language
(spec/blocks.py), so they sit above both: spec/ holds the vocabulary every part shares, layers/
the primitives, and this module the network made of them. Block types are defined in YAML
(`blocks:` here, in imported libraries, or the standard library); there is no eval and no
import-by-string from YAML.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Tag, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.layers import DenseLayer, Layer
from archbuilder.spec.base import StrictModel
from archbuilder.spec.blocks import (
    CALL_KEYS, MAX_LAYERS, MAX_PARAMS, BlockCall, BlockName, Identifier, ParamSpec, StageSpec, refuse_reserved,
)
from archbuilder.spec.fields import LayerName, PositiveInt, TensorRef, block_parameters
from archbuilder.spec.initializer import InitializerSpec
from archbuilder.spec.reference import References
from archbuilder.spec.training import TrainingSpec

__all__ = ["Spec", "StageSpec", "BlockDef", "InitializerSpec", "Defaults", "InputSpec", "Multipliers"]


# ---------------------------------------------------------------------------------------------
# Block types: parameters and a body of layers and block calls
# ---------------------------------------------------------------------------------------------


def _body_item_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "block-call" if "block" in value else "primitive-layer"
    if isinstance(value, (BlockCall,)):
        return "block-call"
    return "primitive-layer"


BodyItem = Annotated[
    Union[Annotated[Layer, Tag("primitive-layer")], Annotated[BlockCall, Tag("block-call")]],
    Discriminator(_body_item_kind),
]
# pydantic's error locations name the tag; validate.py skips these steps when locating an error.
BODY_TAGS = ("primitive-layer", "block-call")


class BlockDef(StrictModel):
    """A block type: parameters and a body of layers. Its output is its last layer's."""

    summary: Optional[Annotated[str, Field(max_length=200)]] = None
    params: Annotated[dict[Identifier, ParamSpec], Field(max_length=MAX_PARAMS)] = {}
    layers: Annotated[list[BodyItem], Field(min_length=1, max_length=MAX_LAYERS)]

    @model_validator(mode="wrap")
    @classmethod
    def _body_sees_parameters(cls, data: Any, handler) -> "BlockDef":
        # A layer of the body may name a choice or bool parameter as a field's value (`activation: act`).
        with block_parameters(data.get("params") if isinstance(data, dict) else None):
            return handler(data)

    @model_validator(mode="after")
    def _names_free(self) -> "BlockDef":
        refuse_reserved(self.params, "parameter", "params", CALL_KEYS)
        return self


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


SectionName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
# What a section may not be called: the other parts' names, which `info` rows and `plot` boxes show.
RESERVED_SECTIONS = frozenset({"input", "stem", "stages", "head", "outputs"})

Number = Union[Annotated[int, Field(ge=-(2**53), le=2**53)], Annotated[float, Field(ge=-1e15, le=1e15)]]


# ---------------------------------------------------------------------------------------------
# The whole spec
# ---------------------------------------------------------------------------------------------


class Spec(StrictModel):
    """An architecture file after `extends` and `--set` are resolved."""

    # A file name (build writes NAME.keras, plot NAME-blocks.png): "." or "..", or a leading dot
    # (a hidden file) or dash (read as an option by other tools), is not one.
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=128)]
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
    # Stem and head are bodies too: primitive layers and block calls (`{block: NAME, ...}`).
    stem: list[BodyItem] = []
    stages: list[StageSpec] = []
    # Further bodies after the stages, expanded in the order written, each taking the part before
    # it as its `input` and `from:` any earlier id: an ASPP, a decoder, a feature pyramid. One
    # mapping rather than fixed keys (`neck:`, `decoder:`), since networks name and count their
    # parts differently; the names show in `info` and `plot`.
    sections: Annotated[dict[SectionName, list[BodyItem]], Field(
        max_length=64, description="Further bodies after the stages, by name, in order (e.g. aspp, decoder); "
                                   "each takes the part before it as `input` and `from:` any earlier id.")] = {}
    head: list[BodyItem] = []
    # The network's outputs by name, each the id of a layer, block call, stage or section item; the
    # Keras model then returns a dict. Without it the network's one output is its last layer.
    outputs: Optional[Annotated[dict[Identifier, TensorRef], Field(min_length=1, max_length=64)]] = Field(
        None, description="The network's outputs by name, each the id of a layer, block call, stage or section "
                          "item; the Keras model returns a dict of them.")
    training: TrainingSpec | None = None
    # The published network this file reproduces and its counts (spec/reference.py); not built.
    reference: Optional[References] = None

    @model_validator(mode="after")
    def _variables_free(self) -> "Spec":
        refuse_reserved(self.variables, "variable", "variables")
        return self

    @model_validator(mode="after")
    def _sections_named_freely(self) -> "Spec":
        for name in self.sections:
            if name in RESERVED_SECTIONS:
                raise PydanticCustomError(
                    "spec", "section name '{name}' is reserved (it names another part of the network); "
                    "call it something else, e.g. 'decoder'", {"name": name, "field": "sections"})
        return self

    @model_validator(mode="after")
    def _classes_given_when_used(self) -> "Spec":
        if self.classes is None:
            for part, items in self.bodies():
                for index, layer in enumerate(items):
                    if isinstance(layer, DenseLayer) and layer.units == "classes":
                        raise PydanticCustomError(
                            "spec",
                            "{part}.{index} uses units: classes, but the spec sets no top-level 'classes'",
                            {"part": ".".join(part), "index": index, "field": "classes"},
                        )
        return self

    def bodies(self) -> list[tuple[tuple[str, ...], list]]:
        """The network's bodies outside the stages, in order, by path: stem, each section, head."""
        return [(("stem",), self.stem), *((("sections", name), items) for name, items in self.sections.items()),
                (("head",), self.head)]

    def stage_label(self, index: int) -> int:
        label = self.stages[index].label
        return index + 2 if label is None else label

    def stage_labels(self) -> list[int]:
        """Every stage's label, in order (two stages may share one)."""
        return [self.stage_label(i) for i in range(len(self.stages))]
