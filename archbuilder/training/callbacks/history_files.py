"""history.csv and curves.png from the committed state, and the epoch's test line."""

from __future__ import annotations

import sys

import keras

from archbuilder.training.callbacks.session import Session


class HistoryFiles(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def on_epoch_end(self, epoch, logs=None):
        session, row = self.session, self.session.row
        if row is None or not session.writer:
            return
        from archbuilder.training.plots import plot_curves

        session.run.write_history(session.state.history)
        plot_curves(session.state.history, session.run.curves, session.metadata.get("spec_name", "training"))
        if "test_accuracy" in row:
            print(f"epoch {row['epoch']}: test loss {row['test_loss']:.4f}, test accuracy {row['test_accuracy']:.4f}",
                  file=sys.stderr, flush=True)
