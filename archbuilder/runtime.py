"""Process set-up that must happen before TensorFlow is imported."""

from __future__ import annotations

import os


def configure_tensorflow_environment() -> None:
    """Turn oneDNN kernels on and quiet TensorFlow's start-up logging, unless the user chose.

    TensorFlow enables oneDNN by default only on some Intel CPUs; on the AMD EPYC machines this
    project runs on, training is ~2.7x slower without it (shared/reference/REFERENCE.md §3).
    The variable is read once, when TensorFlow is first imported, so this must run before that.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
