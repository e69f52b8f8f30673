"""Hostile data: an edited record index, HDF5 class lists that repeat a name or are not text, class
names holding line breaks, a named pipe among the images and a PNG decompression bomb. Each is
refused in one line naming the file and what is wrong (exit code 2), or skipped with
--skip-bad-images where it is one bad image; none hangs, takes the memory or writes a model that
later commands refuse."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib

import h5py
import numpy as np
import pytest
from PIL import Image

from archbuilder.errors import UserError
from train_support import REPO, TINY_SPEC, cli_env, image_folder, invoke


def _refused_in_one_line(result, *expected: str) -> str:
    """The command exited 2 with one line (no traceback) holding each of `expected`."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _train(data, out, *options):
    return invoke("train", TINY_SPEC, "--data", data, "--out", out, "--epochs", "1", "--quiet", *options)


# --- A, B, D: a record index edited by hand -------------------------------------------------------


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Record shards of 12 real photos of 3 classes, 5 a shard (3 shards)."""
    root = tmp_path_factory.mktemp("records")
    folder = image_folder(root / "images", per_class=4)
    result = invoke("data", "pack", folder, root / "records", "--format", "tfrecord", "--shard-size", "5")
    assert result.exit_code == 0, result.output
    return root / "records"


def _edited_index(records, tmp_path, edit):
    copy = tmp_path / "records"
    shutil.copytree(records, copy)
    index = json.loads((copy / "index.json").read_text())
    edit(index)
    (copy / "index.json").write_text(json.dumps(index))
    return copy


def _set(column, position, value):
    def edit(index):
        index[column][position] = value
    return edit


@pytest.mark.parametrize("edit, field", [
    (_set("label", 3, 7), "'label'"),             # trained, then an IndexError in the metrics
    (_set("label", 3, -1), "'label'"),            # trained as the last class
    (_set("label", 3, "1"), "'label'"),           # a string, taken as a number
    (_set("label", 3, True), "'label'"),          # a bool, taken as 1
    (_set("label", 3, 1.5), "'label'"),
    (_set("shard", 3, 9), "'shard'"),             # an IndexError naming the records
    (_set("offset", 3, 2**70), "'offset'"),       # an OverflowError
    (_set("offset", 3, -5), "'offset'"),
    (_set("length", 3, 10**9), "'length'"),       # beyond the end of its shard file
    (_set("orientation", 3, 12), "'orientation'"),
    (_set("name", 3, 5), "'name'"),
    (_set("shards", 0, 5), "'shards'"),
    (_set("class_names", 1, "0"), "'0' twice"),   # a model that predict and evaluate refuse
    (_set("class_names", 1, "a\nb"), "a\\nb"),    # classes.txt would have a line too many
    (_set("class_names", 1, 7), "'class_names'"),
    (lambda index: index.update(class_names=["0", "1"]), "'label'"),  # labels of a third class
], ids=["label-beyond", "label-negative", "label-string", "label-bool", "label-float", "shard-beyond",
        "offset-overflow", "offset-negative", "length-beyond-file", "orientation", "name-number",
        "shard-file-number", "class-twice", "class-newline", "class-number", "fewer-classes"])
def test_an_edited_record_index_is_refused_naming_the_field(records, tmp_path, edit, field):
    edited = _edited_index(records, tmp_path, edit)
    result = _train(edited, tmp_path / "run")
    _refused_in_one_line(result, f"{edited / 'index.json'}: ", field, "pack the folder again")
    assert not (tmp_path / "run").exists()


def test_a_record_that_fails_is_named_with_its_reason(records, tmp_path, monkeypatch):
    # It said "its record does not parse or its image does not decode" whatever the cause: a pixel
    # bomb packed into a record, or a damaged image, read as a file's would be.
    monkeypatch.setenv("ARCHBUILDER_MAX_IMAGE_PIXELS", "1000")  # every photo (100x100, 50x50 at 1/2) is over
    index = json.loads((records / "index.json").read_text())
    first = f"{records / index['shards'][0]}#0 ({index['name'][0]}): not a readable image ("
    _refused_in_one_line(_train(records, tmp_path / "run"), first + "100x100 pixels (decoded at 1/2: 50x50), more than "
                         "the 1,000 an image may have; raise the limit with ARCHBUILDER_MAX_IMAGE_PIXELS)")
    monkeypatch.delenv("ARCHBUILDER_MAX_IMAGE_PIXELS")
    damaged = _edited_index(records, tmp_path, lambda index: None)
    with open(damaged / index["shards"][0], "r+b") as shard:  # the first record's bytes, overwritten
        shard.seek(index["offset"][0])
        shard.write(b"\xff" * index["length"][0])
    _refused_in_one_line(_train(damaged, tmp_path / "run"), f"{damaged / index['shards'][0]}#0 ({index['name'][0]}): "
                         "not a readable image (its record does not parse)")
    assert not (tmp_path / "run").exists()


# --- B, C, D: HDF5 class lists -------------------------------------------------------------------


def _signs_h5(path, list_classes):
    with h5py.File(path, "w") as handle:
        handle.create_dataset("train_set_x", data=np.random.default_rng(0).integers(0, 255, (12, 32, 32, 3), np.uint8))
        handle.create_dataset("train_set_y", data=np.arange(12, dtype=np.int64) % 3)
        handle.create_dataset("list_classes", data=list_classes)
    return path


@pytest.mark.parametrize("list_classes, expected", [
    (np.array([b"0", b"0", b"2"]), "'0' twice"),             # trained; predict and evaluate refused the model
    (np.array([b"\xff\xfe", b"b", b"c"]), "\\xff\\xfe"),     # a UnicodeDecodeError traceback
    (np.array([b"a\nb", b"b", b"c"]), "a\\nb"),              # classes.txt would have a line too many
    (np.array([b"a\x1b[2J", b"b", b"c"]), "a\\x1b[2J"),
], ids=["twice", "not-utf8", "newline", "escape"])
def test_an_h5_class_list_that_repeats_a_name_or_is_not_one_line_of_text_is_refused(tmp_path, list_classes,
                                                                                   expected):
    path = _signs_h5(tmp_path / "signs.h5", list_classes)
    result = _train(path, tmp_path / "run")
    line = _refused_in_one_line(result, f"{path}: ", "list_classes", expected)
    assert "\x1b" not in line and not (tmp_path / "run").exists()


# --- D: a class folder whose name holds a line break ---------------------------------------------


@pytest.mark.parametrize("name, shown", [("1\nx", "1\\nx"), ("1\rx", "1\\rx"), ("1\x1b[2J", "1\\x1b[2J"),
                                         ("1\u2028x", "1\\u2028x")],
                         ids=["newline", "carriage-return", "escape", "line-separator"])
def test_a_class_folder_whose_name_holds_a_line_break_or_escape_is_refused(tmp_path, name, shown):
    data = image_folder(tmp_path / "images", per_class=4)
    (data / "1").rename(data / name)
    result = _train(data, tmp_path / "run")
    line = _refused_in_one_line(result, f"{data}/{shown}: ", "class folder")
    assert "\x1b" not in line and not (tmp_path / "run").exists()
    assert not (data / name).is_symlink() and len(list((data / name).iterdir())) == 4  # nothing touched


# --- E: a named pipe among the images ------------------------------------------------------------


_FIFO_CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    from train_support import TINY_SPEC, invoke

    data, run = sys.argv[1], sys.argv[2]
    answers = {}
    for name, options in [("memory", []), ("streamed", ["--cache", "none"]),
                          ("skipped", ["--cache", "none", "--skip-bad-images"])]:
        result = invoke("train", TINY_SPEC, "--data", data, "--out", f"{run}-{name}", "--epochs", "1", "--quiet",
                        *options)
        answers[name] = [result.exit_code, result.output]
    print(json.dumps(answers))
""")


def test_a_named_pipe_in_a_class_folder_is_named_or_skipped_never_opened(tmp_path):
    # open() of a pipe waits for a writer: train (held or streamed) and evaluate hung for ever.
    data = image_folder(tmp_path / "images", per_class=4)
    pipe = data / "0" / "pipe.jpg"
    os.mkfifo(pipe)
    child = subprocess.run([sys.executable, "-c", _FIFO_CHILD, str(data), str(tmp_path / "run")], cwd=REPO,
                           capture_output=True, text=True, timeout=240, env=cli_env())
    assert child.returncode == 0, child.stderr
    answers = json.loads(child.stdout.strip().splitlines()[-1])
    for name in ("memory", "streamed"):
        code, output = answers[name]
        assert code == 2 and output.strip() == f"{pipe}: not a readable image (not a regular file: a named pipe)", \
            (name, output)
        assert not (tmp_path / f"run-{name}").exists()
    code, output = answers["skipped"]
    assert code == 0, output
    assert f"warning: skipping {pipe}: not a readable image (not a regular file: a named pipe)" in output
    assert "training tiny on 12 images" in output


def test_the_held_decode_names_a_named_pipe_among_predicted_files(tmp_path):
    # What predict and export's calibration load: in a child, as a hang is what this guards against.
    data = image_folder(tmp_path / "images", per_class=2)
    pipe = data / "1" / "pipe.png"
    os.mkfifo(pipe)
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, "tests")
        import train_support
        from archbuilder.data.images import load_image_files, bad_image_files
        from archbuilder.errors import UserError
        paths = sorted(str(path) for path in Path({str(data)!r}).glob("*/*"))
        print(bad_image_files(paths, (32, 32, 3)))
        try:
            load_image_files(paths, (32, 32, 3))
        except UserError as error:
            print(error)
    """)
    child = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                           env=cli_env())
    assert child.returncode == 0, child.stderr
    bad, message = child.stdout.strip().splitlines()[-2:]
    assert bad == repr([(4, str(pipe), "not a regular file: a named pipe")])  # after 0/*, 1/IMG_*
    assert message == f"{pipe}: not a readable image (not a regular file: a named pipe)"


# --- F: a PNG decompression bomb -----------------------------------------------------------------


def _png_bomb(path, side: int = 12000):
    """A real PNG of side x side black pixels, 1 bit each: ~20 KB on disk, side² x 3 bytes decoded."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + side // 8)  # filter byte, then the row's bits
    packer = zlib.compressobj(9)
    compressed = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", compressed) + chunk(b"IEND", b""))
    return path


def test_a_png_whose_header_says_more_pixels_than_the_limit_is_refused_before_decoding(tmp_path):
    from archbuilder.data.images import MAX_IMAGE_PIXELS, bad_image_files, load_image_files

    bomb = _png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000 and 12000**2 > MAX_IMAGE_PIXELS
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), "red").save(good)
    with pytest.raises(UserError) as refused:
        load_image_files([good, bomb], (32, 32, 3))
    assert str(refused.value) == (f"{bomb}: not a readable image (12000x12000 pixels, more than the "
                                  f"{MAX_IMAGE_PIXELS:,} an image may have; raise the limit with "
                                  "ARCHBUILDER_MAX_IMAGE_PIXELS)")
    assert bad_image_files([good, bomb], (32, 32, 3)) == [(1, str(bomb), str(refused.value).split("(", 1)[1][:-1])]


# A real lossless WebP of 10000x9000 black pixels (PIL's, 34 bytes: 270 MB decoded): TensorFlow's
# decode_image reads WebP whatever the file is called, so a held folder or predict took it as a PNG.
_WEBP_BOMB = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0e\x00\x00\x00/\x0f\xe7\xc9\x08\x07\x10\x11\xfd\x0fDD\xff\x03"


def test_a_webp_bomb_named_png_is_refused_before_decoding(tmp_path):
    from archbuilder.data.images import MAX_IMAGE_PIXELS, load_image_files

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_WEBP_BOMB)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own alarm, at open
        image = Image.open(bomb)
    with image:
        assert image.format == "WEBP" and image.size == (10000, 9000) and 10000 * 9000 > MAX_IMAGE_PIXELS
    with pytest.raises(UserError, match=r"bomb\.png: not a readable image \(10000x9000 pixels, more than the "):
        load_image_files([bomb], (32, 32, 3))


def test_the_pixel_limit_is_set_by_its_variable_for_every_decode(tmp_path, monkeypatch):
    # Larger images are meant in some work (aerial, microscope tiles): the limit is the user's to
    # raise. Shown here lowered, at sizes a test decodes: a 40x30 PNG (1,200 pixels) against 1,000
    # and 1,200, held (one decoder per limit within a process) and streamed (named before the run).
    from archbuilder.data.images import load_image_files

    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(image)
    monkeypatch.setenv("ARCHBUILDER_MAX_IMAGE_PIXELS", "1_000")
    with pytest.raises(UserError) as refused:
        load_image_files([image], (8, 8, 3))
    assert str(refused.value) == (f"{image}: not a readable image (40x30 pixels, more than the 1,000 an image "
                                  "may have; raise the limit with ARCHBUILDER_MAX_IMAGE_PIXELS)")
    data = image_folder(tmp_path / "images", per_class=4)
    shutil.copy(image, data / "1" / "a.png")
    _refused_in_one_line(_train(data, tmp_path / "run", "--cache", "none"),
                         f"{data / '1' / 'a.png'}: not a readable image (40x30 pixels, more than the 1,000 ")
    monkeypatch.setenv("ARCHBUILDER_MAX_IMAGE_PIXELS", "1200")
    assert load_image_files([image], (8, 8, 3)).shape == (1, 8, 8, 3)


@pytest.mark.parametrize("value", ["many", "0", "-5", "1e9", "1234567890123456", "\u0661\u0662"])
def test_a_pixel_limit_that_is_no_count_is_named(tmp_path, monkeypatch, value):
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30), "red").save(image)
    monkeypatch.setenv("ARCHBUILDER_MAX_IMAGE_PIXELS", value)
    assert invoke("build", TINY_SPEC, "--out", tmp_path).exit_code == 0
    (model,) = tmp_path.glob("*.keras")
    _refused_in_one_line(invoke("predict", model, image), "ARCHBUILDER_MAX_IMAGE_PIXELS: expected a whole number of pixels")


def test_a_pixel_limit_that_is_no_count_is_named_for_records_too(records, tmp_path, monkeypatch):
    # Read inside tf.data's trace, its UserError came wrapped in a StagingError traceback.
    monkeypatch.setenv("ARCHBUILDER_MAX_IMAGE_PIXELS", "abc")
    _refused_in_one_line(_train(records, tmp_path / "run"), "ARCHBUILDER_MAX_IMAGE_PIXELS: expected a whole number")
    assert not (tmp_path / "run").exists()


def test_a_large_jpeg_decoded_scaled_down_is_not_refused(tmp_path):
    # 10000x10000 is over the limit, but libjpeg decodes it at 1/8 for a 32x32 input: 1250x1250.
    from archbuilder.data.images import MAX_IMAGE_PIXELS, load_image_files

    large = tmp_path / "large.jpg"
    Image.new("L", (10000, 10000), 128).save(large, quality=50)
    assert 10000**2 > MAX_IMAGE_PIXELS
    pixels = load_image_files([large], (32, 32, 3))
    assert pixels.shape == (1, 32, 32, 3) and abs(int(pixels.mean()) - 128) <= 1


def test_train_names_a_bomb_among_streamed_images_or_skips_it(tmp_path):
    data = image_folder(tmp_path / "images", per_class=4)
    bomb = _png_bomb(data / "2" / "bomb.png")
    result = _train(data, tmp_path / "run", "--cache", "none")
    _refused_in_one_line(result, f"{bomb}: not a readable image (12000x12000 pixels, more than the ")
    assert not (tmp_path / "run").exists()  # named by the header check, before the run starts
    result = _train(data, tmp_path / "skipped", "--cache", "none", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert f"{bomb}: not a readable image (12000x12000 pixels" in result.output


def test_skip_bad_images_also_skips_files_that_are_no_images(tmp_path):
    # A Thumbs.db or notes.txt in a class folder stopped training even with --skip-bad-images,
    # which skips every other file that cannot be read as an image.
    data = image_folder(tmp_path / "images", per_class=3)
    (data / "1" / "Thumbs.db").write_bytes(b"\0" * 64)
    refused = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "refused")
    assert refused.exit_code == 2 and "Thumbs.db: not an image file" in refused.output, refused.output
    assert not (tmp_path / "refused").exists()
    skipped = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run",
                     "--skip-bad-images", "--quiet")
    assert skipped.exit_code == 0, skipped.output
    assert f"warning: skipping {data / '1' / 'Thumbs.db'}: not an image file" in skipped.output
    images = sum(1 for path in data.rglob("*") if path.is_file() and path.suffix != ".db")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["images"] == {"training": images}


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_a_folder_of_webp_photos_trains_and_predicts(tmp_path, cache):
    # `predict x.webp` worked (TensorFlow's decoder reads WebP) while a folder of .webp files was
    # "no images" to train, evaluate and predict.
    from PIL import Image

    from train_support import IMAGES

    data = tmp_path / "webp"
    for label in ("0", "1"):
        (data / label).mkdir(parents=True)
        for photo in sorted((IMAGES / label).iterdir())[:4]:
            Image.open(photo).save(data / label / (photo.stem + ".webp"))
    trained = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--cache", cache,
                     "--quiet")
    assert trained.exit_code == 0, trained.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["images"] == {"training": 8}
    predicted = invoke("predict", tmp_path / "run" / "best.keras", data / "1", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert sum(line.startswith("{") for line in predicted.output.splitlines()) == 4
