"""Reading images: class folders, the SIGNS HDF5 layout, splits, and each bad input's message."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pytest

from archbuilder.data.folder import scan_image_folder
from archbuilder.data.hdf5 import read_signs_h5
from archbuilder.data.split import group_holdout, photographer_groups, stratified_split
from archbuilder.errors import UserError
from train_support import IMAGES, TINY_SPEC, image_folder, invoke, run_cli_in_process


def test_the_shared_folder_reads_as_ten_classes_in_numeric_order():
    files = scan_image_folder(IMAGES)
    assert files.class_names == tuple(str(i) for i in range(10))
    assert len(files.paths) == 1762
    assert np.bincount(files.labels).min() > 150


def test_photographer_split_keeps_every_photographer_on_one_side():
    files = scan_image_folder(IMAGES)
    groups = photographer_groups(files.paths, files.labels)
    assert 150 < len(np.unique(groups)) < 250  # "about 200 groups, most of ten images"
    kept, held = group_holdout(groups, 0.15, seed=0)
    assert not set(groups[kept]) & set(groups[held])
    assert 0.14 < len(held) / len(files.paths) < 0.2
    assert np.array_equal(group_holdout(groups, 0.15, seed=0)[1], held)  # seeded


def test_stratified_split_holds_out_each_class():
    labels = np.repeat(np.arange(3), 10)
    kept, held = stratified_split(labels, 0.2, seed=1)
    assert sorted(np.bincount(labels[held])) == [2, 2, 2]
    assert len(set(kept) | set(held)) == 30


def test_pack_round_trip_gives_the_same_arrays(tmp_path):
    from archbuilder.data.images import load_image_files

    folder = image_folder(tmp_path / "images", per_class=8)
    result = invoke("data", "pack", folder, tmp_path / "signs.h5", "--size", "64")
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "signs.h5") as handle:  # the notebook's load_dataset reads these
        assert sorted(handle) == ["list_classes", "train_set_x", "train_set_y"]
        assert handle["train_set_x"].dtype == np.uint8 and handle["train_set_x"].shape == (24, 64, 64, 3)
        assert list(handle["list_classes"][:]) == [0, 1, 2]
    packed = read_signs_h5(tmp_path / "signs.h5")["train"]
    files = scan_image_folder(folder)
    assert np.array_equal(packed.x, load_image_files(files.paths, (64, 64, 3)))
    assert np.array_equal(packed.y, files.labels)
    assert packed.class_names == ("0", "1", "2")


def test_pack_with_held_out_photographers_writes_both_splits(tmp_path):
    result = invoke("data", "pack", IMAGES, tmp_path / "s.h5", "--size", "16", "--classes", "0,1,2,3,4,5",
                    "--holdout-photographers", "0.15")
    assert result.exit_code == 0, result.output
    splits = read_signs_h5(tmp_path / "s.h5")
    assert set(splits) == {"train", "test"}
    assert splits["train"].class_names == tuple("012345")
    assert 0.12 < len(splits["test"]) / (len(splits["train"]) + len(splits["test"])) < 0.2


def _h5(path, **datasets):
    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            handle.create_dataset(name, data=value)
    return path


def test_h5_without_expected_datasets_is_refused(tmp_path):
    with pytest.raises(UserError, match="no 'list_classes' dataset.*found: images"):
        read_signs_h5(_h5(tmp_path / "a.h5", images=np.zeros((2, 4, 4, 3), np.uint8)))
    with pytest.raises(UserError, match="no image datasets"):
        read_signs_h5(_h5(tmp_path / "b.h5", list_classes=np.arange(2)))
    with pytest.raises(UserError, match="has train_set_\\* but no 'train_set_y'"):
        read_signs_h5(_h5(tmp_path / "c.h5", list_classes=np.arange(2), train_set_x=np.zeros((2, 4, 4, 3), np.uint8)))
    (tmp_path / "d.h5").write_text("not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        read_signs_h5(tmp_path / "d.h5")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "no such folder"),
        (lambda root: root, "no class subfolders"),
        (lambda root: image_folder(root / "one", classes=("3",), per_class=2), "only one class"),
        (lambda root: _with_empty_class(root), "class folder '2' holds no images"),
        (lambda root: _with_file(root, "notes.txt", b"hello"), "notes.txt: not an image file"),
    ],
    ids=["missing", "empty", "single-class", "empty-class", "non-image"],
)
def test_bad_folders_are_refused_naming_the_problem(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        scan_image_folder(make(tmp_path))


def test_a_corrupt_image_is_named(tmp_path):
    from archbuilder.data.images import load_image_files

    root = _with_file(tmp_path, "broken.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg")
    files = scan_image_folder(root)
    with pytest.raises(UserError, match=r"broken\.jpg: not a readable image"):
        load_image_files(files.paths, (32, 32, 3))


def test_cli_exit_code_2_and_no_traceback_for_bad_data(tmp_path):
    result = run_cli_in_process("data", "pack", tmp_path / "nowhere", tmp_path / "out.h5")
    assert result.returncode == 2
    assert "nowhere: no such folder" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.h5").exists()


def _with_empty_class(root):
    image_folder(root / "data", classes=("0", "1"), per_class=2)
    (root / "data" / "2").mkdir()
    return root / "data"


def _with_file(root, name, content):
    image_folder(root / "data", classes=("0", "1"), per_class=2)
    (root / "data" / "1" / name).write_bytes(content)
    return root / "data"


def test_classes_option_filters_the_test_set_too(tmp_path):
    from archbuilder.data.sources import training_data

    folder = image_folder(tmp_path / "images", per_class=3)
    loaded = training_data(str(folder), str(folder), (16, 16, 3), classes=("0", "2"))
    assert loaded.train.class_names == loaded.test.class_names == ("0", "2")
    assert sorted(set(loaded.test.y.tolist())) == [0, 1] and len(loaded.test) == 6


# ImageNet as distributed: synset folders (`n01440764/n01440764_10026.JPEG`), a separate validation
# folder, and LOC_synset_mapping.txt beside them. Two synsets share the name "crane" (the bird and
# the machine), as in the real map.
_SYNSET_MAP = ("n01440764 tench, Tinca tinca\n"
               "n01443537 goldfish, Carassius auratus\n"
               "n02012849 crane\n"
               "n03126707 crane\n")
_SYNSETS = {"n01440764": "0", "n02012849": "1", "n03126707": "2"}  # folder -> the sign photos it holds


def _imagenet_layout(root, per_class=6):
    for split, photos in (("train", slice(0, per_class)), ("val", slice(per_class, per_class + 2))):
        for synset, digit in _SYNSETS.items():
            (root / split / synset).mkdir(parents=True)
            for index, source in enumerate(sorted((IMAGES / digit).iterdir())[photos]):
                (root / split / synset / f"{synset}_{index}.JPEG").symlink_to(source.resolve())
    (root / "LOC_synset_mapping.txt").write_text(_SYNSET_MAP)
    return root


def test_imagenet_layout_trains_and_evaluates_with_the_map_s_readable_names(tmp_path):
    root = _imagenet_layout(tmp_path / "imagenet")
    names = ("tench", "crane (n02012849)", "crane (n03126707)")
    assert scan_image_folder(root / "val").class_names == names  # the map above val/ too
    run = tmp_path / "run"
    result = invoke("train", TINY_SPEC, "--data", root / "train", "--test", root / "val", "--out", run,
                    "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert (run / "classes.txt").read_text().splitlines() == list(names)
    assert json.loads((run / "run.json").read_text())["class_names"] == list(names)
    predicted = invoke("predict", run / "best.keras", next((root / "val" / "n01440764").iterdir()))
    assert predicted.exit_code == 0 and "p(tench), p(crane (n02012849)), p(crane (n03126707))" in predicted.output
    evaluated = invoke("evaluate", run / "best.keras", "--data", root / "val", "--json")
    assert evaluated.exit_code == 0, evaluated.output


@pytest.mark.parametrize(
    "text, message",
    [
        ("n01440764 tench\nn02012849\n", r"LOC_synset_mapping\.txt:2: expected a class folder's name, a space "
                                         r"and its readable name .*received 'n02012849'"),
        ("n01440764 tench\n\nn01440764 goldfish\n", r"LOC_synset_mapping\.txt:3: 'n01440764' is named a second "
                                                    r"time \(first on line 1\)"),
        ("n01440764 tench\nn02012849 ,crane\n", r"LOC_synset_mapping\.txt:2: expected"),
        ("n01440764 tench\nn02012849 crane\n", r"n03126707: class folder 'n03126707' is not in the class-name map"),
    ],
    ids=["no-name", "twice", "empty-name", "folder-missing"],
)
def test_a_malformed_class_name_map_is_one_located_line_exit_2(tmp_path, text, message):
    root = _imagenet_layout(tmp_path / "imagenet", per_class=1)
    (root / "LOC_synset_mapping.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        scan_image_folder(root / "train")
    result = invoke("train", TINY_SPEC, "--data", root / "train", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2 and re.search(message, result.output), result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_class_name_map_that_is_not_utf8_names_its_line(tmp_path):
    root = _imagenet_layout(tmp_path / "imagenet", per_class=1)
    (root / "LOC_synset_mapping.txt").write_bytes(b"n01440764 tench\nn02012849 cr\xe9ne\n")
    with pytest.raises(UserError, match=r"LOC_synset_mapping\.txt:2: not UTF-8 text"):
        scan_image_folder(root / "train")


def test_imagenet_download_layout_with_a_flat_validation_folder_labelled_by_its_csv(tmp_path):
    """ImageNet's download as it unpacks: the maps at the top, `ILSVRC/Data/CLS-LOC/train/<synset>/`
    three folders below them, and `val/` flat, labelled by LOC_val_solution.csv."""
    root = tmp_path / "imagenet"
    images = _imagenet_layout(root / "ILSVRC" / "Data" / "CLS-LOC", per_class=4)
    (images / "LOC_synset_mapping.txt").rename(root / "LOC_synset_mapping.txt")
    rows, number = ["ImageId,PredictionString"], 0
    for synset in _SYNSETS:
        for image in sorted((images / "val" / synset).iterdir()):
            number += 1
            name = f"ILSVRC2012_val_{number:08d}"
            image.rename(images / "val" / f"{name}.JPEG")
            rows.append(f"{name},{synset} 10 20 30 40 {synset} 1 2 3 4 ")
        (images / "val" / synset).rmdir()
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")

    val = scan_image_folder(images / "val")
    assert val.class_names == ("tench", "crane (n02012849)", "crane (n03126707)")
    assert val.labels.tolist() == [0, 0, 1, 1, 2, 2]
    result = invoke("train", TINY_SPEC, "--data", images / "train", "--test", images / "val", "--out", tmp_path / "run",
                    "--epochs", "1", "--quiet")
    assert result.exit_code == 0, result.output
    assert "testing on 6" in result.output

    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,\n")
    broken = invoke("evaluate", tmp_path / "run" / "best.keras", "--data", images / "val")
    assert broken.exit_code == 2 and "LOC_val_solution.csv:2: expected" in broken.output, broken.output
