"""Process set-up that must happen before TensorFlow is imported."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


def configure_tensorflow_environment() -> None:
    """Turn oneDNN kernels on and quiet TensorFlow's start-up logging, unless the user chose.

    TensorFlow enables oneDNN by default only on some Intel CPUs; on the AMD EPYC machines this
    project runs on, training is ~2.7x slower without it (shared/reference/REFERENCE.md §3).
    The variable is read once, when TensorFlow is first imported, so this must run before that.
    """
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly():
    """Import TensorFlow with its native start-up chatter (CUDA probes on a machine without a
    GPU, absl's pre-init banner) kept off the user's terminal, then return the module.

    That chatter is written by C++ straight to file descriptor 2 before TensorFlow's own log
    level applies, so stderr is pointed at /dev/null for the import and the first device scan
    only; Python errors still propagate normally. ARCHBUILDER_TF_LOGS=1 shows everything.
    XLA's compilations are kept between runs (xla_cache.py), set up here, before TensorFlow reads
    its flags.
    """
    configure_tensorflow_environment()
    if "tensorflow" not in sys.modules:
        from archbuilder.xla_cache import use_persistent_xla_cache

        use_persistent_xla_cache()  # read when TensorFlow sets up its devices
    if "tensorflow" in sys.modules or os.environ.get("ARCHBUILDER_TF_LOGS") == "1":
        import tensorflow

        return tensorflow
    with native_stderr_quiet():
        import tensorflow

        tensorflow.config.list_physical_devices()
    return tensorflow


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null while native libraries print start-up notes
    (TensorFlow's CUDA probes, LiteRT's "Created TensorFlow Lite XNNPACK delegate");
    Python exceptions still propagate. ARCHBUILDER_TF_LOGS=1 shows everything."""
    if os.environ.get("ARCHBUILDER_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Python loggers `names` ("tensorflow", "absl", ...) at ERROR for the block, then as they
    were: for notes a library logs about work we chose to do (TensorFlow's "triggered
    tf.function retracing" while we trace one function per kernel on purpose, Keras's legacy-.h5
    note when the user asked for .h5). ARCHBUILDER_TF_LOGS=1 shows everything."""
    import logging

    if os.environ.get("ARCHBUILDER_TF_LOGS") == "1":
        yield
        return
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
