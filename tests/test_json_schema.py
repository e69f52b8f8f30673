"""schema/archbuilder.schema.json checked by an independent validator (the `jsonschema` package).

Every shipped spec must pass it, and every broken file below must be refused both by `validate`
and by the schema. The schema is read from the shipped file as generated (test_cli checks that
the file equals `cli.py schema`), so these tests follow the language as it grows.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from conftest import REPO, SHIPPED_SPECS, spec_problem_lines

SCHEMA_FILE = REPO / "schema" / "archbuilder.schema.json"
# Specs shipped outside architectures/: the tests' own and the benchmarks'.
OTHER_SPECS = sorted((REPO / "tests" / "specs").glob("*.yaml")) + sorted((REPO / "bench" / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)  # the schema itself is valid draft 2020-12
    return jsonschema.Draft202012Validator(schema)


def _as_json(data):
    """The JSON document a YAML file stands for, as editors' YAML servers validate it: JSON keys
    are strings, so `stages: {2: {repeats: 23}}` (a list patch) is checked as key "2"."""
    return json.loads(json.dumps(data))


def _schema_errors(validator, data) -> list[str]:
    data = _as_json(data)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]


@pytest.mark.parametrize("path", SHIPPED_SPECS + OTHER_SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_spec_passes_the_schema(validator, path):
    assert _schema_errors(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []


VALID = """\
name: tiny
input: {shape: [32, 32, 3]}
classes: 3
stem:
  - {type: conv, filters: 8, kernel: 3, stride: 2, name: conv1}
  - {type: batch_norm}
  - {type: activation, activation: relu}
stages:
  - {block: basic, filters: [8, 8], kernel: 3, stride: 2, repeats: 1, shortcut: projection_if_needed}
head:
  - {type: global_average_pool}
  - {type: dense, units: classes, activation: softmax}
"""

# (id, replace this text of VALID, with this, what `validate` says): rules the schema expresses.
BROKEN = [
    ("unknown-top-level-key", "classes: 3", "clases: 3", "unknown key 'clases'"),
    ("missing-name", "name: tiny\n", "", "missing required key 'name'"),
    ("wrong-type", "classes: 3", "classes: three", "classes"),
    ("unknown-layer-type", "{type: batch_norm}", "{type: batchnorm}", "unknown layer type 'batchnorm'"),
    ("layer-without-type", "{type: batch_norm}", "{axis: -1}", "missing key 'type'"),
    ("unknown-layer-key", "stride: 2, name: conv1", "strides: 2, name: conv1", "unknown key 'strides'"),
    ("zero-filters", "{type: conv, filters: 8", "{type: conv, filters: 0", "greater than 0"),
    ("negative-repeats", "repeats: 1", "repeats: -1", "greater than 0"),
    ("unknown-activation", "activation: relu}", "activation: relu6x}", "activation"),
    ("unknown-padding", "stride: 2, name: conv1", "stride: 2, name: conv1, padding: full", "padding"),
    ("bad-input-shape", "shape: [32, 32, 3]", "shape: [32, 32]", "input.shape"),
    ("unknown-initializer", "classes: 3", "classes: 3\ndefaults: {kernel_initializer: {type: orthogonal}}",
     "kernel_initializer.type"),
    ("stage-not-a-list", "stages:\n  - {block", "stages: 3\nx:\n  - {block", "stages"),
]


@pytest.mark.parametrize("case", BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_files_are_refused_by_validate_and_by_the_schema(validator, tmp_path, case):
    _, old, new, message = case
    assert old in VALID
    text = VALID.replace(old, new, 1)
    lines = spec_problem_lines(tmp_path / "broken.yaml", text)
    assert any(message in line for line in lines), lines
    assert _schema_errors(validator, yaml.safe_load(text)), f"the schema accepted:\n{text}"


def test_the_valid_base_passes_both(validator, tmp_path):
    """The broken cases differ from this file by one edit, so each refusal is that edit's."""
    from archbuilder.spec.validate import load_checked_spec

    (tmp_path / "ok.yaml").write_text(VALID)
    load_checked_spec(tmp_path / "ok.yaml")
    assert _schema_errors(validator, yaml.safe_load(VALID)) == []


# Rules that need the plan or cross-field logic, which JSON Schema cannot state: `validate`
# refuses these; the schema is not asked (an editor cannot know an input is too small).
BEYOND_SCHEMA = [
    # Block parameters belong to each block type's declaration (the block language), not to the schema.
    ("filters-per-block", "filters: [8, 8], kernel", "filters: [8, 8, 8], kernel", "takes 2 values"),
    ("unknown-shortcut", "shortcut: projection_if_needed", "shortcut: projection", "expected one of projection_first"),
    ("pool-larger-than-input", "{type: global_average_pool}", "{type: max_pool, pool: 9}\n  - {type: flatten}",
     "smallest input"),
    ("duplicate-layer-name", "{type: batch_norm}", "{type: batch_norm, name: conv1}", "conv1"),
    ("tf1-initializer-without-seed", "classes: 3", "classes: 3\ndefaults: {kernel_initializer: {type: glorot_uniform_tf1}}",
     "needs a seed"),
]


@pytest.mark.parametrize("case", BEYOND_SCHEMA, ids=[case[0] for case in BEYOND_SCHEMA])
def test_rules_beyond_the_schema_are_refused_by_validate(tmp_path, case):
    _, old, new, message = case
    lines = spec_problem_lines(tmp_path / "broken.yaml", VALID.replace(old, new, 1))
    assert any(message in line for line in lines), lines
