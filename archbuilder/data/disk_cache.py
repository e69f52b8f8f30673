"""`--cache disk`: decoded, turned and resized images written once, as lossless PNGs, and streamed
from there in later epochs and later runs.

A cache is one folder under `<cache dir>/decoded-images/` named by a key over everything its
pixels depend on: each file's name, size and modification time, the image size and channels, and
FORMAT (bumped whenever the decode changes). Changed data or settings give another key, so a stale
cache is never read. The folder is built under a temporary name and renamed into place with its
index.json inside, so a cache either is complete or does not exist; one whose index or file count
does not match is built again. The PNGs are exact (lossless, 8 bits), so the cached pixels equal
the decoded ones and a cached run trains on the same batches as an uncached one; PNG's checksums
make a file damaged later fail to decode, which stops the run naming it and removes the cache
(data.stream.stop_message).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from archbuilder.cache_folder import cache_dir
from archbuilder.data.stream import PROGRESS_EVERY, BadFiles, ImageFiles
from archbuilder.errors import NOT_JSON, UserError, shown

FORMAT = 2  # 2: large JPEGs decoded by DCT scaling (images.jpeg_ratio); index.json lists files that did not decode
PER_FOLDER = 1000  # PNGs per subfolder: no folder of a million entries
_INDEX = "index.json"


def cache_key(files: ImageFiles) -> str:
    digest = hashlib.sha256(json.dumps({"format": FORMAT, "shape": list(files.image_shape)}).encode())
    for path, orientation in zip(files.paths, files.orientations):
        stat = os.stat(path)
        digest.update(os.fsencode(path) + b"\0" + f"{stat.st_size} {stat.st_mtime_ns} {orientation}\n".encode())
    return digest.hexdigest()[:32]


def _png(folder: Path, index: int) -> Path:
    return folder / f"{index // PER_FOLDER:05d}" / f"{index}.png"


def _complete(folder: Path, key: str, count: int) -> list[int] | None:
    """The positions of the files the complete cache in `folder` lacks (they did not decode), or
    None when it is not a complete cache of `key`."""
    try:
        index = json.loads((folder / _INDEX).read_text(encoding="utf-8"))
        missing = [int(i) for i in index.get("missing", [])]
    except (OSError, *NOT_JSON, TypeError, AttributeError):
        return None
    if index != {"format": FORMAT, "key": key, "count": count, "missing": missing}:
        return None
    return missing if sum(1 for _ in folder.glob("*/*.png")) == count - len(missing) else None


def cached(files: ImageFiles) -> ImageFiles:
    """`files` read from their disk cache, which is built first if there is none that matches."""
    key = cache_key(files)
    root = cache_dir() / "decoded-images"
    folder = root / key
    missing = _complete(folder, key, len(files))
    if missing is None:
        shutil.rmtree(folder, ignore_errors=True)  # a damaged or partial cache of ours: never trusted
        missing = _build(files, root, folder, key)
    paths = np.asarray([os.fspath(_png(folder, i)) for i in range(len(files))], dtype=object)
    orientations = np.ones(len(files), np.int32)
    # A file that did not decode has no PNG: its own path stands in, fails again when it is read
    # and is skipped and counted in each epoch as streamed files are (or stops a run without
    # --skip-bad-images, naming it).
    paths[missing], orientations[missing] = files.paths[missing], files.orientations[missing]
    return ImageFiles(paths, orientations, files.image_shape, files.skip_bad, BadFiles(folder))


def _build(files: ImageFiles, root: Path, folder: Path, key: str) -> list[int]:
    """Write the cache of `files` into `folder`; returns the positions of the files that did not
    decode and were skipped (with --skip-bad-images; without it such a file stops the build)."""
    import tensorflow as tf

    from archbuilder.data.stream import check_stream_error

    try:
        root.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    except OSError as error:
        raise UserError(f"{root}: cannot write the decoded-image cache ({error.strerror}); "
                        "set ARCHBUILDER_CACHE_DIR to a writable folder or use --cache none") from None
    print(f"caching {len(files)} decoded images in {folder}", file=sys.stderr, flush=True)
    for sub in range(0, len(files), PER_FOLDER):
        (building / f"{sub // PER_FOLDER:05d}").mkdir()
    targets = tf.constant([os.fsencode(_png(building, i)) for i in range(len(files))], tf.string)
    source = ImageFiles(files.paths, files.orientations, files.image_shape, files.skip_bad)
    # Labels that are the positions themselves: each batch says which files it holds (all but
    # those skipped); a skipped file is noted in "epoch" 0 of the build, not of a training epoch.
    batches = source.batches(tf.data.Dataset.range(len(files)).batch(256), tf.range(len(files), dtype=tf.int64),
                             training=True)

    def write(images, where):
        encoded = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.string)
        for_each = tf.data.Dataset.from_tensor_slices((tf.gather(targets, where), encoded))
        def write_one(path, data):
            with tf.control_dependencies([tf.io.write_file(path, data)]):
                return tf.identity(path)

        return for_each.map(write_one, num_parallel_calls=tf.data.AUTOTUNE)

    written = 0
    try:
        for _ in batches.flat_map(write).batch(PROGRESS_EVERY):
            written = min(written + PROGRESS_EVERY, len(files))
            if written < len(files):
                print(f"cached {written} of {len(files)} images", file=sys.stderr, flush=True)
    except tf.errors.OpError:
        shutil.rmtree(building, ignore_errors=True)
        check_stream_error([source])
        raise
    position_of = {path: i for i, path in enumerate(files.paths)} if source.bad.ever_skipped else {}
    missing = sorted(position_of[path] for path in source.bad.ever_skipped)
    for position in missing:
        print(f"warning: skipping {shown(files.paths[position])}: not a readable image "
              f"({source.failure_reason(files.paths[position])})", file=sys.stderr, flush=True)
    index = {"format": FORMAT, "key": key, "count": len(files), "missing": missing}
    (building / _INDEX).write_text(json.dumps(index), encoding="utf-8")
    try:
        os.replace(building, folder)  # the cache appears complete, or not at all
    except OSError:  # another run built the same cache meanwhile: keep theirs
        shutil.rmtree(building, ignore_errors=True)
    return missing
