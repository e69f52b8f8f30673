"""`extends:` chains, list patches and `--set`, and the YAML hazards the loader refuses."""

from __future__ import annotations

import time

from archbuilder.spec.resolve import resolve_document
from archbuilder.spec.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, spec_problem_lines

ARCH = REPO / "architectures"


def test_resnet101_is_resnet50_with_other_repeats():
    base = resolve_document(ARCH / "resnet50.yaml").data
    deep = resolve_document(ARCH / "resnet101.yaml").data
    base["name"] = "ResNet101"
    base["stages"][2]["repeats"] = 23
    assert deep == base


def test_child_values_keep_their_own_locations():
    document = resolve_document(ARCH / "imagenet" / "resnet50.yaml")
    assert document.values[("input", "shape")].file.endswith("imagenet/resnet50.yaml")
    assert document.values[("stages", 0, "filters")].file.endswith("architectures/resnet50.yaml")


def test_null_removes_a_key_so_the_default_applies(tmp_path):
    (tmp_path / "child.yaml").write_text(f"extends: {ARCH / 'resnet50.yaml'}\ndefaults:\n  kernel_initializer: null\n")
    spec = load_checked_spec(tmp_path / "child.yaml").spec
    assert spec.defaults.kernel_initializer.type == "glorot_uniform" and spec.defaults.kernel_initializer.seed is None
    assert spec.defaults.naming == "notebook"  # the rest of `defaults` is inherited


def test_set_creates_nested_keys_and_replaces_lists():
    spec = load_checked_spec(ARCH / "resnet18.yaml", ["defaults.batch_norm.epsilon=1.001e-5", "stages.0.filters=[32, 32]"]).spec
    assert spec.defaults.batch_norm.epsilon == 1.001e-5
    assert spec.stages[0].filters == [32, 32]


def _problem(path, text: str | bytes) -> str:
    return "\n".join(spec_problem_lines(path, text))


def test_billion_laughs_is_refused_quickly(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 10)]
    start = time.process_time()  # CPU time: the work's cost, however loaded the machine
    message = _problem(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    assert time.process_time() - start < 5
    assert f"document expands to more than {MAX_VALUES} values (alias bomb?)" in message


def test_deep_nesting_is_refused(tmp_path):
    message = _problem(tmp_path / "deep.yaml", "a: " + "[" * 200 + "]" * 200 + "\n")
    assert message.endswith(f"nesting is too deep (limit {MAX_DEPTH})")


def test_recursive_alias_is_refused(tmp_path):
    message = _problem(tmp_path / "loop.yaml", "a: &x [1, *x]\n")
    assert "nesting is too deep" in message


def test_oversized_file_is_refused_unparsed(tmp_path):
    path = tmp_path / "big.yaml"
    message = _problem(path, "# " + "x" * MAX_FILE_BYTES + "\n")
    assert message == f"{path}:1:1: <document>: file is larger than {MAX_FILE_BYTES} bytes; refusing to parse it"


def test_non_utf8_bytes_are_located(tmp_path):
    path = tmp_path / "latin1.yaml"
    assert _problem(path, b"name: ok\ninput: caf\xe9\n") == f"{path}:2:11: <document>: file is not UTF-8 text (byte 0xe9)"


def test_python_object_tags_are_refused_and_never_constructed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    message = _problem(path, f"name: !!python/object/apply:os.system ['touch {marker}']\ninput: {{shape: [8, 8, 3]}}\n")
    assert message == f"{path}:1:7: name: tag '!!python/object/apply:os.system' is not allowed: specs hold plain data only"
    assert not marker.exists()


def test_merge_keys_are_refused(tmp_path):
    path = tmp_path / "merge.yaml"
    message = _problem(path, "base: &b {type: conv}\nname: x\nlayer:\n  <<: *b\n")
    assert f"{path}:4:3: layer: merge keys ('<<') are not supported; use 'extends'" in message


def test_a_spec_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    assert _problem(path, "- 1\n- 2\n") == f"{path}:1:1: <document>: a spec must be a mapping (received: a list)"


def test_directory_and_non_yaml_extends_targets(tmp_path):
    (tmp_path / "folder").mkdir()
    child = tmp_path / "child.yaml"
    message = _problem(child, "extends: folder\nname: x\n")
    assert message == f"{child}:1:10: extends: is a directory, not a YAML file: {tmp_path / 'folder'} (chain: {child} -> {tmp_path / 'folder'})"
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    message = _problem(child, "extends: image.png\nname: x\n")
    assert message.splitlines() == [
        f"{child}:1:10: extends: in the extended file {tmp_path / 'image.png'}:",
        f"{tmp_path / 'image.png'}:1:1: <document>: file is not UTF-8 text (byte 0x89)",
    ]


# Issue 13, item 14: deleting list items through `extends`, and shape errors caused by a child's patch.

def test_null_list_item_removes_it_with_the_parents_indices(tmp_path):
    # The patched network must equal the same network written out with its three stages.
    (tmp_path / "three.yaml").write_text(f"extends: {ARCH / 'resnet50.yaml'}\nstages:\n  3: null\n  2: {{repeats: 2}}\n")
    patched = load_checked_spec(tmp_path / "three.yaml")
    written = load_checked_spec(ARCH / "resnet50.yaml", ["stages=" + repr([
        {"block": "bottleneck", "filters": [64, 64, 256], "kernel": 3, "stride": 1, "repeats": 3},
        {"block": "bottleneck", "filters": [128, 128, 512], "kernel": 3, "stride": 2, "repeats": 4},
        {"block": "bottleneck", "filters": [256, 256, 1024], "kernel": 3, "stride": 2, "repeats": 2},
    ])])
    assert len(patched.spec.stages) == 3
    assert patched.plan.total_params == written.plan.total_params
    # Values after the removed item keep their own (renumbered) locations.
    assert patched.document.values[("stages", 2, "repeats")].file == str(tmp_path / "three.yaml")


def test_a_shape_error_caused_by_a_childs_patch_points_at_the_child(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {ARCH / 'resnet50.yaml'}\nstages:\n  1: {{shortcut: identity}}\n")
    lines = spec_problem_lines(child, child.read_text())
    assert len(lines) == 1
    assert lines[0].startswith(f"{child}:3:17: "), lines  # the child's patch
    assert "stages.1" in lines[0] and f"{ARCH / 'resnet50.yaml'}:" in lines[0], lines  # the parent's stage


def test_duplicate_names_are_reported_even_when_shapes_also_collapse(tmp_path):
    """Item 12: the duplicate name is no input size's fault, and said so."""
    lines = spec_problem_lines(tmp_path / "dup.yaml", (
        "name: dup\ninput: {shape: [16, 16, 3]}\nclasses: 2\nstem:\n"
        "  - {type: conv, filters: 4, kernel: 20, name: x}\n  - {type: conv, filters: 4, kernel: 3, name: x}\n"
        "head:\n  - {type: global_average_pool}\n  - {type: dense, units: classes, activation: softmax}\n"
    ))
    assert any(":6:5: stem.1:" in line and "layer name 'x' is already used" in line for line in lines), lines
    assert not any("no input size" in line for line in lines), lines


def test_a_required_key_removed_by_set_is_blamed_on_the_set():
    """Issue 20 item 13: `--set name=` (null removes a key) was reported at the spec's own line for
    `name`, which the user did not touch; the problem is located at the override that removed it."""
    lines = _override_problem_lines(["name="])
    assert lines == ["<--set name=>:1:1: name: missing required key 'name': null here removes it, and it has no default"]


def test_a_huge_set_key_is_named_not_echoed():
    """Issue 20 item 13: a 120 KB `--set` key was echoed three times (location, path, message),
    360 KB of output for one problem. Each is abbreviated to its start and its length."""
    key = "k" * 120_000
    lines = _override_problem_lines([f"{key}=1"])
    assert len(lines) == 1
    assert len(lines[0]) < 1_000
    assert lines[0].count("(120,000 characters)") == 2 and "(120,002 characters)" in lines[0]  # key twice, `key=1` once
    assert "unknown key" in lines[0]


def _override_problem_lines(overrides: list[str]) -> list[str]:
    from archbuilder.errors import SpecError

    try:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", overrides)
    except SpecError as error:
        return str(error).splitlines()
    raise AssertionError("the overrides were accepted")
