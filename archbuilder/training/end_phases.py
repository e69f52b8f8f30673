"""What `train` does after its last step, timed phase by phase and said in one line.

After the last epoch is saved, `train` loads the best epoch's weights, predicts the evaluation
images (the test set, else the validation split, else the training images) for metrics.json and
the confusion matrix, and writes them. That used to run silently, and for ConvNeXt-T it ran for
minutes (issue 21). Measured on a small reproduction (ConvNeXt-T at 96x96, 80 photos, 2 cores):
loading 11-13 s (see `load_saved_weights`), predicting 41 s with Keras's grouped convolutions
(each an XLA function, compiled again for the prediction's batch sizes; 9.6 s with
training/grouped_conv.py's kernels, of which the prediction function's traces are most). Each
phase is now timed and said, so such a cost shows instead of looking like a hung process.

Without a test set or validation split, the training images stand in, and a data set of any size
would make the end of a run as long as an epoch's predictions (hours for 100,000 photos):
`evaluation_images` then predicts a fixed random sample of at most `TRAINING_SAMPLE` of them.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

# At most this many training images are predicted when no held-out images were given: 100 a class
# for 10 classes; about 2 minutes for ResNet-50 at 224x224 on a slow 2-core Xeon (192 images in
# 21.5 s, its prediction trace included; bench/RESULTS.md, 2026-12-03 fifth session), whatever the
# data's size. A test set is predicted whole: its size is the user's choice.
TRAINING_SAMPLE = 1000
# The sample's seed: the same images whatever the run's seed, so that runs compare on one sample.
SAMPLE_SEED = 0

# The weights' member of a `.keras` archive (keras/src/saving/saving_lib.py `_VARS_FNAME_H5`).
WEIGHTS_MEMBER = "model.weights.h5"


class EndPhases:
    """`with phases("name"): ...` times a phase; `describe()` is the line `train` prints."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def describe(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())
        return f"after training: {parts} ({sum(self.seconds.values()):.1f} s)"


def evaluation_images(data):
    """The images `train` evaluates after its last epoch, and the words that say which: the test
    set, else the validation split, else a sample of the training images (all of them if there
    are no more than TRAINING_SAMPLE). Files that --skip-bad-images left out of training are left
    out here too."""
    import numpy as np

    from archbuilder.training.streamed_data import without_skipped

    if data.test is not None:
        return without_skipped(data.test), f"test set: {data.test_origin}"
    if data.validation is not None:
        return without_skipped(data.validation), "validation split (no test set given)"
    images = without_skipped(data.train)
    if len(images.y) <= TRAINING_SAMPLE:
        return images, "training images (no test set or validation split given)"
    picked = np.sort(np.random.default_rng(SAMPLE_SEED).choice(len(images.y), TRAINING_SAMPLE, replace=False))
    return images.subset(picked), (f"{TRAINING_SAMPLE:,} of the {len(images.y):,} training images, drawn at random "
                                   "(no test set or validation split given)")


def load_saved_weights(model, path: Path) -> None:
    """`model.load_weights(path)` for a `.keras` file, in seconds rather than tens of seconds.

    Keras reads the weights' HDF5 file straight out of the zip archive, and HDF5 reads by seeking;
    Python's zipfile serves a backward seek by reading the member again from its start (CRC32
    included), so loading ConvNeXt-T's 334 MB (weights and Adam's slots) took 13-23 s on 2 cores,
    90% of it in zipfile's seek and crc32 (cProfile, issue 21). The same HDF5 file, extracted
    first (one sequential read), loads the same values through the same Keras code."""
    import tempfile
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.getinfo(WEIGHTS_MEMBER)
    except (KeyError, zipfile.BadZipFile):  # another layout: Keras's own way
        model.load_weights(path)
        return
    with tempfile.TemporaryDirectory(prefix="archbuilder-weights-") as folder:
        with zipfile.ZipFile(path) as archive:
            extracted = archive.extract(WEIGHTS_MEMBER, folder)
        model.load_weights(extracted)
