"""The block language's schema: block parameters, block calls and the stages using block types.
A block type's definition (`BlockDef`: parameters and a body of layers and block calls) composes
the primitive layers, so it sits with the whole spec's model, archbuilder/plan/schema.py.

    blocks:
      se_bottleneck:
        params: {filters: {type: int, min: 1}, stride: {type: int, default: 1}}
        layers:
          - {type: conv, filters: filters, kernel: 1, stride: stride}
          - {block: squeeze_excite, ratio: 0.25}      # another block type, used inside this one
          - {type: add, from: [input, ...]}

Only the shape of the definitions is checked here; names, parameters, `from:` references and
recursion are checked against the whole spec by `archbuilder.plan.blocks`. Imports no TensorFlow.
"""

from __future__ import annotations

import keyword
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.spec.base import StrictModel
from archbuilder.spec.fields import LocalId, PosInt, PositiveInt, TensorRef, expr
from archbuilder.spec.params import ParamError, check_value

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]
BlockName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]

# Names an expression may use that the network provides; a parameter or variable may not take them.
RESERVED_NAMES = frozenset({
    "in_channels", "in_height", "in_width", "block_index", "repeats", "stage_index", "block_number",
    "num_blocks", "width", "depth", "drop_path_rate", "drop_path", "classes", "input", "true", "false",
    "True", "False", "stage", "letter", "block", "share",
})
# Keys a stage or a block call reads itself (beside `block`, `repeats`, `share`, reserved above), so a
# parameter of that name could never be given: `label: 5` would set the stage's label. (`stride` is a
# stage key too, but it is passed on to the block's own `stride` parameter.)
CALL_KEYS = frozenset({"stride_on", "label", "id", "from", "when"})
MAX_PARAMS = 64
MAX_LAYERS = 256  # layers in one block body
MAX_LIST = 64  # items of a list parameter


class ParamSpec(StrictModel):
    """One parameter of a block type. Without `default` it is required.

    type: int | float | bool | choice (one of `choices`) | int_list | float_list (`length` items).
    `min`/`max` bound numbers (each item of a list). `scale: width` multiplies a channel count
    passed by a stage by the network's width multiplier, rounded by make_divisible(…, 8).
    """

    type: Literal["int", "float", "bool", "choice", "int_list", "float_list"]
    default: Any = None
    min: Optional[Union[int, float]] = None  # an integer stays one (`min: 1`, not 1.0, in `diff`)
    max: Optional[Union[int, float]] = None
    choices: Optional[Annotated[list[Identifier], Field(min_length=1, max_length=64)]] = None
    length: Optional[Annotated[int, Field(ge=1, le=MAX_LIST)]] = None
    scale: Optional[Literal["width"]] = None
    doc: Optional[Annotated[str, Field(max_length=500)]] = None

    @property
    def required(self) -> bool:
        # `default: null` is the same as no default, so a dumped spec (run folders' spec.yaml) reads back.
        return self.default is None

    @model_validator(mode="after")
    def _consistent(self) -> "ParamSpec":
        if (self.type == "choice") != (self.choices is not None):
            raise PydanticCustomError("spec", "'choices' goes with type: choice, and type: choice needs 'choices'")
        if self.length is not None and not self.type.endswith("_list"):
            raise PydanticCustomError("spec", "'length' applies to int_list and float_list only")
        if self.scale is not None and self.type not in ("int", "int_list"):
            raise PydanticCustomError("spec", "scale: width applies to int and int_list parameters (channel counts)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("spec", "min is larger than max")
        if not self.required:
            try:
                check_value(self, self.default)
            except ParamError as error:
                raise PydanticCustomError("spec", "{message}", {"message": str(error), "field": "default"}) from None
        return self


class BlockCall(StrictModel):
    """A block type used inside another block's body: `{block: NAME, id, from, when, share, PARAM: value, ...}`.

    share: a key; the first call with it creates the block's layers, later calls with the same key
           run those same layers (weights) on their own input, as a detector's heads do at every
           pyramid level (plan/expand.py checks the calls agree).
    """

    model_config = {**StrictModel.model_config, "extra": "allow", "populate_by_name": True}

    block: BlockName
    id: LocalId | None = None
    from_: Union[TensorRef, None] = Field(None, alias="from")
    when: Optional[expr(bool)] = None
    share: LocalId | None = None

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def refuse_reserved(names, what: str, field: str, keys: frozenset[str] = frozenset()) -> None:
    """Parameters and variables may not take a name the network provides (`in_channels`, ...), a
    Python keyword (an expression could not name it), or one of `keys` (a call's own keys)."""
    for name in names:
        if name in RESERVED_NAMES:
            raise PydanticCustomError("spec", "{what} name '{name}' is reserved (the network provides it)",
                                      {"what": what, "name": name, "field": field})
        if isinstance(name, str) and keyword.iskeyword(name):
            raise PydanticCustomError("spec", "{what} name '{name}' is a Python keyword, which an expression "
                                      "cannot name; choose another", {"what": what, "name": name, "field": field})
        if name in keys:
            raise PydanticCustomError("spec", "{what} name '{name}' is a key of a stage or block call ({keys}), "
                                      "so no call could give it; choose another",
                                      {"what": what, "name": name, "field": field, "keys": ", ".join(sorted(keys))})


class StageSpec(StrictModel):
    """A run of `repeats` blocks of one type; every key besides the reserved ones is a parameter of
    the block (a literal, or an expression evaluated per block).

    stride:   given to the stage's first block (`stride_on: last`: its last), 1 to the others;
    label:    the stage's number in layer names (`res{label}{letter}_branch2a`); default index + 2,
              since the stem is stage 1 in the notebook.
    id:       names the stage's output, which a later stem, section or head item may take (`from:`);
              `ID.K` names the output of its block K (0 for the first).
    """

    model_config = {**StrictModel.model_config, "extra": "allow"}

    block: BlockName
    repeats: PosInt = 1
    stride: PositiveInt = 1
    stride_on: Literal["first", "last"] = "first"
    # Bounded so that block names stay within a layer name's 128 characters.
    label: Annotated[int, Field(ge=0, le=999_999)] | None = None
    id: LocalId | None = None

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
