"""Issue 13: what a new user hit with paths, file names, model files and options.

Each test failed on 9722cd5 (a traceback, a misleading message or an ignored option) and checks
the promise: a working result, or exit code 2 with one line naming the problem.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from train_support import TINY_SPEC, image_folder, invoke


def _one_clean_line(result, *needles: str) -> str:
    """A refused command (CliRunner result): exit 2, no traceback, one line holding every needle."""
    output = result.output
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny spec as a .keras file with class names 0, 1, 2 (as `train` writes it)."""
    from archbuilder.keras.model_files import save_model_file

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model_file(_tiny(), path, {"class_names": ["0", "1", "2"]})
    return path


def _tiny(*overrides: str):
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec

    return build_model(load_checked_spec(TINY_SPEC, overrides).spec)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=3)


# -- item 3: output paths that cannot be written ------------------------------------------------

def _unwritable_cases(tmp: Path, photos: Path) -> list[tuple[list[str], str]]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    spec = str(TINY_SPEC)
    dangling, loop = tmp / "dangling", tmp / "loop"
    dangling.symlink_to(tmp / "nowhere" / "dir")
    loop.symlink_to(tmp / "loop_back")
    (tmp / "loop_back").symlink_to(loop)
    taken = tmp / "taken"
    (taken / "tiny.keras").mkdir(parents=True)  # the file build would write is a folder
    (taken / "tiny.h5").mkdir()
    return [
        (["build", spec, "--out", str(dangling)], "is a link to nothing"),
        (["plot", spec, "--out", str(loop / "x.svg")], "is a link to nothing"),
        (["build", spec, "--out", str(taken)], "tiny.keras: is a folder"),
        (["build", spec, "--out", str(taken), "--format", "h5"], "tiny.h5: is a folder"),
        (["build", spec, "--out", "/proc/foo"], "/proc/foo"),
        (["build", spec, "--out", str(a_file / "sub")], str(a_file / "sub")),
        (["train", spec, "--data", str(photos), "--out", "/proc/foo"], "/proc/foo"),
        (["train", spec, "--data", str(photos), "--out", str(a_file)], str(a_file)),
        (["plot", spec, "--out", "/proc/foo.png"], "/proc/foo.png"),
        (["data", "pack", str(photos), "/proc/x.h5"], "/proc/x.h5"),
    ]


def test_output_paths_that_cannot_be_written_are_refused_before_any_work(tmp_path, photos):
    for args, named in _unwritable_cases(tmp_path, photos):
        line = _one_clean_line(invoke(*args), named)
        assert "cannot write" in line or "not a folder" in line or "is a folder" in line, line
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["tiny.h5", "tiny.keras"]


# -- item 4: upper-case diagram extensions ------------------------------------------------------

@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_plot_layers_accepts_upper_case_extensions(tmp_path):
    out = tmp_path / "tiny.PNG"
    result = invoke("plot", TINY_SPEC, "--level", "layers", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- item 5: what is read from files is validated --------------------------------------------

def test_a_set_path_of_hundreds_of_keys_is_one_located_problem():
    from archbuilder.errors import SpecError
    from archbuilder.plan.validate import load_checked_spec

    with pytest.raises(SpecError) as caught:
        load_checked_spec(TINY_SPEC, ["training." + ".".join(["a"] * 500) + "=1"])
    assert len(caught.value.problems) == 1 and "keys" in str(caught.value), str(caught.value)


def test_predict_refuses_a_model_file_whose_class_names_are_not_a_list(tmp_path, tiny_model, photos):
    bad = tmp_path / "bad.keras"
    shutil.copy(tiny_model, bad)
    with zipfile.ZipFile(bad, "a") as archive:
        archive.writestr("archbuilder.json", json.dumps({"class_names": 5}))
    _one_clean_line(invoke("predict", bad, next((photos / "0").iterdir())), str(bad), "class_names")


# -- item 11: one case-insensitive suffix table -------------------------------------------------

def test_upper_case_model_suffixes_work_in_predict_and_evaluate(tmp_path, tiny_model, photos):
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.keras.weights_h5 import save_h5

    upper = tmp_path / "TINY.KERAS"
    shutil.copy(tiny_model, upper)
    image = next((photos / "1").iterdir())
    assert invoke("predict", upper, image).exit_code == 0
    assert invoke("evaluate", upper, "--data", photos).exit_code == 0
    h5 = save_h5(open_model_file(tiny_model), tmp_path / "tiny.h5")
    h5_upper = h5.rename(tmp_path / "TINY.H5")
    result = invoke("predict", h5_upper, "--spec", TINY_SPEC, image)
    assert result.exit_code == 0, result.output


# -- item 13: options that were unclear or ignored ----------------------------------------------

def test_predict_on_a_folder_predicts_every_image_in_it(tiny_model, photos):
    result = invoke("predict", tiny_model, photos / "2", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert sorted(Path(r["image"]).name for r in rows) == sorted(p.name for p in (photos / "2").iterdir())


@pytest.mark.parametrize("option", [["--set", "classes=4"], ["--strict"]])
def test_predict_and_evaluate_refuse_spec_options_on_a_keras_file(tiny_model, photos, option):
    image = next((photos / "0").iterdir())
    _one_clean_line(invoke("predict", tiny_model, image, *option), option[0])
    _one_clean_line(invoke("evaluate", tiny_model, "--data", photos, *option), option[0])


def test_evaluate_classes_keeps_only_the_models_classes(tmp_path, photos):
    from archbuilder.keras.model_files import save_model_file

    two = tmp_path / "two.keras"
    save_model_file(_tiny("classes=2"), two, {"class_names": ["0", "1"]})
    result = invoke("evaluate", two, "--data", photos, "--classes", "0,1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["images"] == 6  # 3 photos of each of the two classes


def test_empty_classes_option_is_refused(photos, tmp_path):
    _one_clean_line(invoke("data", "pack", photos, tmp_path / "x.h5", "--classes", ""), "--classes")


def test_a_negative_pack_seed_is_refused_before_any_work(photos, tmp_path):
    # NumPy's generator takes no seed below 0: it was a ValueError traceback after the scan.
    result = invoke("data", "pack", photos, tmp_path / "x.h5", "--holdout-photographers", "0.5", "--seed", "-1")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "--seed" in result.output and not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("args", [
    ["export", "MODEL", "--format", "litert", "--quantize", "int8", "--calibration", ""],  # calibrated on the working folder
    ["export", "MODEL", "--format", "onnx", "--check", "", "--out", "x.onnx"],
    ["build", TINY_SPEC, "--out", ""],  # wrote tiny.keras into the working folder
    ["plot", TINY_SPEC, "--out", ""],
    ["evaluate", "MODEL", "--data", ""],  # read the working folder as the class folder
    ["train", TINY_SPEC, "--data", "PHOTOS", "--out", ""],
    ["predict", "", "PHOTOS"], ["validate", ""], ["data", "pack", "", "x.h5"],
], ids=["calibration", "check", "build-out", "plot-out", "evaluate-data", "train-out", "predict-model", "validate",
        "pack-folder"])
def test_an_empty_path_is_refused_not_read_as_the_working_folder(tmp_path, tiny_model, photos, monkeypatch, args):
    monkeypatch.chdir(tmp_path)  # pathlib reads "" as ".": nothing may be read or written here
    (tmp_path / "images").mkdir()
    shutil.copytree(photos / "0", tmp_path / "images" / "0")  # what "" would have calibrated on
    before = sorted(tmp_path.rglob("*"))
    result = invoke(*[{"MODEL": tiny_model, "PHOTOS": photos}.get(a, a) if isinstance(a, str) else a for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "the path is empty; name a file or folder ('.' for the working folder)" in result.output, result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_a_pack_is_made_of_a_class_folder_not_of_another_pack(photos, tmp_path):
    # An .h5 pack was read whole, past the pack's memory check (an .h5 at --size 20000 ran out of memory).
    first = tmp_path / "first.h5"
    assert invoke("data", "pack", photos, first, "--size", "8").exit_code == 0
    _one_clean_line(invoke("data", "pack", first, tmp_path / "second.h5", "--size", "20000"),
                    f"{first}: is an HDF5 pack; a pack is made of a class folder (one subfolder per class)")
    assert not (tmp_path / "second.h5").exists()


def test_a_holdout_that_leaves_nothing_to_train_on_is_named(photos, tmp_path):
    # Three photographers; 0.99 holds all three out. It said "only one class present", of a folder
    # that has three.
    result = invoke("data", "pack", photos, tmp_path / "x.h5", "--holdout-photographers", "0.99")
    line = _one_clean_line(result, "holding out 0.99 of the photographers (3 of them) leaves no images to train on")
    assert line.endswith("; give a smaller share with --holdout-photographers"), line
    assert not (tmp_path / "x.h5").exists()


# -- item 2: file and folder names that are not UTF-8 --------------------------------------------

def _not_utf8(name: str) -> str:
    return os.fsdecode(b"\xff" + name.encode())


def test_image_files_whose_names_are_not_utf8_are_read(tmp_path, tiny_model, photos):
    root = tmp_path / "data"
    shutil.copytree(photos, root, symlinks=True)
    odd = root / "0" / _not_utf8("photo.jpg")
    os.symlink(next((photos / "0").iterdir()).resolve(), odd)
    # `odd` holds the surrogate that Python makes of the byte 0xff in argv (PEP 383), as a shell passes it.
    result = invoke("predict", tiny_model, odd)
    assert result.exit_code == 0, result.output
    assert "\\xffphoto.jpg" in result.output
    pack = invoke("data", "pack", root, tmp_path / "x.h5", "--size", "16")
    assert pack.exit_code == 0, pack.output
    assert "10 classes" not in pack.output and "(10, 16, 16, 3)" in pack.output  # 3 + 3 + 3 photos + the odd one


def test_a_class_folder_whose_name_is_not_utf8_is_refused_by_name(tmp_path, photos):
    root = tmp_path / "data"
    shutil.copytree(photos, root, symlinks=True)
    (root / "2").rename(root / _not_utf8("two"))
    _one_clean_line(invoke("data", "pack", root, tmp_path / "x.h5", "--size", "16"), "\\xfftwo", "UTF-8")


def test_predict_and_evaluate_with_spec_have_the_memory_flag_their_refusal_names(tmp_path, tiny_model, photos):
    """Item 9: the size guard says "raise it with --max-memory"; with --spec, these commands have it."""
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.keras.weights_h5 import save_h5

    h5 = save_h5(open_model_file(tiny_model), tmp_path / "tiny.h5")
    image = next((photos / "0").iterdir())
    _one_clean_line(invoke("predict", h5, image, "--spec", TINY_SPEC, "--max-memory", "1KiB"),
                    "estimated memory", "--max-memory")
    result = invoke("evaluate", h5, "--data", photos, "--spec", TINY_SPEC, "--max-memory", "1GiB")
    assert result.exit_code == 0, result.output
    _one_clean_line(invoke("predict", tiny_model, image, "--max-memory", "1GiB"), "--max-memory", "--spec")


def test_success_lines_show_file_names_escaped(tmp_path):
    # A spec (or output) named with a newline and a terminal escape: validate's `ok:` line, diff's
    # headers and plot's and build's `Saved` lines printed the name raw, splitting the line and
    # sending the escape to the terminal; error lines escaped it already.
    strange = tmp_path / "n\nl\x1b[31m.yaml"
    shutil.copy(TINY_SPEC, strange)
    escaped = "n\\nl\\x1b[31m"
    results = [invoke("validate", strange), invoke("diff", strange, TINY_SPEC),
               invoke("build", strange, "--out", tmp_path / "out\x1b[2J")]
    if shutil.which("dot") is not None:
        results.append(invoke("plot", strange, "--out", tmp_path / "p\x1b[31m.svg"))
    for result in results:
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output, result.output
    assert f"ok: {tmp_path}/{escaped}.yaml: tiny," in results[0].output
    assert f"A: {tmp_path}/{escaped}.yaml (tiny)" in results[1].output
    assert f"Saved {tmp_path}/out\\x1b[2J/tiny.keras" in results[2].output


def test_outputs_never_land_in_the_data_or_on_a_photo(tmp_path, photos):
    # `data pack FOLDER OUT` overwrote whatever OUT named, a photo of FOLDER included; a run folder
    # or pack written inside the data folder became a "class" the next command choked on.
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    photo = sorted((data / "0").iterdir())[0]
    before = photo.read_bytes()
    (tmp_path / "notes.h5").write_text("not a pack")
    spec = str(TINY_SPEC)
    cases = [
        (["data", "pack", data, photo], "an HDF5 pack is written to a file ending in .h5"),
        (["data", "pack", data, data / "0" / "x.h5"], "is inside the data folder"),
        (["data", "pack", data, tmp_path / "notes.h5"], "exists and is not an HDF5 file"),
        (["data", "pack", data, data / "recs", "--format", "tfrecord"], "is inside the data folder"),
        (["train", spec, "--data", data, "--out", data / "0" / "run"], "is inside the data folder"),
        (["train", spec, "--data", photos, "--test", data, "--out", data / "run"], "is inside the data folder"),
    ]
    for args, needle in cases:
        _one_clean_line(invoke(*args), needle)
    assert photo.read_bytes() == before and (tmp_path / "notes.h5").read_text() == "not a pack"
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in photos.iterdir())
    assert sorted(p.name for p in (data / "0").iterdir()) == sorted(p.name for p in (photos / "0").iterdir())


def test_a_pack_larger_than_the_memory_limit_is_refused_before_decoding(tmp_path, photos):
    # `data pack --size 100000` asked NumPy for 671 GiB and died with a traceback.
    import archbuilder
    from archbuilder.errors import UserError

    from archbuilder.plan.size_guard import format_bytes

    images = sum(1 for path in photos.rglob("*") if path.is_file())
    _one_clean_line(invoke("data", "pack", photos, tmp_path / "big.h5", "--size", "100000"),
                    f"{images} images at 100000x100000x3 hold an estimated {format_bytes(images * 3 * 10**10)}",
                    "ARCHBUILDER_MAX_MEMORY")
    assert not (tmp_path / "big.h5").exists()
    for channels in ("3", None, 2):  # a text, nothing, a count no image file has
        with pytest.raises(UserError, match="channels: expected"):
            archbuilder.api.pack_data(photos, tmp_path / "c.h5", channels=channels)


@pytest.mark.parametrize("command", ["train", "evaluate", "pack", "pack-records"])
def test_a_cache_folder_inside_the_data_is_refused_before_anything_is_written(tmp_path, photos, tiny_model,
                                                                              monkeypatch, command):
    # XLA's cache folder was made inside the data folder before the data was listed: that run
    # failed on it, and every later run on that data too ("class folder 'xla-...' holds no images").
    # Every command that runs TensorFlow makes it (xla_cache.py), evaluate and the packs too.
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    monkeypatch.setenv("ARCHBUILDER_CACHE_DIR", str(data / "cache"))
    args = {"train": ["train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run"],
            "evaluate": ["evaluate", tiny_model, "--data", data],
            "pack": ["data", "pack", data, tmp_path / "run.h5"],
            "pack-records": ["data", "pack", data, tmp_path / "run", "--format", "tfrecord"]}[command]
    _one_clean_line(invoke(*args), f"the cache folder (ARCHBUILDER_CACHE_DIR, else ~/.cache/archbuilder) {data / 'cache'}: "
                                   f"is inside the data folder {data}")
    assert sorted(p.name for p in data.iterdir()) == sorted(p.name for p in photos.iterdir())
    assert not any(tmp_path.glob("run*"))


@pytest.mark.parametrize("command", ["train", "pack"])
def test_a_holdout_of_nan_is_refused_in_the_command_line_s_words(tmp_path, photos, command):
    # click's FloatRange let "nan" through; the API then refused it as `holdout_photographers:`.
    args = (["train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run"] if command == "train"
            else ["data", "pack", photos, tmp_path / "p.h5"])
    result = invoke(*args, "--holdout-photographers", "nan")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--holdout-photographers': 'nan' is not a number between 0 and 1." in result.output
    if command == "train":  # the same for --worker-timeout, refused as `worker_timeout:` before
        result = invoke(*args[:-2], "--worker-timeout", "nan")
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--worker-timeout': 'nan' is not a number of at least 1." in result.output
    assert "holdout_photographers:" not in result.output


def test_a_model_that_outputs_nan_is_said_so_and_json_stays_json(tmp_path, tiny_model, photos):
    # A training that diverged leaves NaN weights: export "checked" it (max |p - p_keras| = nan, no
    # warning: NaN > tolerance is False), and --json printed the bare word NaN, which is no JSON.
    import archbuilder

    model = archbuilder.load_model(tiny_model)
    layer = [layer for layer in model.layers if layer.weights][-1]
    weights = layer.get_weights()
    weights[0][:] = np.nan
    layer.set_weights(weights)
    nan_model = archbuilder.api.save(model, tmp_path / "nan.keras")

    def strict_json(text):
        return json.loads(text, parse_constant=lambda word: pytest.fail(f"{word} is not JSON"))

    result = invoke("export", nan_model, "--format", "onnx", "--out", tmp_path / "nan.onnx")
    assert result.exit_code == 0, result.output
    assert "warning: Keras or the export gives NaN or infinity on these inputs" in result.output
    result = invoke("predict", nan_model, photos / "0", "--json")
    assert result.exit_code == 0, result.output
    rows = [strict_json(line) for line in result.output.strip().splitlines()]
    assert rows and all(value is None for row in rows for value in row["probabilities"].values()), rows[0]
    result = invoke("evaluate", nan_model, "--data", photos, "--json")
    assert result.exit_code == 0, result.output
    assert strict_json(result.output)["loss"] is None
