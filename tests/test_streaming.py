"""Streaming images from their files (data/stream.py), the disk cache, `--cache`, and files that fail
while streaming: the same batches as the in-memory path, bounded memory, bad files named or skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from archbuilder.data.folder import scan_image_folder
from archbuilder.errors import UserError
from train_support import IMAGES, REPO, TINY_SPEC, cli, cli_env, image_folder, invoke, run_cli_in_process

SHAPE = (64, 64, 3)
ORIENTATION = 0x0112


def _turned_copy(source, target, orientation: int):
    """A sign photo stored turned back by `orientation`'s inverse and tagged with it (a real EXIF turn)."""
    with Image.open(source) as image:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        image.transpose(Image.Transpose.ROTATE_90).save(target, quality=90, exif=exif)
    return target


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Ten classes of real sign photos (12 each), one of them an EXIF-turned JPEG."""
    root = image_folder(tmp_path_factory.mktemp("streaming") / "images", classes=tuple(map(str, range(10))), per_class=12)
    _turned_copy(next(iter(sorted((IMAGES / "3").iterdir()))), root / "3" / "turned.jpg", 6)
    return root


def _held_and_streamed(folder, shape=SHAPE):
    from archbuilder.data.images import load_image_files
    from archbuilder.data.stream import ImageFiles, read_headers

    files = scan_image_folder(folder)
    orientations, problems = read_headers(files.paths)
    assert problems == []
    return files, load_image_files(files.paths, shape), ImageFiles(files.paths, orientations, shape)


def _batches(dataset):
    return [tuple(part.numpy() for part in element) if isinstance(element, tuple) else element.numpy()
            for element in dataset]


def _assert_same_batches(expected, got):
    assert len(expected) == len(got)
    for index, (a, b) in enumerate(zip(expected, got)):
        for part_a, part_b in zip(a, b) if isinstance(a, tuple) else ((a, b),):
            np.testing.assert_array_equal(part_a, part_b, err_msg=f"batch {index}")


def test_streamed_batches_equal_the_held_batches_with_and_without_augmentation(photos):
    from archbuilder.data.pipeline import inference_dataset, training_dataset
    from archbuilder.data.stream import ImageFiles
    from archbuilder.spec.training import AugmentationSpec

    files, held, streamed = _held_and_streamed(photos)
    assert isinstance(streamed, ImageFiles) and streamed.shape == held.shape == (121, *SHAPE)
    # The same decode (images.decode_bytes) of the same file: bit-identical pixels, so batches compare exactly.
    arguments = (files.labels, 10, 16, 7, 0, 2)
    _assert_same_batches(_batches(training_dataset(held, *arguments)), _batches(training_dataset(streamed, *arguments)))
    # Augmentation draws per example from (seed, epoch, index) (data.augment): the same augmented
    # pixels whether held or streamed, built twice, or decoded in another order.
    augmentation = AugmentationSpec(rotation=0.05, zoom=0.1, horizontal_flip=True, contrast=0.2)
    held_augmented = _batches(training_dataset(held, *arguments, augmentation))
    _assert_same_batches(held_augmented, _batches(training_dataset(held, *arguments, augmentation)))
    _assert_same_batches(held_augmented, _batches(training_dataset(streamed, *arguments, augmentation)))
    plain = _batches(training_dataset(held, *arguments))
    assert not np.array_equal(held_augmented[0][0], plain[0][0])  # augmentation did change the images
    _assert_same_batches(_batches(inference_dataset(held, 32)), _batches(inference_dataset(streamed, 32)))
    # A subset (a validation split, a class filter) is still streamed, and still the same pixels.
    subset = np.arange(0, 121, 3)
    assert isinstance(streamed[subset], ImageFiles)
    np.testing.assert_array_equal(np.asarray(streamed[subset]), held[subset])
    turned = [i for i, p in enumerate(files.paths) if p.name == "turned.jpg"]
    assert streamed.orientations[turned] == [6]  # the EXIF turn is read from the header and applied


@pytest.mark.slow  # by default its augmented form below
def test_a_resumed_stream_sees_the_batches_of_the_uninterrupted_run(photos):
    from archbuilder.data.pipeline import steps_per_epoch, training_dataset

    files, _, streamed = _held_and_streamed(photos, (32, 32, 3))
    whole = _batches(training_dataset(streamed, files.labels, 10, 16, 3, 0, 3))
    resumed = _batches(training_dataset(streamed, files.labels, 10, 16, 3, 2, 3))  # after epoch 2 of 3
    steps = steps_per_epoch(len(files.labels), 16)
    _assert_same_batches(whole[2 * steps:], resumed)
    first, second = (np.concatenate([b[1].argmax(1) for b in whole[e * steps:(e + 1) * steps]]) for e in (0, 1))
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)  # every image, in a new order


def test_a_resumed_augmented_stream_sees_the_augmented_batches_of_the_uninterrupted_run(photos):
    from archbuilder.data.pipeline import steps_per_epoch, training_dataset
    from archbuilder.spec.training import AugmentationSpec

    files, _, streamed = _held_and_streamed(photos, (32, 32, 3))
    augmentation = AugmentationSpec(rotation=0.06, zoom=0.1, translation=0.08, contrast=0.2, horizontal_flip=True)
    whole = _batches(training_dataset(streamed, files.labels, 10, 16, 3, 0, 3, augmentation))
    resumed = _batches(training_dataset(streamed, files.labels, 10, 16, 3, 2, 3, augmentation))
    _assert_same_batches(whole[2 * steps_per_epoch(len(files.labels), 16):], resumed)


def test_the_disk_cache_gives_the_same_batches_and_is_rebuilt_when_stale_or_damaged(tmp_path, monkeypatch):
    from archbuilder.data.disk_cache import cached
    from archbuilder.data.pipeline import inference_dataset

    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    for name in ("0", "1"):
        (folder / name).mkdir(parents=True)
        for source in sorted((IMAGES / name).iterdir())[:6]:
            shutil.copyfile(source, folder / name / source.name)  # writable copies: the test changes one
    files, held, streamed = _held_and_streamed(folder, (48, 48, 3))
    disk = cached(streamed)
    cache = disk.bad.cache_folder
    assert cache.is_dir() and json.loads((cache / "index.json").read_text())["count"] == 12
    _assert_same_batches(_batches(inference_dataset(held, 5)), _batches(inference_dataset(disk, 5)))
    built = (cache / "index.json").stat().st_mtime_ns
    assert cached(streamed).bad.cache_folder == cache and (cache / "index.json").stat().st_mtime_ns == built  # reused

    # Stale: a changed source file gives another key, so the old pixels are never read.
    changed = files.paths[3]
    with Image.open(changed) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, quality=90)
    files, held, streamed = _held_and_streamed(folder, (48, 48, 3))
    fresh = cached(streamed)
    assert fresh.bad.cache_folder != cache
    _assert_same_batches(_batches(inference_dataset(held, 5)), _batches(inference_dataset(fresh, 5)))

    # Damaged: a missing file is seen when the cache is opened, and it is built again.
    fresh_built = (fresh.bad.cache_folder / "index.json").stat().st_mtime_ns
    png = sorted(fresh.bad.cache_folder.glob("*/*.png"))
    png[0].unlink()
    rebuilt = cached(streamed)
    assert rebuilt.bad.cache_folder == fresh.bad.cache_folder and png[0].exists()
    assert (rebuilt.bad.cache_folder / "index.json").stat().st_mtime_ns != fresh_built
    _assert_same_batches(_batches(inference_dataset(held, 5)), _batches(inference_dataset(rebuilt, 5)))
    # A file damaged inside (PNG's checksums fail) stops reading with its name, and the cache is removed.
    png = sorted(rebuilt.bad.cache_folder.glob("*/*.png"))[4]
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0xFF
    png.write_bytes(bytes(data))
    from archbuilder.training.metrics import predict_probabilities

    import keras

    model = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(UserError, match=rf"{png.name}: the decoded-image cache is damaged .*removed"):
        predict_probabilities(model, rebuilt, 5)
    assert not rebuilt.bad.cache_folder.exists()


def _copied_folder(root, per_class=8):
    for name in ("0", "1", "2"):
        (root / name).mkdir(parents=True)
        for source in sorted((IMAGES / name).iterdir())[:per_class]:
            shutil.copyfile(source, root / name / source.name)  # writable copies
    return root


def _truncate(path):
    """A JPEG cut in half: its header (signature, EXIF) passes the early check, its decode fails."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_a_file_that_fails_mid_stream_is_skipped_and_counted_or_stops_naming_it(tmp_path):
    import tensorflow as tf

    from archbuilder.data.pipeline import steps_per_epoch, training_dataset
    from archbuilder.data.stream import ImageFiles, read_headers, stop_message

    files = scan_image_folder(_copied_folder(tmp_path / "images"))
    orientations, problems = read_headers(files.paths)
    assert problems == []
    files.paths[5].unlink()  # deleted during training
    _truncate(files.paths[17])  # damaged during training
    bad = {5, 17}

    skipping = ImageFiles(files.paths, orientations, (32, 32, 3), skip_bad=True)
    batches = _batches(training_dataset(skipping, files.labels, 3, 8, 0, 0, 2))
    steps = steps_per_epoch(24, 8)
    assert len(batches) == 2 * steps
    for epoch in (0, 1):
        seen = np.concatenate([b[1].argmax(1) for b in batches[epoch * steps:(epoch + 1) * steps]])
        good = np.delete(files.labels, sorted(bad))
        assert sorted(seen) == sorted(good)  # every other image once, each with its own label
        assert sorted(skipping.bad.skipped_in(epoch)) == sorted(str(files.paths[i]) for i in bad)

    stopping = ImageFiles(files.paths, orientations, (32, 32, 3))
    with pytest.raises(tf.errors.OpError):
        _batches(training_dataset(stopping, files.labels, 3, 8, 0, 0, 2))
    message = stop_message([stopping])
    assert message.split(":")[0] in {str(files.paths[i]) for i in bad} and "not a readable image" in message
    assert "\n" not in message


@pytest.mark.slow  # two trains; by default test_a_file_that_fails_mid_stream_is_skipped_and_counted_or_stops_naming_it
def test_train_streams_stops_at_a_damaged_file_naming_it_and_resumes_skipping_it(tmp_path):
    folder = _copied_folder(tmp_path / "images")
    broken = sorted((folder / "1").iterdir())[2]
    _truncate(broken)
    run = tmp_path / "run"
    result = run_cli_in_process("train", TINY_SPEC, "--data", folder, "--out", run, "--epochs", "2", "--cache", "none",
                                "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{broken}: not a readable image") and f"--resume {run}" in last, result.stderr
    assert last.endswith(f"(or add --skip-bad-images) and continue with: python cli.py train --resume {run}")
    assert json.loads((run / "run.json").read_text())["cache"] == "none"

    resumed = run_cli_in_process("train", "--resume", run, "--skip-bad-images", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("skipped 1 image that failed to decode") == 2, resumed.stderr  # once per epoch
    assert str(broken) in resumed.stderr
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 2


# A real process per case (8-17 s on a slow CPU): by default
# test_a_file_that_fails_mid_stream_is_skipped_and_counted_or_stops_naming_it.
@pytest.mark.slow
@pytest.mark.parametrize("cache", ["none", "disk"])
def test_skip_bad_images_skips_a_damaged_file_in_the_batch_norm_sample_and_the_disk_cache(tmp_path, monkeypatch,
                                                                                         cache):
    """The BatchNorm sample (every training image here: 3 batches of 16 of 48) and the disk cache's
    build meet the damaged file before training does; both skip it, and each epoch counts it once."""
    folder = _copied_folder(tmp_path / "images", per_class=16)
    broken = sorted((folder / "2").iterdir())[3]
    _truncate(broken)
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(tmp_path / "cache"))
    runs = (tmp_path / "run", tmp_path / "again") if cache == "disk" else (tmp_path / "run",)
    for attempt, run in enumerate(runs):  # the second reads the cache the first built
        result = run_cli_in_process("train", TINY_SPEC, "--data", folder, "--out", run, "--epochs", "2", "--cache", cache,
                                    "--skip-bad-images", "--set", "training.batch_norm_recompute_batches=3", "--quiet")
        assert result.returncode == 0, result.stderr
        assert result.stderr.count(f"skipped 1 image that failed to decode (--skip-bad-images): {broken}") == 2, \
            result.stderr  # once per epoch, though the sample and the epoch's batches both met it
        if cache == "disk":
            assert (f"warning: skipping {broken}: not a readable image" in result.stderr) == (attempt == 0), result.stderr
            assert ("caching 48 decoded images" in result.stderr) == (attempt == 0), result.stderr
    if cache == "disk":
        index = json.loads(next((tmp_path / "cache" / "decoded-images").glob("*/index.json")).read_text())
        assert index["count"] == 48 and len(index["missing"]) == 1


def _cut_with_end_marker(source, target):
    """A 600x600 JPEG cut at 70% with its end-of-image marker put back: it decodes (the rest gray),
    and libjpeg warns "Corrupt JPEG data: premature end of data segment" on the way."""
    import io

    with Image.open(source) as image:
        buffer = io.BytesIO()
        image.resize((600, 600)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    target.write_bytes(data[:len(data) * 7 // 10] + b"\xff\xd9")


# A real train process each (~14 s on a slow CPU): by default the filter itself is checked
# (test_the_native_line_filter_drops_libjpeg_s_messages_only).
@pytest.mark.slow
@pytest.mark.parametrize("cache", ["none", "memory"])
def test_libjpeg_s_own_lines_stay_off_the_terminal_and_ours_show(tmp_path, cache):
    """libjpeg prints its messages to descriptor 2 itself (native_lines.py); a real `train`
    process must show our lines and none of libjpeg's, streamed or decoded up front."""
    from archbuilder.native_lines import LIBJPEG_LINE

    folder = _copied_folder(tmp_path / "images")
    broken = sorted((folder / "1").iterdir())[2]
    _truncate(broken)  # fails to decode: "Improper call to JPEG library in state 201"
    _cut_with_end_marker(sorted((IMAGES / "2").iterdir())[0], folder / "2" / "cut.jpg")  # decodes, with a warning
    result = cli("train", TINY_SPEC, "--data", folder, "--out", tmp_path / "run", "--epochs", "1", "--cache", cache,
                 "--skip-bad-images", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"{broken}: not a readable image" in result.stderr or f"skipped 1 image that failed to decode " \
        f"(--skip-bad-images): {broken}" in result.stderr, result.stderr  # ours, named
    assert [line for line in result.stderr.splitlines() if LIBJPEG_LINE.match(line.encode())] == [], result.stderr


def test_the_native_line_filter_drops_libjpeg_s_messages_only():
    import io

    from archbuilder.native_lines import copy_lines

    lines = [b"Corrupt JPEG data: premature end of data segment\n", b"F0000 check failed: x == y\n",
             b"Improper call to JPEG library in state 201\n", b"Corrupt JPEG data: 3 extraneous bytes before marker 0xd9\n",
             b"Premature end of JPEG file\n", b"Not a JPEG file: starts with 0x89 0x50\n", b"a line about JPEG data\n",
             b"E0000 00:00:1796643541.208925    5243 jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 0/50\n",
             b"no newline at the end"]
    out = io.BytesIO()
    copy_lines(io.BytesIO(b"".join(lines)), out)
    assert out.getvalue() == b"F0000 check failed: x == y\na line about JPEG data\nno newline at the end"


def test_predict_of_a_jpeg_cut_in_half_prints_our_one_line_only(tmp_path):
    # TensorFlow's own "jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 0/50" came
    # before and after it (a real process: descriptor 2 is filtered only there).
    photo = IMAGES / "0" / "IMG_1118.JPG"  # cut at half, TensorFlow logs the line for it (not for every photo)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(photo.read_bytes()[:photo.stat().st_size // 2])
    assert invoke("build", TINY_SPEC, "--out", tmp_path).exit_code == 0
    (model,) = tmp_path.glob("*.keras")
    # As a user runs it: the suite's TF_CPP_MIN_LOG_LEVEL=3 (cli_env) would hide TensorFlow's line.
    env = {key: value for key, value in cli_env().items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "predict", str(model), str(cut)], cwd=REPO,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"{cut}: not a readable image (jpeg::Uncompress failed. Invalid JPEG "
                                                  "data or crop window.)"], result.stderr


def test_a_file_with_no_image_header_is_named_before_training_starts(tmp_path):
    folder = _copied_folder(tmp_path / "images", per_class=3)
    (folder / "2" / "notes.jpg").write_text("not an image")
    result = invoke("train", TINY_SPEC, "--data", folder, "--out", tmp_path / "run", "--cache", "none", "--quiet")
    assert result.exit_code == 2
    assert f"{folder / '2' / 'notes.jpg'}: not a readable image (not a JPEG, PNG, GIF, BMP or WebP" in result.output
    assert not (tmp_path / "run").exists()  # nothing written: the check runs before the run folder


def test_the_memory_guard_counts_the_images_held_and_auto_streams_what_does_not_fit(tmp_path):
    from archbuilder.data.cache_choice import HELD_COPIES, MemoryBudget
    from archbuilder.plan.size_guard import estimate
    from archbuilder.plan.validate import load_checked_spec

    folder = image_folder(tmp_path / "images", per_class=150)
    model = estimate(load_checked_spec(str(TINY_SPEC)).plan, 16, training=True, slots=2).total
    held = HELD_COPIES * 450 * 32 * 32 * 3
    streamed = MemoryBudget(None, 0, 16)
    streamed.choose("none", 450, (32, 32, 3), "x")
    assert streamed.used < held  # what a stream holds is less than the held images
    limit = model + (held + streamed.used) // 2  # room for the stream, not for the held images
    refused = invoke("train", TINY_SPEC, "--data", folder, "--out", tmp_path / "held", "--cache", "memory",
                     "--max-memory", str(limit), "--quiet")
    assert refused.exit_code == 2 and "the decoded images of" in refused.output and "--cache none" in refused.output
    streaming = invoke("train", TINY_SPEC, "--data", folder, "--out", tmp_path / "auto", "--epochs", "1",
                       "--max-memory", str(limit), "--quiet")
    assert streaming.exit_code == 0, streaming.output
    assert "streamed from their files" in streaming.output
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["cache"] == "auto"


_PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(done.stderr)
print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def _train_peak_rss(folder, test, run, size: int, batch: int) -> int:
    """Peak RSS in bytes of one `train` process (the only child of a wrapper that reports it)."""
    import subprocess
    import sys

    from train_support import REPO, cli_env

    command = [sys.executable, str(REPO / "cli.py"), "train", str(TINY_SPEC), "--data", str(folder), "--test", str(test), "--out", str(run),
               "--epochs", "1", "--batch-size", str(batch), "--set", f"input.shape=[{size},{size},3]",
               "--cache", "none", "--quiet"]
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command], capture_output=True, text=True,
                          timeout=3600, env=cli_env(), cwd=REPO)
    code, peak = map(int, done.stdout.split())
    assert code == 0, done.stderr
    return peak


def _generated_jpegs(root, first: int, count: int, side: int) -> None:
    """JPEGs number first..count-1, side x side, smooth but distinct, in two classes (cheap to write,
    real to decode)."""
    rng = np.random.default_rng(first)
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    for index in range(first, count):
        folder = root / str(index % 2)
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        pixels = (colour * ramp[:, None, None] * ramp[None, :, None] + rng.uniform(0, 40, (side, side, 3))).clip(0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:06d}.jpg", quality=85)


@pytest.mark.slow
def test_streaming_trains_in_bounded_memory_on_data_several_times_larger(tmp_path):
    """One epoch of --cache none on generated 400x400 JPEGs at 384x384, three times as many bytes
    decoded as the bound on the process's peak RSS. The test set (evaluated after the epoch) is
    the same 64 images in both runs: what grows with the data is the training stream alone.

    The bound: the peak RSS of the same training on 64 images (the process's fixed cost: Python,
    TensorFlow, the model, its gradients and activations at this batch, the traced graphs), plus
    what streaming holds beyond it: the batches in flight (stream.PARALLEL_BATCHES being decoded,
    PREFETCH_BATCHES waiting, one in the model; each as uint8 and as the float32 x/255, 5 bytes a
    value), one full-size decode per CPU thread (uint8 source and float32 resize input), and per
    file its name and index (the epoch's permutation stands where a shuffle buffer would: 8 bytes
    per file for its random key and its index; the name in Python and in a tf.string constant,
    with up to 64 bytes of object overhead each). The in-memory path would hold the decoded images
    at least twice (cache_choice.HELD_COPIES).
    """
    import math
    import os

    from archbuilder.data.stream import PARALLEL_BATCHES, PREFETCH_BATCHES

    side, size, batch = 400, 384, 16
    big, small = tmp_path / "big", tmp_path / "small"
    _generated_jpegs(big, 0, 64, side)
    for path in sorted(big.rglob("*.jpg")):  # the test set of both runs (so that the final evaluation is small)
        (small / path.parent.name).mkdir(parents=True, exist_ok=True)
        (small / path.parent.name / path.name).symlink_to(path)
    fixed = _train_peak_rss(big, small, tmp_path / "run-small", size, batch)
    image = size * size * 3
    in_flight = (PARALLEL_BATCHES + PREFETCH_BATCHES + 1) * batch * image * 5
    decoding = (os.cpu_count() or 1) * side * side * 3 * 5
    per_file_bytes = 8 + 2 * (len(str(big / "0" / "000000.jpg")) + 64)
    # count images decode to 3x the bound that count implies (the per-file term grows with it too)
    count = math.ceil(3 * (fixed + in_flight + decoding) / (image - 3 * per_file_bytes))
    bound = fixed + in_flight + decoding + count * per_file_bytes
    assert count * image >= 3 * bound
    _generated_jpegs(big, 64, count, side)
    peak = _train_peak_rss(big, small, tmp_path / "run-big", size, batch)
    print(f"{count} images: fixed {fixed / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB, "
          f"peak {peak / 2**20:.0f} MiB, decoded {count * image / 2**20:.0f} MiB")
    assert peak <= bound, f"peak RSS {peak / 2**20:.0f} MiB exceeds the bound {bound / 2**20:.0f} MiB"
