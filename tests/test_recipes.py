"""Shipped training recipes (architectures/recipes/) change only `training:`: the network they
build is the documented one, layer for layer."""

from __future__ import annotations

import pytest

from archbuilder.plan.compare import compare
from archbuilder.spec.validate import load_checked_spec
from tests.conftest import REPO
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
