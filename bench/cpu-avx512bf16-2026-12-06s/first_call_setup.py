"""Shared by first_call_profile.py and xla_cache_first_call.py (one-offs of the seventeenth session):
a zoo network as `train` makes it before its first training call."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.fused_kernels import make, switch_as_train  # noqa: E402  (sets TensorFlow's environment first)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from archbuilder.training.first_step import build_before_tracing  # noqa: E402


def model_as_train(network: str, batch: int):
    """(model, x, y, seconds): architectures/imagenet/NETWORK.yaml with train's switches (timed ones
    from the user's cache), one random batch of 10 classes, and the optimizer's variables built
    before the trace as training/first_step.py does (their seconds)."""
    model = make(network, [])
    switch_as_train(model, batch)
    x = np.random.RandomState(0).uniform(0, 255, (batch, *model.input_shape[1:])).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch) % 10, 10)
    start = time.perf_counter()
    build_before_tracing(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).element_spec)
    return model, x, y, time.perf_counter() - start
