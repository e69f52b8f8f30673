"""Stops training on a NaN or infinite loss, and after the current batch on Ctrl-C or SIGTERM; tells the
other callbacks whether the epoch ran all its steps (a Ctrl-C in the last batch keeps the epoch)."""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager

import keras

from archbuilder.training.callbacks.session import Session


class StopGuard(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.batches_done = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.batches_done = 0
        self.session.epoch_whole = False

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.session.diverged_at = (self.session.epoch_number(), batch + 1)
            self.model.stop_training = True
        self.batches_done = batch + 1
        if self.session.stop_requested:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.session.epoch_whole = self.batches_done == self.params.get("steps")
        if not self.session.epoch_cut_short and not all(math.isfinite(float(v)) for v in (logs or {}).values()):
            self.session.diverged_at = (epoch + 1, 0)
            self.model.stop_training = True


@contextmanager
def ctrl_c_stops_after_the_batch(session: Session, say):
    """The first Ctrl-C (SIGINT) or SIGTERM asks the StopGuard to stop after this batch; a second
    one stops at once. SIGTERM is what Kubernetes and Slurm send before they kill a job."""
    if threading.current_thread() is not threading.main_thread():
        yield  # archbuilder.train called from a thread: Python lets only the main thread handle signals
        return
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}

    received = []  # by this process: a stop agreed with other workers (AgreedStop) is no first signal

    def on_signal(signum, frame):
        if received:
            for watched_signal, handler in previous.items():
                signal.signal(watched_signal, handler)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        received.append(signum)
        # a stop already agreed keeps its signal, so that every worker exits with the same code
        session.stop_signal = session.stop_signal or signum
        session.stop_requested = session.stop_requested or not session.stop_needs_agreement
        if signum == signal.SIGINT:
            say("\ninterrupted: stopping after this batch (Ctrl-C again to stop at once)")
        else:
            say(f"\n{signal.Signals(signum).name} received: stopping after this batch (again to stop at once)")

    for signum in watched:
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
