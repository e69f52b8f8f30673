"""The base class of every spec model: unknown keys are errors, values are immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    # inf and nan are YAML floats (.inf, .nan) but no sensible size, rate or epsilon.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
