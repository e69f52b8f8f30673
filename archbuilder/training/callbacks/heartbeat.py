"""Tells the distributed run's watchdog (training/distribute.py) that training progresses."""

from __future__ import annotations

import keras


class Heartbeat(keras.callbacks.Callback):
    def __init__(self, watchdog):
        super().__init__()
        self.watchdog = watchdog

    def on_train_batch_end(self, batch, logs=None):
        self.watchdog.beat()

    def on_epoch_begin(self, epoch, logs=None):
        self.watchdog.beat()

    def on_epoch_end(self, epoch, logs=None):
        self.watchdog.beat()

    def on_test_batch_end(self, batch, logs=None):
        self.watchdog.beat()
