"""A folder with one subfolder per class, e.g. `images/0/IMG_1118.JPG`, `images/1/...`.

    >>> files = scan_image_folder("../shared/datasets/sign-language-digits/images")
    >>> files.class_names[:3], len(files.paths)
    (('0', '1', '2'), 1762)

Class names are the subfolder names, in numeric order when they are all integers ("2" before
"10"), otherwise alphabetical. Hidden files and folders (".DS_Store") are skipped; any other
file that is not an image is an error naming it, so nothing is silently left out.

ImageNet's layout as distributed: class folders named by synset (`train/n01440764/...`) and a
class-name map, `LOC_synset_mapping.txt` ("n01440764 tench, Tinca tinca" per line), in the class
folder itself or in a folder above it (the nearest; one copy serves `train/` and `val/`); the
validation images either in the same class folders or flat in one folder, labelled by
`LOC_val_solution.csv` found the same way (VAL_SOLUTION, as in ImageNet's download). With a map,
the classes keep the folders' order and each takes the map's first name for its folder ("tench"),
or that name and the folder's where two classes would share one ("crane (n02012849)" and
"crane (n03126707)"): the names in classes.txt, run.json, model files and `predict`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archbuilder.errors import UserError, abbreviated, shown
from archbuilder.file_kinds import IMAGE_SUFFIXES, is_image

_PROGRESS_EVERY = 50_000  # files between two progress lines while a large folder is listed
CLASS_MAP = "LOC_synset_mapping.txt"  # ImageNet's own name for its class-name map
VAL_SOLUTION = "LOC_val_solution.csv"  # ImageNet's labels of its flat validation folder

@dataclass(frozen=True)
class LabelledFiles:
    paths: tuple[Path, ...]
    labels: np.ndarray  # int64 index into class_names, one per path
    class_names: tuple[str, ...]

    def subset(self, indices: np.ndarray) -> "LabelledFiles":
        return LabelledFiles(tuple(self.paths[i] for i in indices), self.labels[indices], self.class_names)


def class_order(names: list[str]) -> list[str]:
    if all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def scan_image_folder(folder: str | os.PathLike, skip_non_images: bool = False) -> LabelledFiles:
    """The image files of `folder`'s class folders; a file that is no image by its name (notes.txt,
    Thumbs.db) is an error, or with `skip_non_images` (--skip-bad-images) left out with a warning."""
    root = Path(folder)
    if not root.exists():
        raise UserError(f"{root}: no such folder")
    if not root.is_dir():
        raise UserError(f"{root}: not a folder (expected one subfolder of images per class)")
    class_dirs = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if not class_dirs and (solution := _beside(root, VAL_SOLUTION)) is not None:
        return _flat_validation_folder(root, solution)
    if not class_dirs:
        raise UserError(f"{root}: no class subfolders (expected one subfolder of images per class)")
    if len(class_dirs) == 1:
        raise UserError(
            f"{root}: only one class ({next(iter(class_dirs))!r}); a classifier needs at least two "
            "class subfolders"
        )
    for name, folder_path in class_dirs.items():
        problem = class_name_problem(name)
        if problem:
            raise UserError(f"{shown(folder_path)}: the class folder's name {problem}; rename it")
    names = class_order(list(class_dirs))
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(names):
        found = []
        # scandir: the entries' kinds come with the listing, no stat per file (a million files list in seconds)
        with os.scandir(class_dirs[name]) as entries:
            listed = sorted(entries, key=lambda entry: entry.name)
        for entry in listed:
            if entry.name.startswith("."):
                continue
            path = class_dirs[name] / entry.name
            if _is_folder(entry):
                raise UserError(f"{shown(path)}: unexpected folder inside class folder {name!r}")
            if not is_image(path):
                reason = f"{shown(path)}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})"
                if not skip_non_images:
                    raise UserError(reason)
                print(f"warning: skipping {reason}", file=sys.stderr, flush=True)
                continue
            found.append(path)
        if not found:
            raise UserError(f"{class_dirs[name]}: class folder {name!r} holds no images")
        if len(paths) // _PROGRESS_EVERY != (len(paths) + len(found)) // _PROGRESS_EVERY:
            print(f"listed {len(paths) + len(found)} image files in {index + 1} of {len(names)} class folders",
                  file=sys.stderr, flush=True)
        paths.extend(found)
        labels.extend([index] * len(found))
    return LabelledFiles(tuple(paths), np.asarray(labels, dtype=np.int64), readable_class_names(root, names))


def _is_folder(entry: os.DirEntry) -> bool:
    """Whether a listed entry is a folder; a symlink loop (ELOOP) is not one, as pathlib says of it:
    it is listed as a file and its read fails with the reading's own message (or is skipped)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def readable_class_names(root: Path, folders: list[str]) -> tuple[str, ...]:
    """The class names of the class folders `folders` of `root`: the folder names, or their names
    in a class-name map beside them (CLASS_MAP, in `root` or the nearest folder above it)."""
    found = _beside(root, CLASS_MAP)
    if found is None:
        return tuple(folders)
    names = read_class_map(found)
    unnamed = [folder for folder in folders if folder not in names]
    if unnamed:
        raise UserError(f"{shown(root / unnamed[0])}: class folder {unnamed[0]!r} is not in the class-name map "
                        f"{shown(found)}" + (f" (nor are {len(unnamed) - 1} more)" if len(unnamed) > 1 else ""))
    chosen = [names[folder] for folder in folders]
    shared = {name for name in chosen if chosen.count(name) > 1}
    return tuple(f"{name} ({folder})" if name in shared else name for name, folder in zip(chosen, folders))


def _beside(root: Path, name: str) -> Path | None:
    """The file `name` in `root` or the nearest folder above it (ImageNet's download keeps its maps
    at the top, three folders above `ILSVRC/Data/CLS-LOC/train`); None if there is none."""
    for folder in (root, *root.resolve().parents):
        if (folder / name).is_file():
            return folder / name
    return None


def _flat_validation_folder(root: Path, solution: Path) -> LabelledFiles:
    """ImageNet's validation images as distributed, in one folder (`ILSVRC2012_val_00000001.JPEG`),
    labelled by `LOC_val_solution.csv` ("ImageId,PredictionString": the image's name without its
    suffix, then its boxes, each "synset x0 y0 x1 y1"; the first box's synset is its class)."""
    labels_of = _read_val_solution(solution)
    with os.scandir(root) as entries:
        listed = sorted(entry.name for entry in entries if not entry.name.startswith("."))
    paths, synsets = [], []
    for name in listed:
        path = root / name
        if not is_image(path):
            raise UserError(f"{shown(path)}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
        synset = labels_of.get(Path(name).stem)
        if synset is None:
            raise UserError(f"{shown(path)}: not in {shown(solution)}, which labels this folder's images")
        paths.append(path)
        synsets.append(synset)
    folders = class_order(sorted(set(synsets)))
    if len(folders) < 2:
        raise UserError(f"{root}: its images are of {len(folders)} class; a classifier needs at least two")
    index = {folder: i for i, folder in enumerate(folders)}
    return LabelledFiles(tuple(paths), np.asarray([index[s] for s in synsets], dtype=np.int64),
                         readable_class_names(root, folders))


def _read_val_solution(path: Path) -> dict[str, str]:
    """{image name without suffix: its synset} from LOC_val_solution.csv; a malformed line is an
    error naming the file and the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{shown(path)}: cannot read the validation labels ({error})") from None
    labels = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (number == 1 and line.startswith("ImageId,")):
            continue
        image, _, boxes = line.partition(",")
        if not image or not boxes.split():
            raise UserError(f"{shown(path)}:{number}: expected \"ImageId,synset x0 y0 x1 y1 ...\"; received {line!r}")
        labels[image.strip()] = boxes.split()[0]
    return labels


def read_class_map(path: Path) -> dict[str, str]:
    """{folder name: its first readable name} from lines "n01440764 tench, Tinca tinca"; a
    malformed line is an error naming the file, the line and what is wrong."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise UserError(f"{shown(path)}: cannot read the class-name map ({error.strerror})") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        raise UserError(f"{shown(path)}:{line}: not UTF-8 text") from None
    names: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        folder, description = (line.split(None, 1) + [""])[:2]
        name = description.split(",")[0].strip()
        where = f"{shown(path)}:{number}"
        if not name:
            raise UserError(f"{where}: expected a class folder's name, a space and its readable name "
                            f"(\"n01440764 tench, Tinca tinca\"); received {line.strip()!r}")
        if folder in names:
            raise UserError(f"{where}: {folder!r} is named a second time (first on line {first_line[folder]})")
        if problem := class_name_problem(name):
            raise UserError(f"{where}: the readable name {problem}")
        names[folder], first_line[folder] = name, number
    if not names:
        raise UserError(f"{shown(path)}: the class-name map names no class")
    return names


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 reach Python as lone surrogates
        return False
    return True


def class_name_problem(name: str) -> str | None:
    """Why `name` cannot be a class name ("is not UTF-8 text", ...), or None when it can.

    Class names go into classes.txt (one a line), model files, HDF5 and what predict and evaluate
    print, as text: bytes that are not UTF-8 cannot be written there, and a line break, a
    terminal escape or another control character would split a line or drive the terminal.
    shown() escapes exactly those characters, so a name it changes holds one."""
    if not _is_utf8(name):
        return "is not UTF-8 text"
    if not name:
        return "is empty"
    if shown(name) != name:
        return "holds a line break or control character"
    return None


def check_class_names(names, where: str, remedy: str = "") -> tuple[str, ...]:
    """`names` as a tuple of class names, or a UserError starting with `where` (the file and the
    field, as the user should see them) and ending with `remedy` naming the first that is not a
    string, cannot be a class name (class_name_problem) or repeats an earlier one (a model's
    classes must be distinct)."""
    seen: set[str] = set()
    for position, name in enumerate(names):
        if not isinstance(name, str):
            raise UserError(f"{where}: entry {position} is {type(name).__name__} {abbreviated(repr(name))}, "
                            f"not a class name{remedy}")
        problem = class_name_problem(name)
        if problem:
            raise UserError(f"{where}: the class name '{shown(name)}' (entry {position}) {problem}{remedy}")
        if name in seen:
            raise UserError(f"{where}: names the class {name!r} twice; class names must be distinct{remedy}")
        seen.add(name)
    return tuple(names)
