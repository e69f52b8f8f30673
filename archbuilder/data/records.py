"""Sharded record files: `data pack FOLDER OUT --format tfrecord`, read by `train`, `evaluate` and
`--test` as they read the class folder they were packed from.

    OUT/records-00000-of-00042.tfrecord ...  TFRecord shards (any TFRecord reader reads them): one
                                             tf.train.Example per image: `image` (the file's bytes,
                                             as encoded), `label` (int64), `name` (class/file)
    OUT/records-00000-of-00042.json ...      each shard's table: where each record starts, its length
    OUT/index.json                           written last: class names, counts per class, shards,
                                             and per image its shard, offset, length, label, EXIF
                                             orientation and name

Records are read at random (os.pread at the offset the index gives), so epoch `e` is still the
permutation drawn from (seed, e) over all images, and a folder and its records give the same
batches. Images are stored as encoded (no resizing): any model size can read them, and the decode
is the one of every image (images.decode_bytes). Packing writes each shard under a temporary name
and renames it into place with its table: killed, the same command continues after the last
complete shard. Class folders may be named anything (ImageNet's synsets: n01440764, ...).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

from archbuilder.data.folder import LabelledFiles, check_class_names, scan_image_folder
from archbuilder.data.hdf5 import LabelledImages
from archbuilder.data.stream import ImageFiles, bad_headers_message, read_headers
from archbuilder.errors import NOT_JSON, UserError, abbreviated, shown

FORMAT = "archbuilder-records/1"
INDEX = "index.json"
_FRAMING = 8 + 4  # a TFRecord: uint64 length, uint32 masked CRC of the length, data, uint32 masked CRC


def is_records(path: str | os.PathLike) -> bool:
    index = Path(path) / INDEX
    if not index.is_file():
        return False
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, *NOT_JSON, AttributeError):
        return False


def pack_records(folder: str, out: str, shard_size: int, keep: list[int] | None = None) -> dict:
    """Write FOLDER's images (the classes `keep`, default all) as record shards in OUT; returns the index."""
    import tensorflow as tf

    files = scan_image_folder(folder)
    if keep is not None:
        from archbuilder.data.sources import _keep_files

        files, _ = _keep_files(files, keep)
    orientations, problems = read_headers(files.paths)
    if problems:
        raise UserError(bad_headers_message(files.paths, problems))
    root = Path(out)
    plan = {"format": FORMAT, "shard_size": shard_size, "images": len(files.paths), "source": _source_key(files)}
    _start_or_continue(root, plan)
    shards = -(-len(files.paths) // shard_size)
    tables = []
    for shard in range(shards):
        name = f"records-{shard:05d}-of-{shards:05d}"
        span = range(shard * shard_size, min((shard + 1) * shard_size, len(files.paths)))
        table_path = root / f"{name}.json"
        if not (table_path.is_file() and (root / f"{name}.tfrecord").is_file()):
            _write_shard(tf, root, name, files, span)
        tables.append(json.loads(table_path.read_text(encoding="utf-8")))
        if (shard + 1) % max(1, 50_000 // shard_size) == 0 and shard + 1 < shards:
            print(f"packed {span.stop} of {len(files.paths)} images ({shard + 1} of {shards} shards)",
                  file=sys.stderr, flush=True)
    index = {
        **plan,
        "class_names": list(files.class_names),
        "counts": {n: int(c) for n, c in zip(files.class_names, np.bincount(files.labels, minlength=len(files.class_names)))},
        "shards": [f"records-{k:05d}-of-{shards:05d}.tfrecord" for k in range(shards)],
        "shard": [k for k, table in enumerate(tables) for _ in table["offsets"]],
        "offset": [o for table in tables for o in table["offsets"]],
        "length": [n for table in tables for n in table["lengths"]],
        "label": files.labels.tolist(),
        "orientation": orientations.tolist(),
        "name": [_relative(p) for p in files.paths],
    }
    from archbuilder.atomic import atomic_write_text

    atomic_write_text(root / INDEX, json.dumps(index))
    return index


def _relative(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _source_key(files: LabelledFiles) -> str:
    digest = hashlib.sha256()
    for path, label in zip(files.paths, files.labels):
        stat = path.stat()
        digest.update(f"{_relative(path)}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _start_or_continue(root: Path, plan: dict) -> None:
    """OUT must be empty, or a pack of the same files and shard size that was cut short."""
    from archbuilder.atomic import atomic_write_text
    from archbuilder.output_paths import check_output_folder

    check_output_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    started = root / "pack.json"
    if started.is_file():
        try:
            same = json.loads(started.read_text(encoding="utf-8")) == plan
        except (OSError, *NOT_JSON):
            same = False
        if not same:
            raise UserError(f"{shown(root)}: holds a pack of other files or another shard size; give an empty folder")
        (root / INDEX).unlink(missing_ok=True)  # rewritten at the end, from every shard
        for stale in root.glob(".records-*.tmp*"):  # a shard's temporary (atomic_path) that a SIGKILL left
            if stale.is_file():
                stale.unlink()
        return
    if any(root.iterdir()):
        raise UserError(f"{shown(root)}: already exists and is not empty; give an empty or new folder")
    atomic_write_text(started, json.dumps(plan))


def _write_shard(tf, root: Path, name: str, files: LabelledFiles, span: range) -> None:
    from archbuilder.atomic import atomic_path, atomic_write_text

    offsets, lengths, position = [], [], 0
    with atomic_path(root / f"{name}.tfrecord") as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for index in span:
                path = files.paths[index]
                try:
                    data = path.read_bytes()
                except OSError as error:
                    raise UserError(f"{shown(path)}: cannot read ({error.strerror})") from None
                record = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(files.labels[index])])),
                    "name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[_relative(path).encode("utf-8", "surrogateescape")])),
                })).SerializeToString()
                writer.write(record)
                offsets.append(position + _FRAMING)
                lengths.append(len(record))
                position += _FRAMING + len(record) + 4
    atomic_write_text(root / f"{name}.json", json.dumps({"offsets": offsets, "lengths": lengths}))


def read_records(folder: str, shape: tuple[int, int, int], skip_bad: bool = False) -> LabelledImages:
    """The records of `folder` as streamed images (stream.ImageFiles) with their labels."""
    root = Path(folder)
    where = shown(root / INDEX)
    try:
        index = json.loads((root / INDEX).read_text(encoding="utf-8"))
        names, shards, class_names = index["name"], index["shards"], index["class_names"]
        raw = {key: index[key] for key in ("shard", "offset", "length", "label", "orientation")}
    except (OSError, *NOT_JSON, KeyError, TypeError) as error:
        raise UserError(f"{where}: not a readable record index ({error}); pack the folder again") from None
    if not all(isinstance(column, list) for column in (names, shards, class_names, *raw.values())):
        raise UserError(f"{where}: a field that should be a list is not; pack the folder again")
    if not len(names) == len(raw["shard"]) == len(raw["offset"]) == len(raw["length"]) == len(raw["label"]) \
            == len(raw["orientation"]) or len(names) == 0:
        raise UserError(f"{where}: its columns disagree or are empty; pack the folder again")
    class_names = check_class_names(class_names, f"{where}: 'class_names'", "; pack the folder again")
    _check_strings(where, "name", names)
    sizes = _shard_sizes(root, where, shards)
    shard = _int_column(where, "shard", raw["shard"], 0, len(shards), f"the {len(shards)} shards")
    label = _int_column(where, "label", raw["label"], 0, len(class_names), f"the {len(class_names)} classes")
    orientation = _int_column(where, "orientation", raw["orientation"], 1, 9, "EXIF orientations")
    offset = _int_column(where, "offset", raw["offset"], 0, max(sizes, default=0) + 1, "bytes of the largest shard")
    length = _int_column(where, "length", raw["length"], 0, max(sizes, default=0) + 1, "bytes of the largest shard")
    _check_within_shards(where, shards, sizes, shard, offset, length)
    shown_names = np.asarray([f"{root / shards[s]}#{i} ({n})" for i, (s, n) in enumerate(zip(shard, names))], dtype=object)
    x = RecordImages(shown_names, orientation, shape, skip_bad, None,
                     _Shards(tuple(os.fspath(root / f) for f in shards)), shard, offset, length)
    return LabelledImages(x, label, class_names)


def _check_strings(where: str, field: str, values: list) -> None:
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise UserError(f"{where}: '{field}' holds {abbreviated(repr(value))} at position {position}, not a "
                            "string; pack the folder again")


def _int_column(where: str, field: str, values: list, low: int, high: int, what: str) -> np.ndarray:
    """`values` as int64, each an int in [low, high); otherwise an error naming the field and the
    first bad value. bool is refused (JSON's true would count as 1), and the bounds are checked on
    Python's ints, before numpy, so 2**70 is an error, not an OverflowError."""
    for position, value in enumerate(values):
        if type(value) is not int or not low <= value < high:
            bound = f"outside {low}..{high - 1} ({what})" if type(value) is int else "not a whole number"
            raise UserError(f"{where}: '{field}' holds {abbreviated(repr(value))} at position {position}, "
                            f"{bound}; pack the folder again")
    return np.asarray(values, np.int64)


def _shard_sizes(root: Path, where: str, shards: list) -> list[int]:
    """The size of each shard file, each a file name in `root` (an index names no other file)."""
    _check_strings(where, "shards", shards)
    sizes = []
    for position, shard_file in enumerate(shards):
        if Path(shard_file).name != shard_file or shard_file in ("", ".", ".."):
            raise UserError(f"{where}: 'shards' holds {shard_file!r} at position {position}, not a file name in "
                            "the folder; pack the folder again")
        path = root / shard_file
        if not path.is_file():
            raise UserError(f"{shown(path)}: missing; pack the folder again")
        sizes.append(path.stat().st_size)
    return sizes


def _check_within_shards(where: str, shards: list[str], sizes: list[int], shard: np.ndarray, offset: np.ndarray,
                         length: np.ndarray) -> None:
    """Each record (offset + length; each at most a shard's size, so the sum fits int64) ends
    within its shard file: a read beyond it would come back short, mid-epoch."""
    beyond = np.flatnonzero(offset + length > np.asarray(sizes, np.int64)[shard])
    if len(beyond):
        position = int(beyond[0])
        raise UserError(f"{where}: 'offset' and 'length' of record {position} ({int(offset[position])}, "
                        f"{int(length[position])}) reach beyond the {sizes[shard[position]]} bytes of "
                        f"{shown(shards[shard[position]])}; pack the folder again")


class _Shards:
    """The shard files, each opened once and read with os.pread (safe from parallel readers)."""

    def __init__(self, paths: tuple[str, ...]):
        self.paths = paths
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    def read(self, shard: int, offset: int, length: int) -> bytes:
        with self._lock:
            if shard not in self._fds:
                self._fds[shard] = os.open(self.paths[shard], os.O_RDONLY)
            fd = self._fds[shard]
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise OSError(f"{self.paths[shard]}: cut short")
        return data


class RecordImages(ImageFiles):
    """Images stored in record shards: an ImageFiles whose bytes come from a record, not a file."""

    def __init__(self, paths, orientations, image_shape, skip_bad, bad, shards: _Shards, shard, offset, length):
        super().__init__(paths, orientations, image_shape, skip_bad, bad)
        self.shards = shards
        self.shard, self.offset, self.length = (np.asarray(a, np.int64) for a in (shard, offset, length))

    def _take(self, indices) -> "RecordImages":
        return RecordImages(self.paths[indices], self.orientations[indices], self.image_shape, self.skip_bad, self.bad,
                            self.shards, self.shard[indices], self.offset[indices], self.length[indices])

    def failure_reason(self, path: str) -> str:
        """Why the record named `path` failed: its image decoded again alone (a pixel bomb, a
        damaged JPEG said as for a file), or that the record itself does not parse."""
        import tensorflow as tf

        from archbuilder.data.images import decode_failure

        found = np.flatnonzero(self.paths == path)
        if len(found):
            i = int(found[0])
            try:
                encoded = self._reader()(tf.constant(i, tf.int64))
            except (OSError, tf.errors.OpError, UnicodeDecodeError):  # TensorFlow's message may quote the bytes
                return "its record does not parse"
            reason = decode_failure(lambda: encoded, self.image_shape, int(self.orientations[i]))
            if reason is not None:
                return reason
        return "its record does not parse or its image does not decode"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        import tensorflow as tf

        from archbuilder.data.stream import check_stream_error

        out = np.empty(self.shape, np.uint8)
        position = 0
        try:
            for batch in self.batches(tf.data.Dataset.range(len(self)).batch(256)):
                out[position:position + len(batch)] = batch.numpy()
                position += len(batch)
        except tf.errors.OpError:
            check_stream_error([self])
            raise
        return out if dtype is None else out.astype(dtype)

    def _reader(self):
        import tensorflow as tf

        shards, shard, offset, length = self.shards, self.shard, self.offset, self.length

        def read(position):
            i = int(position)
            return shards.read(int(shard[i]), int(offset[i]), int(length[i]))

        def encoded(position):
            record = tf.py_function(read, [position], tf.string)
            record.set_shape([])
            return tf.io.parse_single_example(record, {"image": tf.io.FixedLenFeature([], tf.string)})["image"]

        return encoded
