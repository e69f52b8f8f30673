"""Deterministic layer names for blocks. Names are what weights are loaded by, so they never
depend on how many layers Keras happened to create before."""

from __future__ import annotations

import string
from dataclasses import dataclass


def block_letter(index: int) -> str:
    """0 -> 'a', 25 -> 'z', 26 -> 'aa': the notebook's letters, continued past 'z' (ResNet-152
    has 36 blocks in stage 4)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = string.ascii_lowercase[rest] + letters
    return letters


# The notebook's branch parts and their keras.applications numbers.
_KERAS_PART = {"2a": "1", "2b": "2", "2c": "3", "1": "0"}


@dataclass(frozen=True)
class BlockNames:
    """Names of one block's layers under a naming scheme.

    notebook: res2a_branch2a, bn2a_branch2a; activations and the add stay unnamed, as in the
              notebook (Keras numbers them).
    keras:    conv2_block1_1_conv, conv2_block1_1_bn, conv2_block1_1_relu, conv2_block1_add,
              conv2_block1_out, as keras.applications names ResNet-50.
    """

    scheme: str
    stage: int
    index: int  # 0-based block index within the stage

    @property
    def group(self) -> str:
        """The block's id in plans and reports: res2a / conv2_block1."""
        if self.scheme == "keras":
            return f"conv{self.stage}_block{self.index + 1}"
        return f"res{self.stage}{block_letter(self.index)}"

    def conv(self, part: str) -> str:
        if self.scheme == "keras":
            return f"{self.group}_{_KERAS_PART[part]}_conv"
        return f"res{self.stage}{block_letter(self.index)}_branch{part}"

    def batch_norm(self, part: str) -> str:
        if self.scheme == "keras":
            return f"{self.group}_{_KERAS_PART[part]}_bn"
        return f"bn{self.stage}{block_letter(self.index)}_branch{part}"

    def relu(self, part: str) -> str | None:
        return f"{self.group}_{_KERAS_PART[part]}_relu" if self.scheme == "keras" else None

    def add(self) -> str | None:
        return f"{self.group}_add" if self.scheme == "keras" else None

    def out(self) -> str | None:
        return f"{self.group}_out" if self.scheme == "keras" else None
