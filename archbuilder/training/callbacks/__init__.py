"""The training run's Keras callbacks, one concern each, sharing one `Session`.

They run in the order `callbacks()` lists them. At the end of an epoch: in a distributed run,
the heartbeat tells the watchdog, AgreedStop makes a stop asked on one worker everyone's, and
BatchNormSync averages BatchNorm's statistics over the replicas; the stop guard decides whether
the epoch finished; if the spec asks, BatchNormRecompute recomputes BatchNorm's statistics
(counted as training time); the timer and `EpochRow` fill in the
epoch's history row; the checkpointer commits the epoch (checkpoint, best.keras, state.json); the
history files are written from the committed state.
"""

from __future__ import annotations

from archbuilder.training.callbacks.agreed_stop import AgreedStop
from archbuilder.training.callbacks.batch_norm_recompute import BatchNormRecompute
from archbuilder.training.callbacks.batch_norm_sync import BatchNormSync
from archbuilder.training.callbacks.checkpointer import Checkpointer
from archbuilder.training.callbacks.epoch_row import EpochRow
from archbuilder.training.callbacks.heartbeat import Heartbeat
from archbuilder.training.callbacks.history_files import HistoryFiles
from archbuilder.training.callbacks.session import Session
from archbuilder.training.callbacks.step_timer import StepTimer
from archbuilder.training.callbacks.stop_guard import StopGuard


def callbacks(session: Session, model, distribution, say=None, training=None) -> list:
    """`distribution`: a training.distribute.Distribution; `say`: prints a line for the user
    (training.prepare.say; None: to stderr); `training`: the spec's TrainingSpec."""
    extra = []
    if distribution.watchdog is not None:
        extra.append(Heartbeat(distribution.watchdog))
    if distribution.cluster is not None:
        extra.append(AgreedStop(session, distribution.strategy, say))
    if distribution.strategy is not None:
        extra.append(BatchNormSync(distribution.strategy, model))
    recompute = []  # after the stop guard (a cut-short epoch is not kept), before the timer (it is training time)
    if training is not None and training.batch_norm_recompute_batches:
        recompute.append(BatchNormRecompute(session, model, training.batch_norm_recompute_batches, training.seed))
    return extra + [StopGuard(session), *recompute, StepTimer(session), EpochRow(session), Checkpointer(session),
                    HistoryFiles(session)]


__all__ = ["Session", "callbacks"]
