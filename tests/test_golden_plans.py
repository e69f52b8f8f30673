"""Blocks written in YAML build exactly the networks the Python block registry built: every
shipped spec, under both naming schemes, node for node (name, kind, output shape, trainable and
non-trainable parameters, MACs, inputs, block and block type). The golden data was made from the
Python blocks before they were deleted (tests/fixtures/make_golden_plans.py says how)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden_plans.json").read_text())


@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_plan_equals_the_python_blocks(key):
    from tests.fixtures.make_golden_plans import rows

    path, naming = key.rsplit(":", 1)
    checked = load_checked_spec(REPO / path, [f"defaults.naming={naming}"])
    ours = rows(checked.plan)
    golden = GOLDEN[key]
    assert len(ours) == len(golden)
    for mine, theirs in zip(ours, golden):
        assert mine == theirs
