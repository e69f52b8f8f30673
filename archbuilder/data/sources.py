"""Turn `--data` / `--test` arguments (a class-folder or a SIGNS .h5 file) into labelled uint8 images
at the model's input shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbuilder.data.folder import LabelledFiles, scan_image_folder
from archbuilder.data.hdf5 import LabelledImages, read_signs_h5
from archbuilder.data.split import group_holdout, photographer_groups
from archbuilder.errors import UserError, quoted_list, shown
from archbuilder.file_kinds import is_h5

@dataclass(frozen=True)
class TrainingData:
    train: LabelledImages
    test: LabelledImages | None
    test_origin: str | None  # what the test set is, for messages and metrics.json


def select_classes(names: tuple[str, ...], wanted: tuple[str, ...] | None, origin: str) -> list[int] | None:
    """Indices of `wanted` in `names` (in data order), or None to keep all."""
    if not wanted:
        return None
    unknown = [w for w in wanted if w not in names]
    if unknown:
        word = "class" if len(unknown) == 1 else "classes"
        raise UserError(f"{origin}: no {word} {quoted_list(unknown)}; the classes are {', '.join(names)}")
    if len(set(wanted)) < 2:
        raise UserError("--classes needs at least two classes")
    return [i for i, name in enumerate(names) if name in wanted]


def _keep_classes(labels: np.ndarray, keep: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(indices of images to keep, their labels renumbered 0..len(keep)-1)."""
    remap = np.full(labels.max() + 1 if len(labels) else 0, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    indices = np.flatnonzero(np.isin(labels, keep))
    return indices, remap[labels[indices]]


def _keep_files(files: LabelledFiles, keep: list[int]) -> tuple[LabelledFiles, np.ndarray]:
    """The files of the classes `keep`, relabelled, and their indices in `files`."""
    indices, labels = _keep_classes(files.labels, keep)
    kept = LabelledFiles(tuple(files.paths[i] for i in indices), labels, tuple(files.class_names[i] for i in keep))
    return kept, indices


def _files_to_images(files: LabelledFiles, shape) -> LabelledImages:
    from archbuilder.data.images import load_image_files

    return LabelledImages(load_image_files(files.paths, shape), files.labels, files.class_names)


def _h5_split(path: str, preferred: str, shape) -> tuple[LabelledImages, dict[str, LabelledImages]]:
    from archbuilder.data.images import fit_arrays

    splits = read_signs_h5(path)
    splits = {k: LabelledImages(fit_arrays(v.x, shape, path), v.y, v.class_names) for k, v in splits.items()}
    chosen = preferred if preferred in splits else next(iter(splits))
    return splits[chosen], splits


def _filter(images: LabelledImages, classes: tuple[str, ...] | None, origin: str) -> LabelledImages:
    keep = select_classes(images.class_names, classes, origin)
    if keep is None:
        return images
    indices, labels = _keep_classes(images.y, keep)
    return LabelledImages(images.x[indices], labels, tuple(images.class_names[i] for i in keep))


def _check_classes(images: LabelledImages, origin: str) -> None:
    present = np.unique(images.y)
    if len(present) < 2:
        raise UserError(f"{origin}: only one class present; a classifier needs at least two")


def training_data(
    data: str,
    test: str | None,
    shape: tuple[int, int, int],
    *,
    holdout_photographers: float | None = None,
    seed: int = 0,
    classes: tuple[str, ...] | None = None,
    skip_bad_images: bool = False,
) -> TrainingData:
    """Training images and (if any) test images, decoded at `shape`.

    The test set is `test` if given, else the `test_set_*` of an .h5 `data` that has one, else
    whole photographers held out of a folder `data` (`holdout_photographers` > 0), else none.
    """
    classes_wanted = classes
    if holdout_photographers and (test or is_h5(data)):
        raise UserError("--holdout-photographers splits a class folder; it can't be combined with --test or an .h5 file")
    test_set, test_origin = None, None
    if is_h5(data):
        train, splits = _h5_split(data, "train", shape)
        if "test" in splits and test is None and splits["test"] is not train:
            test_set, test_origin = splits["test"], f"{data} (test_set_*)"
    else:
        folder = folder_split(data, shape, classes, skip_bad_images, holdout_photographers, seed)
        if folder.held is not None:
            all_images = _files_to_images(folder.files, shape)
            train, test_set = all_images.subset(folder.kept), all_images.subset(folder.held)
            test_origin = (
                f"{_count(folder.photographers_held, 'photographer')} held out of {data} "
                f"({len(folder.held)} images, seed {seed})"
            )
        else:
            train = _files_to_images(folder.files, shape)
        classes = None  # already applied
    train = _filter(train, classes, data)
    _check_classes(train, data)
    if test is not None:
        test_set = evaluation_data(test, shape, train.class_names, keep_only_known=bool(classes_wanted))
        test_origin = test
    elif test_set is not None and classes:
        test_set = _filter(test_set, classes, data)
    return TrainingData(train, test_set, test_origin)


@dataclass(frozen=True)
class FolderSplit:
    """A class folder's files as `train` reads them, and (with a holdout) which photographers'."""

    files: LabelledFiles
    kept: np.ndarray | None = None  # indices into `files`; None without a holdout
    held: np.ndarray | None = None
    photographers_held: int = 0


def folder_split(data: str, shape, classes: tuple[str, ...] | None, skip_bad_images: bool,
                 holdout_photographers: float | None, seed: int) -> FolderSplit:
    """The files of a class folder that `train` uses, and its photographer split when asked.

    Photographers are found over the whole folder (shooting order across classes), before the
    classes are narrowed, so a subset keeps the same people apart.
    """
    files = scan_image_folder(data)
    if skip_bad_images:
        files = _without_bad_images(files, shape)
    keep = select_classes(files.class_names, classes, data)
    groups = photographer_groups(files.paths, files.labels) if holdout_photographers else None
    if keep is not None:
        files, indices = _keep_files(files, keep)
        if groups is not None:
            groups = groups[indices]
    if groups is None:
        return FolderSplit(files)
    kept, held = group_holdout(groups, holdout_photographers, seed)
    return FolderSplit(files, kept, held, len(np.unique(groups[held])))


def _without_bad_images(files: LabelledFiles, shape) -> LabelledFiles:
    """`files` less those that cannot be read or decoded, each named in a warning (--skip-bad-images)."""
    import sys

    from archbuilder.data.images import bad_image_files

    bad = dict(bad_image_files(files.paths, shape))
    for name, reason in bad.items():
        print(f"warning: skipping {name}: not a readable image ({reason})", file=sys.stderr, flush=True)
    return files.subset(np.asarray([i for i, p in enumerate(files.paths) if shown(p) not in bad], dtype=np.int64))


def evaluation_data(
    data: str, shape: tuple[int, int, int], model_classes: tuple[str, ...], preferred: str = "test",
    keep_only_known: bool = False, classes: tuple[str, ...] | None = None,
) -> LabelledImages:
    """Images of `data` with labels renumbered into `model_classes` by class name.

    `data` may hold a subset of the model's classes; a class the model doesn't know is an error,
    or, with `keep_only_known` (training with --classes), left out. `classes` (evaluate
    --classes) keeps only those classes of `data`.
    """
    if is_h5(data):
        images, _ = _h5_split(data, preferred, shape)
        images = _filter(images, classes, data)
    else:
        files = scan_image_folder(data)
        keep = select_classes(files.class_names, classes, data)
        if keep is not None:  # decode only the images that are used
            files, _ = _keep_files(files, keep)
        images = _files_to_images(files, shape)
    if keep_only_known:
        images = _filter(images, tuple(n for n in images.class_names if n in model_classes), data)
    unknown = [name for name in images.class_names if name not in model_classes]
    if unknown:
        raise UserError(
            f"{data}: {'class' if len(unknown) == 1 else 'classes'} {quoted_list(unknown)} "
            f"{'is not one' if len(unknown) == 1 else 'are not'} of the model's classes ({', '.join(model_classes)})"
        )
    remap = np.asarray([model_classes.index(name) for name in images.class_names], dtype=np.int64)
    return LabelledImages(images.x, remap[images.y], tuple(model_classes))


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
