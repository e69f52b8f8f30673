"""Deterministic layer names for blocks. Names are what weights are loaded by, so they never
depend on how many layers Keras happened to create before."""

from __future__ import annotations

import string


def block_letter(index: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa': the notebook's letters, continued past 'z' (ResNet-152
    has 36 blocks in stage 4)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = string.ascii_lowercase[rest] + letters
    return letters


def block_group(scheme: str, stage: int, index: int) -> str:
    """A block's id in plans and reports: res2a (notebook) / conv2_block1 (keras.applications)."""
    return f"conv{stage}_block{index + 1}" if scheme == "keras" else f"res{stage}{block_letter(index)}"


def name_fields(stage: int, index: int) -> dict[str, object]:
    """What a block's layer-name pattern may use besides expressions: {stage} (the stage label),
    {letter} (a, b, ..., z, aa: the notebook's) and {block} (1-based, keras.applications')."""
    return {"stage": stage, "letter": block_letter(index), "block": index + 1}
