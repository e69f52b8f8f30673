"""Images streamed from their files: decoded, EXIF-turned and resized inside tf.data, batch by batch.

`ImageFiles` stands where the in-memory path holds a uint8 array (N, H, W, C): it has the array's
length and shape, and indexing it (`x[indices]`) gives another `ImageFiles`, so splits and class
filters work on it unchanged. Its pixels exist only while a batch passes through `batches`, which
decodes each file with `images._decode`, the decode of the in-memory path, so a streamed batch is
bit-identical to the same batch gathered from memory.

Memory stays bounded whatever the number of files: at most PARALLEL_BATCHES batches are being
decoded and PREFETCH_BATCHES decoded batches wait for the model.

A file that fails to decode while streaming (damaged after the start, deleted, a truncated body
behind a good header) is dropped from its batch by tf.data's `ignore_errors` and noted in
`BadFiles`: training with --skip-bad-images goes on without it (counted per epoch); otherwise,
and always for validation and test batches, whose predictions must line up with their labels,
the pipeline stops, and the caller turns the stop into one line naming the file (`stop_message`).
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from archbuilder.data.exif import HEADER_BYTES, orientation_in_header
from archbuilder.errors import UserError, shown
from archbuilder.file_kinds import file_kind

PARALLEL_BATCHES = 4  # batches decoded at once; each decodes its files in parallel
PREFETCH_BATCHES = 2  # decoded batches queued ahead of the model
PROGRESS_EVERY = 50_000  # files between two progress lines of a long header check

# The first bytes of each kind of image file that TensorFlow's decode_image reads.
_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF87a": "GIF", b"GIF89a": "GIF", b"BM": "BMP"}


class BadImageFile(Exception):
    """Raised inside the pipeline (a tf.py_function) to stop it at a file that did not decode."""


class BadFiles:
    """The files of one data source that failed to decode while streaming, shared by its subsets."""

    def __init__(self, cache_folder: Path | None = None):
        self.cache_folder = cache_folder  # set when the files are a disk cache's (data.disk_cache)
        self._lock = threading.Lock()
        # epoch -> files skipped in it (as shown to the user), each once: a file the BatchNorm
        # sample skipped is skipped again by the epoch's batches and is still one skipped file
        self.skipped: dict[int, dict[str, None]] = {}
        self.ever_skipped: set[str] = set()  # the paths of every file skipped so far
        self.stopped_at: str | None = None  # the path, as the file system names it

    def note(self, missing: list[str], skip: bool, epoch: int) -> None:
        """`missing`: the paths that failed in a batch (of a training batch of `epoch` when `skip`)."""
        with self._lock:
            if skip:
                self.skipped.setdefault(epoch, {}).update(dict.fromkeys(shown(path) for path in missing))
                self.ever_skipped.update(missing)
                return
            self.stopped_at = self.stopped_at or missing[0]
        raise BadImageFile(missing[0])

    def skipped_in(self, epoch: int) -> list[str]:
        with self._lock:
            return list(self.skipped.pop(epoch, {}))


def header_problem(head: bytes) -> str | None:
    """Why the first bytes of a file cannot start an image TensorFlow decodes; None when they can."""
    if not head:
        return "empty file"
    if not any(head.startswith(signature) for signature in _SIGNATURES) and not _is_webp(head):
        return "not a JPEG, PNG, GIF, BMP or WebP file (its first bytes are no image signature)"
    return too_many_pixels(head)


def _is_webp(head: bytes) -> bool:
    """A RIFF container of WebP: "RIFF", its size, "WEBP" (no fixed prefix: _SIGNATURES cannot say it)."""
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def too_many_pixels(head: bytes) -> str | None:
    """Why a PNG, GIF or BMP whose first bytes are `head` is refused before it is decoded (its
    header says more than images.max_image_pixels()), or None. The decode checks the same
    (images._pixel_limit_check); this names such a file before a streamed run starts. A JPEG's
    limit applies to its DCT-scaled size, which depends on the model's input: its decode checks it."""
    from archbuilder.data.images import max_image_pixels, too_many_pixels_words

    sides, limit = _stored_sides(head), max_image_pixels()
    if sides is None or sides[0] * sides[1] <= limit:
        return None
    return too_many_pixels_words(f"{sides[0]}x{sides[1]} pixels", limit)


def _stored_sides(head: bytes) -> tuple[int, int] | None:
    """(width, height) as a PNG's IHDR, a GIF's logical screen or a BMP's info header gives them
    (where images._stored_sides reads them); None for other files and headers cut short."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"GIF8") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)  # a negative height: stored top-down
    return None


def irregular_file(path) -> str | None:
    """Why `path` (its symlinks followed) cannot be read as an image although it is listed as one:
    "not a regular file: a named pipe"; None for a regular file, and for one that stat cannot
    reach (a dangling link, a loop), whose read then fails with its own reason.

    Checked before a file is opened: open() of a named pipe waits for a writer for ever, and a
    device may never end, so such a file is never opened."""
    kind = file_kind(path)
    return None if kind is None else "not a regular file: " + kind


def read_headers(paths: Sequence[Path]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(EXIF orientation of each file, [(index, problem)] of the files whose header is no image's).

    Only the first HEADER_BYTES of each file are read (its EXIF and signature), not the pixels:
    the early check of a streamed run; a file whose body is damaged is found when it is decoded.
    """
    orientations = np.ones(len(paths), np.int32)
    problems: list[tuple[int, str]] = []
    for index, path in enumerate(paths):
        if index and index % PROGRESS_EVERY == 0:
            print(f"checked the headers of {index} of {len(paths)} image files", file=sys.stderr, flush=True)
        irregular = irregular_file(path)
        if irregular:
            problems.append((index, irregular))
            continue
        try:
            with open(path, "rb") as handle:
                head = handle.read(HEADER_BYTES)
        except OSError as error:
            problems.append((index, error.strerror or type(error).__name__))
            continue
        problem = header_problem(head)
        if problem:
            problems.append((index, problem))
        else:
            orientations[index] = orientation_in_header(head)
    return orientations, problems


class ImageFiles:
    """A uint8 array (N, H, W, C) of image files, decoded only as batches stream through `batches`."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths: Sequence[Path] | np.ndarray, orientations: np.ndarray, image_shape: tuple[int, int, int],
                 skip_bad: bool = False, bad: BadFiles | None = None):
        self.paths = np.asarray([os.fspath(p) for p in paths] if not isinstance(paths, np.ndarray) else paths, dtype=object)
        self.orientations = np.asarray(orientations, np.int32)
        self.image_shape = tuple(image_shape)
        self.skip_bad = skip_bad  # training batches skip a file that fails (--skip-bad-images)
        self.bad = bad or BadFiles()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.image_shape)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images would take in memory."""
        return len(self) * int(np.prod(self.image_shape))

    def __getitem__(self, indices) -> "ImageFiles":
        if isinstance(indices, (int, np.integer)):
            indices = [indices]
        return self._take(indices)

    def _take(self, indices) -> "ImageFiles":
        return ImageFiles(self.paths[indices], self.orientations[indices], self.image_shape, self.skip_bad, self.bad)

    def failure_reason(self, path: str) -> str:
        """Why the file `path` of these failed to decode (decoded again, alone, to say)."""
        from archbuilder.data.images import _bad_files

        found = _bad_files([os.fsencode(path)], *self.image_shape)
        return found[0][2] if found else "it failed to decode while streaming"

    def _reader(self):
        """position (a scalar tensor) -> the encoded image's bytes (a tf.string)."""
        import tensorflow as tf

        names = tf.constant([os.fsencode(p) for p in self.paths], tf.string)
        return lambda position: tf.io.read_file(tf.gather(names, position))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """Every image decoded (the whole array in memory: for small sets, e.g. BatchNorm's sample)."""
        from archbuilder.data.images import load_image_files

        array = load_image_files(list(self.paths), self.image_shape, self.orientations)
        return array if dtype is None else array.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self).astype(dtype)

    def first_decoded(self, order: np.ndarray, count: int, epoch: int) -> np.ndarray:
        """uint8 (<= count, H, W, C): the first `count` images of positions `order` that decode.

        With `skip_bad`, a file that fails is left out and counted in `epoch` as training counts
        it, and the next positions of `order` stand in for it; otherwise it is an error naming
        the file. Positions are decoded `count` at a time, so a sample of a million files
        decodes only about `count` of them.
        """
        import tensorflow as tf

        parts, found, start = [], 0, 0
        while found < count and start < len(order):
            chunk = np.asarray(order[start:start + count - found])
            start += len(chunk)
            part = self[chunk]
            batch = tf.data.Dataset.from_tensors(tf.range(len(chunk), dtype=tf.int64))
            try:
                for images in part.batches(batch, training=True, first_epoch=epoch, per_epoch=1):
                    parts.append(images.numpy())
                    found += len(parts[-1])
            except tf.errors.OpError:
                check_stream_error([part])
                raise
        return np.concatenate(parts) if parts else np.zeros((0, *self.image_shape), np.uint8)

    def batches(self, indexes, labels=None, *, training: bool = False, first_epoch: int = 0, per_epoch: int = 0,
                keyed: bool = False):
        """tf.data: for each index vector of `indexes`, the decoded images at those positions (with
        `labels` given, a tensor of per-image labels: (images, their labels); `keyed` adds
        (each image's epoch, its position), which key its augmentation (data.augment)).

        Batches come in the order of `indexes`, each decoded in parallel and PARALLEL_BATCHES at a
        time. `training` batches skip a failing file when `skip_bad` (and name the epoch it was
        in: batch `k` is in epoch first_epoch + k // per_epoch); others always stop at it.
        """
        import tensorflow as tf

        from archbuilder.data.dataset_options import without_autotuning
        from archbuilder.data.images import decode_bytes

        height, width, channels = self.image_shape
        encoded = self._reader()
        orientations = tf.constant(self.orientations)
        skip = training and self.skip_bad
        empty = (tf.zeros([0, height, width, channels], tf.uint8), tf.zeros([0], tf.int64))

        def one(position):
            image = decode_bytes(encoded(position), height, width, channels, tf.gather(orientations, position))
            return tf.reshape(image, [height, width, channels]), position

        def epoch_of(ordinal):  # batch `ordinal` of `indexes`
            return first_epoch + ordinal // per_epoch if per_epoch else ordinal * 0

        def note_missing(ordinal, wanted, got):
            missing = sorted(set(wanted.numpy().tolist()) - set(got.numpy().tolist()))
            self.bad.note([self.paths[i] for i in missing], skip, int(epoch_of(int(ordinal))))
            return np.int64(len(missing))

        def checked(ordinal, wanted, images, got):
            complete = tf.equal(tf.size(got), tf.size(wanted))
            noted = tf.cond(complete, lambda: tf.constant(0, tf.int64),
                            lambda: tf.py_function(note_missing, [ordinal, wanted, got], tf.int64))
            with tf.control_dependencies([noted]):
                return tf.identity(images), tf.identity(got), tf.fill(tf.shape(got), epoch_of(ordinal))

        def one_batch(ordinal, wanted):
            wanted = tf.cast(wanted, tf.int64)
            decoded = (tf.data.Dataset.from_tensor_slices(wanted)
                       .map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                       .ignore_errors()
                       .batch(tf.maximum(tf.size(wanted, out_type=tf.int64), 1)))
            # Exactly one element, even when every file of the batch failed, so that it is noted.
            whole = decoded.concatenate(tf.data.Dataset.from_tensors(empty)).take(1)
            return whole.map(lambda images, got: checked(ordinal, wanted, images, got))

        dataset = indexes.enumerate().interleave(
            one_batch, cycle_length=PARALLEL_BATCHES, num_parallel_calls=PARALLEL_BATCHES, deterministic=True)
        if skip:  # a batch whose every file failed is no step (Keras's loss over no images is NaN)
            dataset = dataset.filter(lambda images, got, epochs: tf.size(got) > 0)
        if labels is None:
            dataset = dataset.map(lambda images, got, epochs: images)
        elif keyed:
            dataset = dataset.map(lambda images, got, epochs: (images, tf.gather(labels, got), (epochs, got)))
        else:
            dataset = dataset.map(lambda images, got, epochs: (images, tf.gather(labels, got)))
        # What is built on these batches (training, prediction, the disk cache, records) inherits it.
        return without_autotuning(dataset)


def streamed_sources(*arrays) -> list[ImageFiles]:
    """The ImageFiles among `arrays` (None and in-memory arrays left out)."""
    return [x for x in arrays if isinstance(x, ImageFiles)]


def stop_message(sources: Sequence[ImageFiles]) -> str | None:
    """The line that names the file a streamed pipeline stopped at, or None if none did.

    A failing file of a disk cache means the cache is damaged: it is removed (it is ours, and
    never trusted), so that the next run builds it again.
    """
    for source in sources:
        name = source.bad.stopped_at
        if name is None:
            continue
        reason = source.failure_reason(name)
        folder, name = source.bad.cache_folder, shown(name)
        if folder is not None and Path(os.fsdecode(source.bad.stopped_at)).is_relative_to(folder):
            shutil.rmtree(folder, ignore_errors=True)
            return (f"{name}: the decoded-image cache is damaged ({reason}); it was removed and is built "
                    "again on the next run")
        return f"{name}: not a readable image ({reason})"
    return None


def bad_headers_message(paths: Sequence[Path], problems: list[tuple[int, str]]) -> str:
    lines = [f"{shown(paths[index])}: not a readable image ({reason})" for index, reason in problems[:10]]
    more = f"\n... and {len(problems) - 10} more" if len(problems) > 10 else ""
    return "\n".join(lines) + more


def check_stream_error(sources: Sequence[ImageFiles]) -> None:
    """Raise UserError naming the file a streamed pipeline stopped at, if one did (call from an
    `except tf.errors.OpError`)."""
    message = stop_message(sources)
    if message is not None:
        raise UserError(message)

