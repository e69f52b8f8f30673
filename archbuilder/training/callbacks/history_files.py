"""history.csv and curves.png from the committed state, and the epoch's test line."""

from __future__ import annotations

import sys
import time

import keras

from archbuilder.training.callbacks.session import Session

# history.csv is written after every epoch; curves.png, its picture, at most this often while
# training runs and once more when training ends (finished, stopped by a signal, or diverged).
# Drawing it costs 0.4 s on a slow CPU (matplotlib's layout and PNG rendering: measured 0.39 s on a
# first-generation EPYC), which short epochs paid every time: ~20% of a two-epoch run of the tests'
# tiny spec. Epochs longer than this still get a picture each. A run killed outright (SIGKILL) or
# ended by an error may leave curves.png up to this long behind history.csv; `--resume` redraws it.
CURVES_EVERY_SECONDS = 30.0


class HistoryFiles(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.drawn_at = time.monotonic()
        self.undrawn = False  # history.csv holds epochs that curves.png does not show yet

    def on_train_begin(self, logs=None):
        self.drawn_at = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        session, row = self.session, self.session.row
        if row is None or not session.writer:
            return
        session.run.write_history(session.state.history)
        self.undrawn = True
        if time.monotonic() - self.drawn_at >= CURVES_EVERY_SECONDS:
            self.draw_curves()
        if "test_accuracy" in row:
            print(f"epoch {row['epoch']}: test loss {row['test_loss']:.4f}, test accuracy {row['test_accuracy']:.4f}",
                  file=sys.stderr, flush=True)

    def on_train_end(self, logs=None):
        self.draw_curves()

    def draw_curves(self) -> None:
        if not self.undrawn:
            return
        from archbuilder.training.plots import plot_curves

        session = self.session
        plot_curves(session.state.history, session.run.curves, session.metadata.get("spec_name", "training"))
        self.undrawn, self.drawn_at = False, time.monotonic()
