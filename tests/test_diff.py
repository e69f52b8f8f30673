"""`diff A B`: fields and per-stage params/MACs of two resolved specs. Totals are REFERENCE.md §2's."""

from __future__ import annotations

import json

from train_support import REPO
from train_support import invoke

ARCH = REPO / "architectures"
# REFERENCE.md §2: (total params, forward MACs).
RESNET50 = (23_600_006, 308_178_944)
RESNET101 = (42_670_470, 611_217_408)
RESNET50_IMAGENET = (25_636_712, 3_834_331_136)


def _diff(*args):
    return invoke("diff", *args)


def _json(*args) -> dict:
    result = _diff(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_resnet50_vs_resnet101_differs_in_stage_4_only():
    report = _json(ARCH / "resnet50.yaml", ARCH / "resnet101.yaml")
    assert {f["path"]: (f["a"], f["b"]) for f in report["fields"]} == {
        "name": ("ResNet50", "ResNet101"), "stages.2.repeats": (6, 23)}
    assert (report["a"]["total_params"], report["a"]["macs"]) == RESNET50
    assert (report["b"]["total_params"], report["b"]["macs"]) == RESNET101
    changed = {p["name"]: (p["params_delta"], p["macs_delta"]) for p in report["parts"] if p["params_delta"] or p["macs_delta"]}
    # 17 more identity blocks of [256, 256, 1024] carry the whole difference.
    assert changed == {"stage 4": (RESNET101[0] - RESNET50[0], RESNET101[1] - RESNET50[1])}
    assert report["delta"]["total_params"] == RESNET101[0] - RESNET50[0]


def test_notebook_resnet50_vs_imagenet_layout():
    report = _json(ARCH / "resnet50.yaml", ARCH / "imagenet" / "resnet50.yaml")
    fields = {f["path"]: (f["a"], f["b"]) for f in report["fields"]}
    assert fields["input.shape"] == ([64, 64, 3], [224, 224, 3])
    assert fields["classes"] == (6, 1000)
    assert fields["head"][1][0]["type"] == "global_average_pool"
    assert "stages" not in " ".join(fields)  # the stages are inherited unchanged
    assert (report["b"]["total_params"], report["b"]["macs"]) == RESNET50_IMAGENET
    parts = {p["name"]: p for p in report["parts"]}
    assert all(parts[f"stage {s}"]["params_delta"] == 0 for s in (2, 3, 4, 5))
    # Stage 2 runs at 15x15 from 64² (pad 3, 7x7/2 conv: 32; 3x3/2 pool: 15) and at 55x55 from
    # 224² (112, then 55): the same layers, so its MACs scale by exactly 55²/15².
    assert parts["stage 2"]["b"]["macs"] * 15**2 == parts["stage 2"]["a"]["macs"] * 55**2


def test_text_output_shows_fields_and_the_table():
    result = _diff(ARCH / "resnet50.yaml", ARCH / "resnet101.yaml")
    assert result.exit_code == 0, result.output
    assert "stages.2.repeats  6 -> 23" in result.output
    stage4 = next(line for line in result.output.splitlines() if line.startswith("stage 4"))
    assert stage4.split() == ["stage", "4", "7,129,088", "26,199,552", "+19,070,464",
                              "113,246,208", "416,284,672", "+303,038,464"]
    assert result.output.rstrip().splitlines()[-1].split() == [
        "total", "23,600,006", "42,670,470", "+19,070,464", "308,178,944", "611,217,408", "+303,038,464"]


def test_set_applies_to_both_sides_and_set_a_to_one():
    same = _json(ARCH / "resnet50.yaml", ARCH / "resnet50.yaml", "--set", "classes=10")
    assert same["fields"] == [] and same["delta"]["total_params"] == 0
    one = _json(ARCH / "resnet50.yaml", ARCH / "resnet50.yaml", "--set-a", "defaults.use_bias=false")
    assert [f["path"] for f in one["fields"]] == ["defaults.use_bias"]
    # One bias per output channel of every convolution: 26,560 (REFERENCE.md §2's ResNet-50 sum).
    assert one["delta"]["total_params"] == 26_560


def test_a_spec_equal_in_other_words_shows_no_field_difference(tmp_path):
    (tmp_path / "same.yaml").write_text(f"extends: {ARCH / 'resnet50.yaml'}\nstages: {{2: {{repeats: 6}}}}\n")
    result = _diff(ARCH / "resnet50.yaml", tmp_path / "same.yaml")
    assert result.exit_code == 0 and "Fields that differ: none" in result.output


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\ninput: {shape: [64, 64, 3]}\nclases: 3\n")
    result = _diff(ARCH / "resnet50.yaml", tmp_path / "bad.yaml")
    assert result.exit_code == 2
    assert "bad.yaml:3:1: clases: unknown key 'clases'" in result.output
    missing = _diff(ARCH / "resnet50.yaml", tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1, missing.output


def test_a_block_parameter_written_at_its_default_is_no_difference():
    """Issue 20: `shortcut: projection_first` is bottleneck's default, so the networks are identical."""
    same = _json(ARCH / "resnet50.yaml", ARCH / "resnet50.yaml", "--set-b", "stages.0.shortcut=projection_first")
    assert same["fields"] == [] and same["delta"]["total_params"] == 0
    other = _json(ARCH / "resnet50.yaml", ARCH / "resnet50.yaml", "--set-b", "stages.0.shortcut=projection_if_needed")
    assert [(f["path"], f["a"], f["b"]) for f in other["fields"]] == [
        ("stages.0.shortcut", "projection_first", "projection_if_needed")]


TWO_INPUTS = """\
name: t
input: {shape: [8, 8, 3]}
classes: 2
blocks:
  b:
    params: {k: {type: int, default: 2, min: 1}}
    layers:
      - {type: conv, filters: k, kernel: 1, id: c}
      - {type: concat, from: [input, c]}
stages:
  - {block: b}
head:
  - {type: global_average_pool}
  - {type: dense, units: classes}
"""


def test_fields_are_named_as_written_and_integer_bounds_stay_integers(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TWO_INPUTS)
    report = _json(path, path, "--set-b", "blocks.b.params.k.min=2", "--set-b", "blocks.b.layers.1.from=[c, input]")
    assert [(f["path"], f["a"], f["b"]) for f in report["fields"]] == [
        ("blocks.b.params.k.min", 1, 2), ("blocks.b.layers.1.from", ["input", "c"], ["c", "input"])]
    assert all(type(f["a"]) is type(f["b"]) for f in report["fields"])  # 1 and 2, not 1.0
    text = _diff(path, path, "--set-b", "blocks.b.params.k.min=2").output
    assert "blocks.b.params.k.min  1 -> 2" in text and "from_" not in text


def test_two_bad_files_are_both_reported(tmp_path):
    """Issue 20 item 13: `diff` of two bad files named only A's problems; B's were found only after
    A was fixed. Both sides are checked, and every problem of each is listed, located in its file."""
    head = "head: [{type: global_average_pool}, {type: dense, units: classes, activation: softmax}]\n"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: a\ninput: {shape: [32, 32, 3]}\nclasses: 2\nstem: [{type: conv, filters: -1}]\n" + head)
    b.write_text("name: b\ninput: {shape: [32, 32, 3]}\nclasses: 0\nstem: [{type: conv, filters: 8, kernal: 3}]\n" + head)
    result = _diff(a, b)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [
        f"{a}:4:30: stem.0.filters: input should be greater than 0 (received: -1)",
        f"{b}:3:10: classes: input should be greater than 0 (received: 0)",
        f"{b}:4:33: stem.0.kernal: unknown key 'kernal'; did you mean 'kernel'?",
    ]


def test_problems_of_one_side_s_overrides_name_its_option_and_shared_ones_are_said_once():
    # They were located as `<--set classes=0>` (neither the option given nor the side), and a bad
    # `--set` that both sides take was listed twice.
    spec = REPO / "tests" / "specs" / "tiny_train.yaml"
    result = _diff(spec, spec, "--set-a", "classes=0", "--set-b", "stages.0.repeats=x", "--set", "name=..")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(":1:1: ")[0] for line in lines] == ["<--set name=..>", "<--set-a classes=0>",
                                                           "<--set-b stages.0.repeats=x>"], lines
