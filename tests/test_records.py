"""`data pack --format tfrecord`: sharded record files, read by train, evaluate and --test as the
class folder they were packed from (the same batches), and a pack cut short continued."""

from __future__ import annotations

import json

import numpy as np

from train_support import TINY_SPEC, image_folder, invoke, run_cli_in_process

SHAPE = (32, 32, 3)


def _pack(folder, out, *options):
    """`data pack --format tfrecord` in this process (the CLI's exit code and output, TensorFlow imported once)."""
    result = invoke("data", "pack", folder, out, "--format", "tfrecord", *options)
    assert result.exit_code == 0, result.output
    return result


def test_records_give_the_batches_of_the_folder_they_were_packed_from(tmp_path):
    import tensorflow as tf

    from archbuilder.data.pipeline import training_dataset
    from archbuilder.data.records import RecordImages
    from archbuilder.data.sources import training_data

    folder = image_folder(tmp_path / "images", per_class=10)
    out = tmp_path / "records"
    _pack(folder, out, "--shard-size", "7")
    index = json.loads((out / "index.json").read_text())
    assert index["counts"] == {"0": 10, "1": 10, "2": 10} and len(index["shards"]) == 5  # ceil(30 / 7)
    # Plain TFRecords: any reader sees one Example per image, holding the file's own bytes.
    first = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(out / index["shards"][0])))).numpy())
    name = first.features.feature["name"].bytes_list.value[0].decode()
    assert first.features.feature["image"].bytes_list.value[0] == (folder / name).read_bytes()
    assert sum(1 for shard in index["shards"] for _ in tf.data.TFRecordDataset(str(out / shard))) == 30

    files = training_data(str(folder), None, SHAPE, cache="none").train
    records = training_data(str(out), None, SHAPE, cache="none").train
    assert isinstance(records.x, RecordImages)
    assert records.class_names == files.class_names and np.array_equal(records.y, files.y)
    for streamed in (files, records):  # epoch orders from (seed, e): the same batches, bit for bit
        batches = [(x.numpy(), y.numpy()) for x, y in training_dataset(streamed.x, streamed.y, 3, 8, 5, 0, 2)]
        if streamed is files:
            expected = batches
    assert len(batches) == len(expected) == 8
    for (a, b), (c, d) in zip(expected, batches):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    held = training_data(str(out), None, SHAPE, cache="memory").train.x
    assert isinstance(held, np.ndarray)
    np.testing.assert_array_equal(held, np.asarray(files.x))


def test_a_pack_cut_short_continues_after_its_last_complete_shard(tmp_path):
    folder = image_folder(tmp_path / "images", per_class=6)
    out = tmp_path / "records"
    _pack(folder, out, "--shard-size", "5")
    index = json.loads((out / "index.json").read_text())
    shards = [out / s for s in index["shards"]]
    kept = {s: s.stat().st_mtime_ns for s in shards[:-1]}
    # As a kill after shard 3 leaves it: no index, no last shard.
    (out / "index.json").unlink()
    shards[-1].unlink()
    shards[-1].with_suffix(".json").unlink()
    result = _pack(folder, out, "--shard-size", "5")
    assert "18 images of 3 classes in 4 shards" in result.output
    assert json.loads((out / "index.json").read_text()) == index
    assert {s: s.stat().st_mtime_ns for s in shards[:-1]} == kept  # written once
    other = invoke("data", "pack", folder, out, "--format", "tfrecord", "--shard-size", "4")
    assert other.exit_code == 2 and "holds a pack of other files or another shard size" in other.output


def test_train_evaluate_and_test_read_records_as_a_folder(tmp_path):
    folder = image_folder(tmp_path / "images", per_class=12)
    out = tmp_path / "records"
    _pack(folder, out)
    run = tmp_path / "run"
    trained = run_cli_in_process("train", TINY_SPEC, "--data", out, "--test", out, "--out", run, "--epochs", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr
    on_records = run_cli_in_process("evaluate", run / "best.keras", "--data", out, "--json")
    on_folder = run_cli_in_process("evaluate", run / "best.keras", "--data", folder, "--json")
    assert on_records.returncode == on_folder.returncode == 0, on_records.stderr + on_folder.stderr
    a, b = json.loads(on_records.stdout), json.loads(on_folder.stdout)
    assert a["images"] == b["images"] == 36
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["loss"] == b["loss"]  # the same pixels
