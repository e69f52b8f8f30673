"""Bounded fuzzing of the spec language, for CI: 75-150 cases per strategy, derandomized.

Each case must be accepted (and then, if small, build into a Keras model that static inference
describes exactly) or rejected with exit code 2 and only `file:line:col: path: message` lines;
see tests/fuzz_strategies.py. The long run is bench/fuzz.py.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz_strategies import REPO, STRATEGIES, Case, InvariantBroken, Workspace, check_case

# The default suite's share (~20 s on a slow CPU); bench/fuzz.py is the long run (21,000 cases).
EXAMPLES = 150
BUILDS_PER_STRATEGY = 2  # Keras builds cost ~1.5 s each (3 s on a slow CPU); validating a case ~20 ms
CASE_SECONDS = 5  # validate and plan, whatever the input
BUILD_SECONDS = 60  # the first build also imports TensorFlow


@pytest.fixture(scope="module")
def workspace():
    space = Workspace()
    yield space
    space.close()


def _fuzz(name: str, examples: int = EXAMPLES):
    builds = {"done": 0}

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(case=STRATEGIES[name])
    def run(workspace, case: Case) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = check_case(case, workspace, build=builds["done"] < BUILDS_PER_STRATEGY)
        builds["done"] += outcome.built
        # Validation is single-threaded Python: its CPU time is its cost, however loaded the
        # machine. A build runs TensorFlow's thread pools, whose CPU time grows with the cores,
        # so it is bounded by the clock, generously.
        elapsed = time.perf_counter() - wall if outcome.built else time.process_time() - cpu
        limit = BUILD_SECONDS if outcome.built else CASE_SECONDS
        assert elapsed < limit, f"case took longer than {limit} s"

    return run


test_random_yaml_documents = _fuzz("random_yaml")
test_specs_drawn_from_the_schema = _fuzz("schema_specs")
test_mutations_of_shipped_files = _fuzz("shipped_mutants")
# Block specs cost ~4x a schema spec to check (block checks, expansion); 75 keep CI's share small.
test_specs_defining_blocks = _fuzz("block_specs", examples=75)
# Networks with sections, named outputs, ids across parts and token layers: ~2x a schema spec.
test_networks_beyond_one_chain = _fuzz("network_specs", examples=75)


def test_named_outputs_are_compared_with_keras_one_by_one(workspace, monkeypatch):
    """A built network with `outputs:` is compared per output name, and a wrong static shape for
    one of them is caught (here static inference made to name the stem's 32x32x8 conv as `mask`)."""
    from archbuilder.plan.graph import Plan

    case = Case((REPO / "tests" / "specs" / "two_outputs.yaml").read_bytes())
    assert check_case(case, workspace, build=True).built
    monkeypatch.setattr(Plan, "output_nodes", lambda self: {"mask": self.nodes[1], "label": self.nodes[-1]})
    with pytest.raises(InvariantBroken, match=r"'mask': \(32, 32, 8\)"):
        check_case(case, workspace, build=True)


def test_two_input_and_token_layers_are_found_in_the_registry():
    """network_specs draws `from: [map, like]` layers and token layers from the registry, so a new
    one is fuzzed without editing the fuzzer; these are the ones there now."""
    from tests.fuzz_strategies import LIKE_KINDS, TOKEN_KINDS

    assert LIKE_KINDS == ["cropping", "resize"]
    assert TOKEN_KINDS == ["class_token", "position_embedding", "multi_head_attention", "take_token", "average_tokens"]


def _layer_types():
    from archbuilder.layers import LAYER_TYPES

    return LAYER_TYPES


@pytest.mark.parametrize("kind", _layer_types())
def test_the_fuzzers_draw_valid_layers_of_every_primitive(kind):
    """The fuzzers draw each primitive's fields from its field types (a primitive added to
    archbuilder/layers is fuzzed at once); every primitive must come out valid some of the time,
    or its cases would all be refused and its rules never reached."""
    from hypothesis import Phase, find, settings
    from hypothesis import strategies as st
    from pydantic import ValidationError

    from archbuilder.layers import BY_TYPE
    from tests.fuzz_strategies import BODY_KINDS, HEAD_KINDS, MERGES, STEM_KINDS, _layer

    assert kind in {*STEM_KINDS, *HEAD_KINDS, *BODY_KINDS, *MERGES}

    def valid(data: dict) -> bool:
        try:
            BY_TYPE[kind].model_validate(data)
        except ValidationError:
            return False
        return True

    # Any valid draw will do: the first found is kept, not shrunk (shrinking was most of the cost).
    found = find(st.composite(lambda draw: _layer(kind, draw))(), valid,
                 settings=settings(max_examples=300, database=None, phases=[Phase.generate]))
    assert found["type"] == kind