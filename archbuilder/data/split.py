"""Seeded splits. No TensorFlow.

The sign-language digits were taken in runs, one photographer at a time, one picture per digit in
order 0, 1, ..., 9 (see the dataset's README). Sorting by the number in `IMG_<n>.JPG`, a new
photographer starts wherever the label does not increase. Holding out whole photographers keeps
the same hand and background out of both sides of a split.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from archbuilder.errors import UserError

_IMAGE_NUMBER = re.compile(r"(\d+)")


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `fraction` of each class held out, at least one image per class."""
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = max(1, int(round(fraction * len(members)))) if len(members) > 1 else 0
        held.extend(members[:count])
        kept.extend(members[count:])
    return np.sort(np.asarray(kept, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))


def photographer_groups(paths: tuple[Path, ...] | list[Path], labels: np.ndarray) -> np.ndarray:
    """Group id per image (aligned with `paths`): images of one photographer share an id."""
    numbers = []
    for path in paths:
        found = _IMAGE_NUMBER.findall(path.stem)
        if not found:
            raise UserError(
                f"{path}: a photographer split needs file names numbered in shooting order "
                "(IMG_<n>.JPG, as in the sign-language digits)"
            )
        numbers.append(int(found[-1]))
    order = np.argsort(np.asarray(numbers), kind="stable")
    groups = np.empty(len(paths), dtype=np.int64)
    group, previous = 0, None
    for index in order:
        if previous is not None and labels[index] <= previous:
            group += 1
        groups[index] = group
        previous = labels[index]
    return groups


def group_holdout(groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): whole groups, shuffled with `seed`, until `fraction` of images."""
    if not 0 < fraction < 1:
        raise UserError(f"holdout fraction must be between 0 and 1 (received: {fraction})")
    ids = np.random.default_rng(seed).permutation(np.unique(groups))
    target = fraction * len(groups)
    held_ids, count = [], 0
    for group_id in ids:
        if count >= target:
            break
        held_ids.append(group_id)
        count += int(np.sum(groups == group_id))
    held_mask = np.isin(groups, held_ids)
    return np.flatnonzero(~held_mask), np.flatnonzero(held_mask)
