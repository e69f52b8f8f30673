"""Shipped training recipes (architectures/recipes/) change only `training:`: the network they
build is the documented one, layer for layer."""

from __future__ import annotations

import pytest

from archbuilder.plan.compare import compare
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO
from tests.fixtures.make_golden_plans import rows
from tests.test_golden_plans import GOLDEN

RECIPES = sorted((REPO / "architectures" / "recipes").glob("*.yaml"))


def test_there_is_a_recipe():
    assert RECIPES  # the parametrized test below would pass vacuously without one


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_a_recipe_is_the_documented_resnet50_with_other_training_settings(path):
    recipe = load_checked_spec(path)
    documented = load_checked_spec(REPO / "architectures" / "resnet50.yaml")
    # shared/reference/REFERENCE.md §1: the notebook's ResNet-50 at 64x64x3 has 23,600,006 parameters.
    assert recipe.plan.total_params == 23_600_006
    # Node for node the golden plan of architectures/resnet50.yaml (names, shapes, parameters, inputs).
    assert rows(recipe.plan) == GOLDEN["architectures/resnet50.yaml:notebook"]
    # And every other field of the resolved spec (BatchNorm's momentum and epsilon, initializers,
    # the name) is the documented one: the only differences are under `training`.
    changed = [change.path for change in compare(documented, recipe).fields]
    assert changed and all(p.split(".")[0] == "training" for p in changed), changed


def test_bench_times_the_first_epoch_that_reaches_the_target():
    from bench.accuracy import time_to_accuracy

    history = [
        {"epoch": 1, "seconds": 90.0, "cpu_seconds": 150.0, "test_accuracy": 0.71},
        {"epoch": 2, "seconds": 60.0, "cpu_seconds": 100.0, "test_accuracy": 0.989},  # 270/273: not 99%
        {"epoch": 3, "seconds": 30.0, "cpu_seconds": 50.0, "test_accuracy": 0.9927},
        {"epoch": 4, "seconds": 30.0, "cpu_seconds": 50.0, "test_accuracy": 1.0},
    ]
    assert time_to_accuracy(history, 0.99) == {"epoch": 3, "minutes": 3.0, "cpu_seconds": 300.0}
    assert time_to_accuracy(history[:2], 0.99) is None
