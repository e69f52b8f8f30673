"""What a run folder holds. Every file is written atomically (temp file, fsync, rename).

    spec.yaml             the fully resolved spec that was trained (overrides applied)
    run.json              how the run was started: data, test set, class names, training settings
    classes.txt           class names, one per line, in output order (also inside every .keras)
    checkpoints/epoch-NNNN.keras   the last finished epoch: model + optimizer state
    state.json            the last finished epoch, its checkpoint and the history so far;
                          written after the checkpoint, so it never names a missing one
    best.keras            the best epoch so far (lowest validation loss, else training loss)
    history.csv           one row per finished epoch
    curves.png            loss and accuracy per epoch
    confusion_matrix.png  the best model on the test set (validation / training set if none)
    metrics.json          final figures of the best model
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from typing import Annotated, Literal, Optional

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError,
                      model_validator)

from archbuilder.atomic import atomic_write_text
from archbuilder.errors import NOT_JSON, UserError, json_reason, shown
from archbuilder.spec.training import TrainingSpec
from archbuilder.training.run_lock import RunLock

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy",
    "learning_rate", "seconds", "cpu_seconds", "images_per_second", "images_per_cpu_second",
)


class RunDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.spec = self.root / "spec.yaml"
        self.run_json = self.root / "run.json"
        self.classes = self.root / "classes.txt"
        self.checkpoints = self.root / "checkpoints"
        self.state = self.root / "state.json"
        self.best = self.root / "best.keras"
        self.history = self.root / "history.csv"
        self.curves = self.root / "curves.png"
        self.confusion = self.root / "confusion_matrix.png"
        self.metrics = self.root / "metrics.json"
        self.lock = RunLock(self.root)

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.keras"

    def is_run(self) -> bool:
        return self.run_json.exists()

    def read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{self.root}: not a run folder (no {path.name})") from None
        except OSError as error:
            raise UserError(f"{path}: unreadable ({error})") from None
        except NOT_JSON as error:
            raise UserError(f"{path}: unreadable ({json_reason(error)})") from None

    def read_run_info(self) -> dict:
        """run.json, checked as strictly as a spec: a hand-edited or damaged file is one clear error."""
        if not self.run_json.exists() and self.spec.exists():  # train writes run.json last
            raise UserError(f"{self.root}: a train stopped while starting (spec.yaml, no run.json): nothing to "
                            f"resume; run the same train command again to start it over")
        return _checked(self.read_json(self.run_json), _RunInfo, self.run_json)

    def read_state(self) -> dict | None:
        """state.json (None before the first epoch finished), checked like run.json."""
        return _checked(self.read_json(self.state), _RunState, self.state) if self.state.exists() else None

    def write_json(self, path: Path, data: dict) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, allow_nan=True) + "\n")

    def write_history(self, rows: list[dict]) -> None:
        columns = [c for c in HISTORY_COLUMNS if any(c in row for row in rows)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.history, buffer.getvalue())

    def remove_checkpoints_except(self, keep: Path) -> None:
        for path in self.checkpoints.glob("epoch-*.keras"):
            if path != keep:
                path.unlink(missing_ok=True)

    def remove_temporaries(self) -> None:
        """Delete half-written files (atomic_path's `.NAME.*.tmp*`, link_best's `.best.keras.link.tmp`)."""
        for path in list(self.root.rglob(".*")):
            if ".tmp" in path.name and path.is_file():
                path.unlink(missing_ok=True)

    def link_best(self, checkpoint: Path) -> None:
        """best.keras becomes the same file as `checkpoint` (a hard link, renamed into place)."""
        tmp = self.root / ".best.keras.link.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(checkpoint, tmp)
        except OSError:  # filesystems without hard links
            import shutil

            shutil.copyfile(checkpoint, tmp)
        os.replace(tmp, self.best)


class _RunInfo(BaseModel):
    """What `--resume` reads from run.json (other keys are kept, not read)."""

    model_config = ConfigDict(extra="allow")
    data: StrictStr
    test: Optional[StrictStr] = None
    holdout_photographers: Optional[float] = Field(default=None, gt=0, lt=1)
    classes_filter: Optional[list[StrictStr]] = None
    skip_bad_images: StrictBool = False
    training: TrainingSpec
    input_shape: list[Annotated[StrictInt, Field(gt=0)]] = Field(min_length=3, max_length=3)
    spec_name: StrictStr
    class_names: Optional[list[StrictStr]] = None
    # How it was distributed (absent in runs started before this was recorded: then as asked now).
    distribute: Optional[Literal["none", "mirrored", "multi-worker"]] = None
    devices: Optional[Annotated[StrictInt, Field(ge=1)]] = None


_Number = StrictFloat  # an int or a float as JSON writes them; never a string ("low" was read later, a TypeError)


class _Best(BaseModel):
    """state.json's best epoch (callbacks/checkpointer.py): the epoch, what was monitored, its value."""

    model_config = ConfigDict(extra="allow")
    epoch: StrictInt = Field(ge=1)
    monitor: StrictStr
    value: Optional[_Number]  # None where the monitored metric was missing from the epoch's row


class _HistoryRow(BaseModel):
    """One finished epoch of state.json's history: its number and seconds, and its metrics."""

    model_config = ConfigDict(extra="allow")
    epoch: StrictInt
    seconds: Annotated[_Number, Field(ge=0)]


class _RunState(BaseModel):
    """What `--resume` reads from state.json."""

    model_config = ConfigDict(extra="allow")
    epochs_done: StrictInt = Field(ge=0)
    checkpoint: Optional[Annotated[StrictStr, Field(pattern=r"^epoch-[0-9]+\.keras$")]]
    best: Optional[_Best]
    history: list[_HistoryRow]

    @model_validator(mode="after")
    def _one_story(self):
        """What train writes agrees with itself (checkpointer.py: after epoch N, history rows 1..N
        and epoch-N's file); a file edited to say otherwise would resume from one epoch's weights
        labelled as another's (its learning-rate schedule, its epoch count)."""
        epochs = [row.epoch for row in self.history]
        if epochs != list(range(1, self.epochs_done + 1)):
            raise ValueError(f"epochs_done is {self.epochs_done} but the history holds epochs {epochs[:8]}"
                             f"{' ...' if len(epochs) > 8 else ''}; the file was not written by train")
        if self.epochs_done and (self.checkpoint is None or self.best is None):
            raise ValueError(f"epochs_done is {self.epochs_done} but no {'checkpoint' if self.checkpoint is None else 'best epoch'} "
                             "is named; the file was not written by train")
        if self.best is not None and self.best.epoch > self.epochs_done:
            raise ValueError(f"the best epoch is {self.best.epoch} but epochs_done is {self.epochs_done}; "
                             "the file was not written by train")
        if self.checkpoint is not None and int(self.checkpoint[len("epoch-"):-len(".keras")]) != self.epochs_done:
            raise ValueError(f"epochs_done is {self.epochs_done} but the checkpoint is {self.checkpoint}; "
                             "the file was not written by train")
        return self


def _checked(data, model: type[BaseModel], path: Path) -> dict:
    """`data` if it fits `model`, with the defaults of the keys it leaves out (a run.json without
    `test` was a KeyError); else a UserError with one line per problem."""
    try:
        checked = model.model_validate(data)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "<document>"
            if problem["type"] == "value_error" and not problem["loc"]:  # a whole-file check: its own words
                lines.append(f"{shown(path)}: {problem['ctx']['error']}")
                continue
            received = json.dumps(problem.get("input"), default=str)
            received = received if len(received) <= 60 else received[:57] + "..."
            lines.append(f"{shown(path)}: {where}: {problem['msg'][:1].lower()}{problem['msg'][1:]} (received: {received})")
        raise UserError("\n".join(lines)) from None
    return {**checked.model_dump(), **data}
