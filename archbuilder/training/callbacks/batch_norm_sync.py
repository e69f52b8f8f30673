"""Averages BatchNorm's moving statistics over the replicas of a distributed run.

Keras creates them with aggregation "none": under tf.distribute each replica updates its own copy
from its own slice of the batch, so the copies drift apart, and what is saved or evaluated is
one replica's. Before every validation and at every epoch's end, every copy becomes the mean of
all copies (one all-reduce, on every worker). Layers with `synchronized: true` compute global batch
statistics, so their copies never differ and are left alone.
"""

from __future__ import annotations

import keras


class BatchNormSync(keras.callbacks.Callback):
    def __init__(self, strategy, model):
        super().__init__()
        import tensorflow as tf

        variables = [weight for layer in model._flatten_layers()
                     if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized
                     for weight in layer.non_trainable_weights]

        def average():
            context = tf.distribute.get_replica_context()
            for weight in variables:
                # a plain tensor: all_reduce of the variable itself finds no destinations across workers
                weight.assign(context.all_reduce("MEAN", tf.identity(weight.value)))

        self.sync = tf.function(lambda: strategy.run(average)) if variables else None

    def on_test_begin(self, logs=None):
        if self.sync is not None:
            self.sync()

    def on_epoch_end(self, epoch, logs=None):
        if self.sync is not None:
            self.sync()
