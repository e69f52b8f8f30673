"""The photos that set int8's activation ranges: any images under a folder, no labels needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archbuilder.data.folder import IMAGE_SUFFIXES
from archbuilder.errors import UserError

# TensorFlow's converter guide suggests ~100-500 representative samples; more only costs time.
MAX_CALIBRATION_IMAGES = 200


def calibration_inputs(folder: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """float32 model inputs (x/255) of up to 200 images found under `folder`, spread evenly."""
    from archbuilder.data.images import load_image_files

    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root}: --calibration takes a folder of photos ({'not a folder' if root.exists() else 'no such folder'})")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not paths:
        raise UserError(f"{root}: no images in the calibration folder (looked for {', '.join(IMAGE_SUFFIXES)} in it and below)")
    if len(paths) > MAX_CALIBRATION_IMAGES:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, MAX_CALIBRATION_IMAGES).round().astype(int)]
    return load_image_files(paths, shape).astype(np.float32) / np.float32(255.0)
