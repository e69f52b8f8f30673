"""Recomputes BatchNorm's moving statistics from training images at the end of every epoch
(`training.batch_norm_recompute_batches`; "precise BN", Wu & Johnson 2021).

Why: with momentum 0.99 the moving averages forget 1% per step, so after a few hundred steps they
still carry the starting values (mean 0, variance 1) and statistics of weights that have since
moved. Evaluation uses them, and the held-out accuracy stays near chance for epochs while the
training accuracy climbs (bench/RESULTS.md, "Accuracy"). Here, with the epoch's final weights,
the network runs in training mode over a fixed, seeded sample of un-augmented training images;
each BatchNorm layer's moving mean and variance become the averages of its per-batch means and
variances, which is what the moving average estimates once the weights stop moving.

The weights and the optimizer are untouched, so the training trajectory is the same with or
without it; only what is evaluated and saved changes. The time it takes is part of the epoch's
`seconds` (it runs before StepTimer's end of epoch): it is training work, not evaluation.
"""

from __future__ import annotations

import keras
import numpy as np

from archbuilder.data.stream import ImageFiles
from archbuilder.training.callbacks.session import Session


class BatchNormRecompute(keras.callbacks.Callback):
    def __init__(self, session: Session, model, batches: int, seed: int):
        super().__init__()
        import tensorflow as tf

        from archbuilder.data.dataset_options import without_autotuning
        from archbuilder.data.pipeline import normalize

        self.session = session
        self.layers = [layer for layer in model._flatten_layers()
                       if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
        x = session.data.train.x
        # A seeded sample, shuffled so that each batch mixes classes as training batches do; whole
        # batches only, so that every batch weighs the same (one smaller batch if that is all there is).
        size = session.batch_size
        take = max(1, min(batches, len(x) // size)) * size
        order = np.random.default_rng(seed).permutation(len(x))
        if isinstance(x, ImageFiles):  # streamed: a file that fails is skipped as training skips it
            sample = x.first_decoded(order, take, session.state.epochs_done)
        else:
            sample = x[order[:take]]
        self.images = without_autotuning(tf.data.Dataset.from_tensor_slices(sample).batch(size).map(normalize))
        statistics = [(layer.moving_mean, layer.moving_variance) for layer in self.layers]

        @tf.function
        def batch_statistics(images):
            model(images, training=True)  # with momentum 0: the moving statistics become this batch's
            return [(tf.identity(mean), tf.identity(variance)) for mean, variance in statistics]

        self.batch_statistics = batch_statistics

    def on_epoch_end(self, epoch, logs=None):
        if self.session.epoch_cut_short or not self.layers:
            return
        momenta = [layer.momentum for layer in self.layers]
        sums, count = None, 0
        try:
            # Momentum 0 while the function runs and when it is traced (its first call), which
            # keeps 0 as a constant in its graph; the training step was traced with the layers' own.
            for layer in self.layers:
                layer.momentum = 0.0
            for images in self.images:
                values = [(m.numpy().astype(np.float64), v.numpy().astype(np.float64))
                          for m, v in self.batch_statistics(images)]
                sums = values if sums is None else [(sm + m, sv + v) for (sm, sv), (m, v) in zip(sums, values)]
                count += 1
        finally:
            for layer, momentum in zip(self.layers, momenta):
                layer.momentum = momentum
        for layer, (mean, variance) in zip(self.layers, sums):
            layer.moving_mean.assign((mean / count).astype(np.float32))
            layer.moving_variance.assign((variance / count).astype(np.float32))
