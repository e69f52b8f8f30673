"""The state of a run: what state.json holds, and everything a training session starts from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from archbuilder.spec.training import TrainingSpec
from archbuilder.training.run_dir import RunDir


@dataclass
class RunState:
    """The last finished epoch: state.json, written after the checkpoint it names."""

    epochs_done: int = 0
    checkpoint: str | None = None  # file name in RUN/checkpoints/
    best: dict | None = None  # {"epoch", "monitor", "value"}
    history: list[dict] = field(default_factory=list)  # one row per finished epoch

    @classmethod
    def from_json(cls, data: dict) -> RunState:
        return cls(data["epochs_done"], data["checkpoint"], data["best"], list(data["history"]))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PreparedRun:
    """A new or resumed run, ready to fit: its folder, compiled model, data and state."""

    run: RunDir
    model: Any  # keras.Model, compiled
    data: Any  # training.prepare.RunData
    training: TrainingSpec
    shape: tuple[int, int, int]
    spec_name: str
    state: RunState
