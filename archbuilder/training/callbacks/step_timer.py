"""Times each epoch and the median training step, for the history's speed columns."""

from __future__ import annotations

import time

import keras
import numpy as np

from archbuilder.training.callbacks.session import Session


class StepTimer(keras.callbacks.Callback):
    def __init__(self, session: Session):
        super().__init__()
        self.session = session
        self.first_step_done = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.epoch_cpu_start = time.process_time()
        self.step_times: list[float] = []
        self.step_cpu_times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start = time.perf_counter()
        self.step_cpu_start = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_done:  # the first step of a process includes tracing
            self.step_times.append(time.perf_counter() - self.step_start)
            self.step_cpu_times.append(time.process_time() - self.step_cpu_start)
        self.first_step_done = True

    def on_epoch_end(self, epoch, logs=None):
        batch = self.session.batch_size
        timing = {"seconds": round(time.perf_counter() - self.epoch_start, 3),  # training + validation
                  # CPU seconds of the process in the same span: on a shared machine wall time counts
                  # the waits for other programs, CPU time does not.
                  "cpu_seconds": round(time.process_time() - self.epoch_cpu_start, 3)}
        if self.step_times:
            timing["images_per_second"] = round(batch / float(np.median(self.step_times)), 2)
            # CPU time of the whole process (all threads, tf.data included): less sensitive than
            # wall time to other programs sharing the machine.
            timing["images_per_cpu_second"] = round(batch / float(np.median(self.step_cpu_times)), 2)
        self.session.timing = timing
