"""The optional `training:` section of a spec. Defaults are the notebook's choices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from archbuilder.spec_base import StrictModel


class TrainingSpec(StrictModel):
    optimizer: Literal["adam", "sgd", "rmsprop", "adamw"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    loss: Literal["categorical_crossentropy"] = "categorical_crossentropy"
    batch_size: int = Field(32, gt=0)
    epochs: int = Field(2, gt=0)
    seed: int = 0
