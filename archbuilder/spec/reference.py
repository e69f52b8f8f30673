"""A spec's `reference:` section: the published network a file reproduces, and its counts.

    reference:
      - source: keras.applications.MobileNetV2, alpha 1.4
        version: keras 3.15.1
        total_params: 6156712
        trainable_params: 6108776
        overrides: [multipliers.width=1.4]
        keras_application: MobileNetV2
        keras_arguments: {alpha: 1.4}

Validation checks its types; building ignores it, and `diff` does not compare it (it describes the
file, not the network). tests/test_zoo.py reads it from every zoo file, so a new zoo network is one
file. A list, so that a file extending another replaces its parent's entries whole (a mapping
would merge key by key and inherit the parent's numbers).
"""

from __future__ import annotations

from typing import Annotated, Optional, Union

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from archbuilder.spec.base import StrictModel

Count = Annotated[int, Field(ge=0, le=10**15, strict=True)]
Text = Annotated[str, Field(min_length=1, max_length=500)]
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class ReferenceSpec(StrictModel):
    """One set of published counts, for the spec as written or with `overrides` applied."""

    source: Text  # what the counts are of: "keras.applications.ResNet50", "timm seresnet50"
    version: Optional[Text] = None  # the version they were read from: "keras 3.15.1"
    total_params: Optional[Count] = None  # Keras's count_params(); none where the source publishes only trainable
    trainable_params: Count
    note: Optional[Text] = None  # where the numbers are written down, and why any difference is what it is
    # `--set` overrides under which these counts hold (a width multiplier, another input size).
    overrides: Annotated[list[Annotated[str, Field(min_length=3, max_length=200)]], Field(max_length=16)] = []
    # A keras.applications function building the same network: tests compare outputs with it.
    keras_application: Optional[FunctionName] = None
    keras_arguments: Annotated[dict[FunctionName, Union[StrictBool, StrictInt, StrictFloat, StrictStr]],
                               Field(max_length=16)] = {}
    keras_names: bool = True  # with keras_application: its weighted layers carry the same names


References = Annotated[list[ReferenceSpec], Field(min_length=1, max_length=32)]
