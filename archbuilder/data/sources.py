"""Turn `--data` / `--test` arguments (a class-folder or a SIGNS .h5 file) into labelled uint8 images
at the model's input shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archbuilder.data.cache_choice import MemoryBudget
from archbuilder.data.folder import LabelledFiles, scan_image_folder
from archbuilder.data.hdf5 import LabelledImages, read_signs_h5
from archbuilder.data.images import max_image_pixels
from archbuilder.data.records import is_records
from archbuilder.data.split import group_holdout, photographer_groups
from archbuilder.errors import Remedy, UserError, quoted_list, shown
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
        raise UserError("", Remedy("{classes} needs at least two classes"))
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


def _files_to_images(files: LabelledFiles, shape, cache: str = "memory", orientations: np.ndarray | None = None,
                     skip_bad_images: bool = False) -> LabelledImages:
    """The images of `files`: decoded into memory (`cache` memory), else a stream.ImageFiles
    (`orientations` from their headers), read through a disk cache with `cache` disk."""
    if cache == "memory":
        from archbuilder.data.images import load_image_files

        return LabelledImages(load_image_files(files.paths, shape, orientations), files.labels, files.class_names)
    from archbuilder.data.stream import ImageFiles

    x = ImageFiles(files.paths, orientations, shape, skip_bad=skip_bad_images)
    if cache == "disk":
        from archbuilder.data.disk_cache import cached

        x = cached(x)
    return LabelledImages(x, files.labels, files.class_names)


def _records(data: str, shape, skip_bad_images: bool, cache: str, memory: MemoryBudget) -> LabelledImages:
    """Record shards (data.records), streamed; with `cache` memory (or auto, where they fit), decoded
    into memory. They are packed already: `disk` reads them as they are."""
    from archbuilder.data.records import read_records

    images = read_records(data, shape, skip_bad_images)
    if memory.choose(cache, len(images), shape, data) != "memory":
        return images
    return LabelledImages(np.asarray(images.x), images.y, images.class_names)


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


def _check_left_to_train(train: LabelledImages, fraction: float, photographers_held: int, origin: str) -> None:
    """A holdout large enough to leave one class (or nothing) to train on is named as such, not as a
    folder of one class: the folder has them all, the share held out took the rest."""
    if len(np.unique(train.y)) >= 2:
        return
    left = "no images" if len(train.y) == 0 else f"{_count(len(train.y), 'image')} of one class"
    raise UserError(f"{shown(origin)}: holding out {fraction} of the photographers ({photographers_held} of them) "
                    f"leaves {left} to train on; a classifier needs at least two classes",
                    Remedy("; give a smaller share with {holdout_photographers}"))


def training_data(
    data: str,
    test: str | None,
    shape: tuple[int, int, int],
    *,
    holdout_photographers: float | None = None,
    seed: int = 0,
    classes: tuple[str, ...] | None = None,
    skip_bad_images: bool = False,
    cache: str = "memory",
    memory: MemoryBudget | None = None,
) -> TrainingData:
    """Training images and (if any) test images, decoded at `shape`.

    The test set is `test` if given, else the `test_set_*` of an .h5 `data` that has one, else
    whole photographers held out of a folder `data` (`holdout_photographers` > 0), else none.
    Images of folders are held or streamed as `cache` (data.cache_choice) says, within `memory`;
    an .h5 file's arrays are always held (h5py reads them whole).
    """
    memory = memory or MemoryBudget(None)
    max_image_pixels()  # a bad ARCHBUILDER_MAX_IMAGE_PIXELS named here, not inside tf.data's trace
    classes_wanted = classes
    if holdout_photographers and (test or is_h5(data) or is_records(data)):
        raise UserError("--holdout-photographers splits a class folder; it can't be combined with --test, an .h5 file "
                        "or record files")
    test_set, test_origin = None, None
    if is_h5(data):
        train, splits = _h5_split(data, "train", shape)
        if "test" in splits and test is None and splits["test"] is not train:
            test_set, test_origin = splits["test"], f"{data} (test_set_*)"
    elif is_records(data):
        train = _records(data, shape, skip_bad_images, cache, memory)
    else:
        folder = folder_split(data, shape, classes, skip_bad_images, holdout_photographers, seed,
                              lambda count: memory.choose(cache, count, shape, data))
        if folder.held is not None:
            all_images = _files_to_images(folder.files, shape, folder.cache, folder.orientations, skip_bad_images)
            train, test_set = all_images.subset(folder.kept), all_images.subset(folder.held)
            _check_left_to_train(train, holdout_photographers, folder.photographers_held, data)
            test_origin = (
                f"{_count(folder.photographers_held, 'photographer')} held out of {data} "
                f"({len(folder.held)} images, seed {seed})"
            )
        else:
            train = _files_to_images(folder.files, shape, folder.cache, folder.orientations, skip_bad_images)
        classes = None  # already applied
    train = _filter(train, classes, data)
    _check_classes(train, data)
    if test is not None:
        test_set = evaluation_data(test, shape, train.class_names, keep_only_known=bool(classes_wanted),
                                   cache=cache, memory=memory)
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
    cache: str = "memory"  # data.cache_choice: how the files' images are to be read
    orientations: np.ndarray | None = None  # EXIF orientation per file, where headers were read


def folder_split(data: str, shape, classes: tuple[str, ...] | None, skip_bad_images: bool,
                 holdout_photographers: float | None, seed: int, choose_cache=None) -> FolderSplit:
    """The files of a class folder that `train` uses, and its photographer split when asked.

    Photographers are found over the whole folder (shooting order across classes), before the
    classes are narrowed, so a subset keeps the same people apart. `choose_cache` (number of
    images -> cache choice) decides how they are read; held in memory (the default), every image
    is decoded once now, which names every bad file (or skips it, with `skip_bad_images`);
    streamed, only the headers are read now (stream.read_headers).
    """
    files = scan_image_folder(data, skip_non_images=skip_bad_images)
    keep = select_classes(files.class_names, classes, data)
    used = len(files.paths) if keep is None else int(np.isin(files.labels, keep).sum())
    cache = choose_cache(used) if choose_cache else "memory"
    orientations = None
    if cache == "memory":
        if skip_bad_images:
            files = _without_bad_images(files, shape)
    else:
        files, orientations = _with_image_headers(files, skip_bad_images)
    groups = photographer_groups(files.paths, files.labels) if holdout_photographers else None
    if keep is not None:
        files, indices = _keep_files(files, keep)
        if groups is not None:
            groups = groups[indices]
        if orientations is not None:
            orientations = orientations[indices]
    if groups is None:
        return FolderSplit(files, cache=cache, orientations=orientations)
    kept, held = group_holdout(groups, holdout_photographers, seed)
    return FolderSplit(files, kept, held, len(np.unique(groups[held])), cache, orientations)


def _with_image_headers(files: LabelledFiles, skip_bad_images: bool) -> tuple[LabelledFiles, np.ndarray]:
    """`files` and their EXIF orientations, read from their headers; a file whose header is no
    image's is an error naming it, or with `skip_bad_images` left out with a warning."""
    import sys

    from archbuilder.data.stream import bad_headers_message, read_headers

    orientations, problems = read_headers(files.paths)
    if not problems:
        return files, orientations
    if not skip_bad_images:
        raise UserError(bad_headers_message(files.paths, problems))
    for index, reason in problems:
        print(f"warning: skipping {shown(files.paths[index])}: not a readable image ({reason})", file=sys.stderr, flush=True)
    good = np.setdiff1d(np.arange(len(files.paths)), [index for index, _ in problems])
    return files.subset(good), orientations[good]


def _without_bad_images(files: LabelledFiles, shape) -> LabelledFiles:
    """`files` less those that cannot be read or decoded, each named in a warning (--skip-bad-images)."""
    import sys

    from archbuilder.data.images import bad_image_files

    bad = bad_image_files(files.paths, shape)
    for _, name, reason in bad:
        print(f"warning: skipping {name}: not a readable image ({reason})", file=sys.stderr, flush=True)
    skipped = {position for position, _, _ in bad}
    return files.subset(np.asarray([i for i in range(len(files.paths)) if i not in skipped], dtype=np.int64))


def evaluation_data(
    data: str, shape: tuple[int, int, int], model_classes: tuple[str, ...], preferred: str = "test",
    keep_only_known: bool = False, classes: tuple[str, ...] | None = None, cache: str = "memory",
    memory: MemoryBudget | None = None,
) -> LabelledImages:
    """Images of `data` with labels renumbered into `model_classes` by class name.

    `data` may hold a subset of the model's classes; a class the model doesn't know is an error,
    or, with `keep_only_known` (training with --classes), left out. `classes` (evaluate
    --classes) keeps only those classes of `data`. A folder's images are held or streamed as
    `cache` says (training_data); a bad file is always an error naming it.
    """
    max_image_pixels()  # a bad ARCHBUILDER_MAX_IMAGE_PIXELS named here, not inside tf.data's trace
    if is_h5(data):
        images, _ = _h5_split(data, preferred, shape)
        images = _filter(images, classes, data)
    elif is_records(data):
        images = _filter(_records(data, shape, False, cache, memory or MemoryBudget(None)), classes, data)
    else:
        files = scan_image_folder(data)
        keep = select_classes(files.class_names, classes, data)
        if keep is not None:  # decode only the images that are used
            files, _ = _keep_files(files, keep)
        chosen = (memory or MemoryBudget(None)).choose(cache, len(files.paths), shape, data)
        orientations = None
        if chosen != "memory":
            files, orientations = _with_image_headers(files, skip_bad_images=False)
        images = _files_to_images(files, shape, chosen, orientations)
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
