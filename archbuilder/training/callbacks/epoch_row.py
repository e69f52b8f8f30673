"""The history row of a finished epoch: Keras's logs, the test set's figures, learning rate, speed."""

from __future__ import annotations

import keras

from archbuilder.training.callbacks.session import Session
from archbuilder.training.metrics import evaluate_probabilities


class EpochRow(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def on_epoch_end(self, epoch, logs=None):
        session = self.session
        session.row = None
        if session.epoch_cut_short:
            return  # a partial epoch: the last checkpoint stays the last finished epoch
        logs = {k: float(v) for k, v in (logs or {}).items()}
        row = {"epoch": epoch + 1, "loss": logs.get("loss"), "accuracy": logs.get("accuracy")}
        if "val_loss" in logs:
            row.update(val_loss=logs["val_loss"], val_accuracy=logs.get("val_accuracy"))
        test = session.data.test
        if test is not None and session.writer:  # the test set's figures go to the chief's history
            result = evaluate_probabilities(session.predict(self.model, test.x), test.y, session.data.class_names)
            row.update(test_loss=result.loss, test_accuracy=result.accuracy)
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row.update(session.timing)
        session.row = row
