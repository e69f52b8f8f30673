"""Commits a finished epoch: its checkpoint, best.keras if it is the best so far, then state.json.

state.json is written last and names the checkpoint, so a kill at any moment leaves a state that
`--resume` can continue from; older checkpoints are removed only after it.
"""

from __future__ import annotations

import keras

from archbuilder.keras.model_files import save_model_file
from archbuilder.training.callbacks.session import Session
from archbuilder.training.run_state import RunState


class Checkpointer(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def on_train_batch_begin(self, batch, logs=None):
        self.session.weights_saved_at = None  # this step changes the weights

    def on_epoch_end(self, epoch, logs=None):
        session, row = self.session, self.session.row
        if row is None:
            return
        run, number = session.run, row["epoch"]
        checkpoint = run.checkpoint(number)
        if not session.writer:  # every worker saves (a collective), only the chief keeps the file
            scratch = session.scratch / checkpoint.name
            save_model_file(self.model, scratch, {})
            scratch.unlink()
        else:
            save_model_file(self.model, checkpoint, {**session.metadata, "epoch": number})
        session.weights_saved_at = number
        value, best = row.get(session.monitor), session.state.best
        if best is None or (value is not None and value < best["value"]):
            if session.writer:
                run.link_best(checkpoint)
            best = {"epoch": number, "monitor": session.monitor, "value": value}
        state = RunState(number, checkpoint.name, best, session.state.history + [row])
        if session.writer:
            run.write_json(run.state, state.to_json())
        # Only once state.json says so: a write that fails leaves the run at the epoch before,
        # which the failure's message names and --resume continues after.
        session.state = state
        if session.writer:
            run.remove_checkpoints_except(checkpoint)
