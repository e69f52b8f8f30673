"""The kernel initializer of a spec (`defaults.kernel_initializer`, or one layer's own)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from archbuilder.spec.base import StrictModel


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
