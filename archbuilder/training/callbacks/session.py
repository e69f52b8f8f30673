"""What the training callbacks share: the run folder, its state and the epoch being recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from archbuilder.training.run_dir import RunDir
from archbuilder.training.run_state import RunState


@dataclass
class Session:
    run: RunDir
    state: RunState
    data: object  # training.prepare.RunData
    metadata: dict  # stored in every .keras file
    batch_size: int
    monitor: str  # the history column that picks the best epoch
    predict: Callable  # (model, uint8 images) -> probabilities, without collectives
    # False on the workers of a distributed run other than the chief: they write nothing into the
    # run folder, and what Keras must save on them too (saving reads every worker's metric
    # variables) goes to `scratch`, a temporary folder, and is deleted at once.
    writer: bool = True
    scratch: Path | None = None
    # Filled in during an epoch by the callbacks, in their order:
    timing: dict = field(default_factory=dict)  # StepTimer: seconds, images per second
    row: dict | None = None  # EpochRow: the finished epoch's history row; None if it did not finish
    stop_requested: bool = False  # Ctrl-C or SIGTERM: stop after the current batch
    stop_signal: int = 0  # the signal that asked for it (on any worker of a multi-worker run)
    # In a multi-worker run a signal only asks (stop_signal); the stop is requested once all
    # workers agree, after the same batch (AgreedStop), so that none runs on alone.
    stop_needs_agreement: bool = False
    diverged_at: tuple[int, int] | None = None  # (epoch, batch; 0 = at the epoch's end)
    epoch_whole: bool = False  # StopGuard: every step of the current epoch ran
    # Checkpointer: the epoch whose checkpoint holds the weights as they are in memory; None once a
    # step has begun since (an interrupted epoch's batches). The end of a run reloads the best
    # epoch's weights only when they are not these.
    weights_saved_at: int | None = None

    @property
    def epoch_cut_short(self) -> bool:
        """The current epoch is not kept: the loss diverged, or Ctrl-C came before its last batch
        (Ctrl-C during the last batch interrupts nothing: the epoch is whole and is kept)."""
        return self.diverged_at is not None or (self.stop_requested and not self.epoch_whole)

    def epoch_number(self) -> int:
        return self.state.epochs_done + 1
