"""Every invalid spec gets one located line per problem, all at once, exit code 2, no traceback.

Each case is a real file; the expected output is exact, `{f}` standing for the file's path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from archbuilder.layers import LAYER_TYPES
from archbuilder.errors import SpecError
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, run_cli, spec_problem_lines

GOOD_HEAD = """\
name: Net
input: {shape: [32, 32, 3]}
classes: 4
"""

CASES = {
    "yaml_syntax": (
        "name: Net\ninput: {shape: [1, 2\n",
        ["{f}:3:1: <document>: YAML syntax error: did not find expected ',' or ']'"],
    ),
    "wrong_types_unknown_keys_missing_fields_all_at_once": (
        GOOD_HEAD + textwrap.dedent("""\
            defaults:
              use_bais: false
            stem:
              - {type: conv, filters: 0, kernel: 7, stride: 2}
              - {type: convv, filters: 3}
              - {filters: 3}
            stages:
              - {block: bottleneck, filters: [8, 8], repeats: -1}
              - {block: bottlenek, filters: [8, 8, 32]}
              - {block: basic, filtres: [8, 8], stride: two}
            """),
        [
            "{f}:5:3: defaults.use_bais: unknown key 'use_bais'; did you mean 'use_bias'?",
            "{f}:7:27: stem.0.filters: input should be greater than 0 (received: 0)",
            "{f}:8:12: stem.1.type: unknown layer type 'convv'; valid types: " + ", ".join(LAYER_TYPES),
            "{f}:9:5: stem.2: missing key 'type' (a layer: one of " + ", ".join(LAYER_TYPES) + ") or 'block' (a block call)",
            "{f}:11:34: stages.0.filters: block type 'bottleneck' parameter 'filters' takes 3 values, got 2 (received [8, 8])",
            "{f}:11:51: stages.0.repeats: input should be greater than 0 (received: -1)",
            "{f}:12:13: stages.1.block: unknown block type 'bottlenek'; did you mean 'bottleneck'? valid types: basic, bottleneck",
            "{f}:13:5: stages.2: block type 'basic' needs parameter 'filters' (int_list)",
            "{f}:13:20: stages.2.filtres: block type 'basic' has no parameter 'filtres'; did you mean 'filters'? "
            "(its parameters: filters, kernel, shortcut, stride; stage keys: block, repeats, stride, stride_on, label, id)",
            "{f}:13:45: stages.2.stride: input should be a valid integer, unable to parse string as an integer (received: 'two')",
        ],
    ),
    # Issue 20: pydantic read true as 1 (`validate` said ok); the JSON Schema refused the same file.
    "booleans_are_not_numbers": (
        "name: Net\ninput: {shape: [8, true, 3]}\nclasses: true\nvariables: {k: false}\nmultipliers: {width: true}\n"
        "stem:\n  - {type: conv, filters: true, kernel: 3, use_bias: true}\n"
        "stages:\n  - {block: basic, filters: [8, 8], repeats: true, label: false}\n",
        [
            "{f}:2:20: input.shape.1: expected a number, not true or false (received: true)",
            "{f}:3:10: classes: expected a number, not true or false (received: true)",
            "{f}:4:16: variables.k: expected a number, not true or false (received: false)",
            "{f}:5:22: multipliers.width: expected a number, not true or false (received: true)",
            "{f}:7:27: stem.0.filters: expected a number, not true or false (received: true)",
            "{f}:9:46: stages.0.repeats: expected a number, not true or false (received: true)",
            "{f}:9:59: stages.0.label: expected a number, not true or false (received: false)",
        ],
    ),
    # The reverse: 1 was read as true (`when: 1` kept the layer, `keepdims: 0` dropped the axes); the
    # JSON Schema refused the same file (a hostile review, twenty-first session).
    "numbers_are_not_booleans": (
        GOOD_HEAD + "stem:\n  - {type: conv, filters: 8, kernel: 3, use_bias: 1, when: 1}\n"
        "  - {type: batch_norm, center: 0, scale: 1.0}\n  - {type: global_average_pool, keepdims: 0}\n",
        [
            "{f}:5:51: stem.0.use_bias: expected true or false, not a number (received: 1)",
            "{f}:5:60: stem.0.when: expected true or false, not a number (received: 1)",
            "{f}:6:32: stem.1.center: expected true or false, not a number (received: 0)",
            "{f}:6:42: stem.1.scale: expected true or false, not a number (received: 1.0)",
            "{f}:7:43: stem.2.keepdims: expected true or false, not a number (received: 0)",
        ],
    ),
    # Issue 20: the keys listed were the first layer type's (`from_, id, name, padding, ...`), for a conv.
    "unknown_key_of_a_layer_lists_its_own_type's_keys": (
        GOOD_HEAD + "stem:\n  - {type: conv, filters: 8}\n  - {type: conv, filters: 8, kernal: 3}\n"
        "  - {type: batch_norm, bogus: 1}\n",
        [
            "{f}:6:30: stem.1.kernal: unknown key 'kernal'; did you mean 'kernel'?",
            "{f}:7:24: stem.2.bogus: unknown key 'bogus'; valid keys: axis, center, epsilon, from, id, momentum, name, "
            "scale, type, when",
        ],
    ),
    "missing_top_level_fields": (
        "stages: []\n",
        ["{f}:1:1: input: missing required key 'input'", "{f}:1:1: name: missing required key 'name'"],
    ),
    "non_positive_stride": (
        GOOD_HEAD + "stages:\n  - {block: basic, filters: [8, 8], stride: 0}\n",
        ["{f}:5:45: stages.0.stride: input should be greater than 0 (received: 0)"],
    ),
    "identity_shortcut_channels_do_not_match": (
        GOOD_HEAD + "stages:\n  - {block: basic, filters: [8, 8]}\n  - {block: basic, filters: [16, 16], repeats: 2, shortcut: identity}\n",
        # Found inside the standard library's `basic`: located there and at the stage that used it.
        ["archbuilder/library/resnet.yaml:66:9: blocks.basic.layers.7: stage 3 block a: add needs inputs of one "
         "shape; received 32x32x16 and 32x32x8; in block 'basic' used by stages.1 at {f}:6:5"],
    ),
    "spatial_size_below_one": (
        GOOD_HEAD + textwrap.dedent("""\
            stem:
              - {type: conv, filters: 8, kernel: 7, stride: 2, name: conv1}
            stages:
              - {block: basic, filters: [8, 8], stride: 2, repeats: 1}
              - {block: basic, filters: [8, 8], stride: 2, repeats: 1}
            head:
              - {type: average_pool, pool: 5, name: pool}
              - {type: flatten}
              - {type: dense, activation: softmax}
            """),
        ["{f}:10:5: head.0: head layer 0: average_pool 5x5 'pool' shrinks the height from 4 to 0 "
         "(window 5, input shape (4, 4, 8)); the smallest input that works is [39, 39, 3] "
         "(received input.shape: [32, 32, 3])"],
    ),
    "duplicate_key": (
        "name: A\nname: B\ninput: {shape: [8, 8, 3]}\n",
        ["{f}:2:1: name: duplicate key 'name' (first defined at line 1)"],
    ),
    "training_seed_too_large": (  # Keras's random layers keep seeds in 32-bit integers
        GOOD_HEAD + "training: {seed: 4294967296}\n",
        ["{f}:4:18: training.seed: input should be less than or equal to 2147483647 (received: 4294967296)"],
    ),
    "name_that_is_no_file_name": (  # build wrote build/..keras, plot a hidden build/.-layers.png
        "name: '..'\ninput: {shape: [8, 8, 3]}\n",
        ["{f}:1:7: name: string should match pattern '^[A-Za-z0-9_][A-Za-z0-9_.\\-]*$' (received: '..')"],
    ),
    "units_classes_without_classes": (
        "name: A\ninput: {shape: [8, 8, 3]}\nhead:\n  - {type: flatten}\n  - {type: dense}\n",
        ["{f}:1:1: classes: head.1 uses units: classes, but the spec sets no top-level 'classes'"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_message(tmp_path, case):
    text, expected = CASES[case]
    path = tmp_path / "spec.yaml"
    assert spec_problem_lines(path, text) == [line.format(f=path) for line in expected]


def test_cli_reports_all_problems_exit_2_no_traceback_nothing_written(tmp_path):
    text, expected = CASES["wrong_types_unknown_keys_missing_fields_all_at_once"]
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    out_dir = tmp_path / "out"
    for command in (["validate", str(path)], ["build", str(path), "--out", str(out_dir)], ["info", str(path)]):
        result = run_cli(*command)
        assert result.returncode == 2, command
        assert result.stderr.splitlines() == [line.format(f=path) for line in expected]
        assert "Traceback" not in result.stderr + result.stdout
    assert not out_dir.exists()  # nothing is built before validation passes


def test_extends_cycle_names_the_chain(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: A\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(SpecError) as caught:
        load_checked_spec(tmp_path / "a.yaml")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert str(caught.value).splitlines() == [
        f"{a}:1:10: extends: in the extended file {b}:",
        f"{b}:1:10: extends: extends cycle: {a} -> {b} -> {a}",
    ]


def test_extends_missing_file(tmp_path):
    (tmp_path / "a.yaml").write_text("name: A\nextends: nowhere.yaml\n")
    with pytest.raises(SpecError) as caught:
        load_checked_spec(tmp_path / "a.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'a.yaml'}:2:10: extends: file not found: {tmp_path / 'nowhere.yaml'} "
        f"(chain: {tmp_path / 'a.yaml'} -> {tmp_path / 'nowhere.yaml'})"
    )


def test_error_in_a_parent_points_at_the_parent_line(tmp_path):
    (tmp_path / "base.yaml").write_text(GOOD_HEAD + "stages:\n  - {block: basic, filters: [8, 8, 8]}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: Child\n")
    with pytest.raises(SpecError) as caught:
        load_checked_spec(tmp_path / "child.yaml")
    assert str(caught.value) == (
        f"{tmp_path / 'base.yaml'}:5:29: stages.0.filters: block type 'basic' parameter 'filters' takes 2 values, got 3 (received [8, 8, 8])"
    )


def test_bad_override_is_located_at_the_override():
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", ["stages.1.repeats=0"])
    assert str(caught.value) == "<--set stages.1.repeats=0>:1:1: stages.1.repeats: input should be greater than 0 (received: 0)"


def test_a_boolean_override_for_a_number_is_refused_at_the_override():
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", ["stages.0.repeats=true"])
    assert str(caught.value) == ("<--set stages.0.repeats=true>:1:1: stages.0.repeats: expected a number, "
                                 "not true or false (received: true)")


def test_override_index_out_of_range():
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", ["stages.7.repeats=2"])
    assert str(caught.value) == "<--set stages.7.repeats=2>:1:1: stages.7: index 7 is out of range: the list has 4 items"


def test_missing_spec_file(tmp_path):
    result = run_cli("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert result.stderr == f"{tmp_path / 'nope.yaml'}:1:1: <document>: file not found\n"


def test_a_named_pipe_is_never_waited_on_and_a_piped_spec_is_read(tmp_path):
    # Opening a FIFO no process writes to waited for ever: `validate` hung. It reads as empty now,
    # while a spec piped in (`cat spec.yaml | validate /dev/stdin`, a pipe too) is read as before.
    pipe = tmp_path / "spec.yaml"
    os.mkfifo(pipe)
    result = run_cli("validate", str(pipe), timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{pipe}:1:1: input: missing required key 'input'",
                                          f"{pipe}:1:1: name: missing required key 'name'"]
    piped = subprocess.run([sys.executable, str(REPO / "cli.py"), "validate", "/dev/stdin"], cwd=REPO, timeout=60,
                           input=(REPO / "tests" / "specs" / "tiny_train.yaml").read_text(), capture_output=True, text=True)
    assert piped.returncode == 0 and piped.stdout.startswith("ok: /dev/stdin: tiny, 1,619 params"), piped.stderr


def test_size_guard_refuses_before_allocating_and_can_be_raised():
    override = "stages.3.filters=[512,512,2000000]"
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", [override])
    assert str(caught.value) == (
        f"{REPO / 'architectures' / 'resnet50.yaml'}:26:5: stages.3: estimated memory 27.4 GiB (weights 27.0 GiB, "
        "activations 452.8 MiB) exceeds the limit of 16.0 GiB; raise it with max_memory or ARCHBUILDER_MAX_MEMORY "
        "if this machine really has the memory"
    )
    result = run_cli("validate", "architectures/resnet50.yaml", "--set", override, "--max-memory", "40GiB")
    assert result.returncode == 0 and "7,236,206,726 params" in result.stdout
    env_raised = run_cli("validate", "architectures/resnet50.yaml", "--set", override, env={"ARCHBUILDER_MAX_MEMORY": "40GiB"})
    assert env_raised.returncode == 0


def test_absurd_repeats_fail_fast():
    with pytest.raises(SpecError) as caught:
        load_checked_spec(REPO / "architectures" / "resnet50.yaml", ["stages.3.repeats=1000000000"])
    assert str(caught.value) == ("<--set stages.3.repeats=1000000000>:1:1: stages.3.repeats: the network would have "
                                 "more than 20,000 layers (1,000,000,000 blocks in stages.3)")


def test_bad_memory_size_option():
    result = run_cli("validate", "architectures/resnet50.yaml", "--max-memory", "10XB")
    assert (result.returncode, result.stderr) == (2, "cannot read memory size '10XB': use e.g. 16GiB, 500MB or 2e10 (bytes)\n")


def test_extends_header_comes_before_the_parents_problems_whatever_the_names(tmp_path):
    (tmp_path / "base.yaml").write_text("name: [1\n")
    (tmp_path / "zeta.yaml").write_text("extends: base.yaml\n")
    with pytest.raises(SpecError) as caught:
        load_checked_spec(tmp_path / "zeta.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{tmp_path / 'zeta.yaml'}:1:10: extends: in the extended file {tmp_path / 'base.yaml'}:"
    assert lines[1].startswith(f"{tmp_path / 'base.yaml'}:")


def test_an_undefined_name_in_a_stem_expression_comes_with_the_other_problems(tmp_path):
    """Issue 20: it was reported only once the schema problems were fixed (the plan found it)."""
    text = GOOD_HEAD + "stem:\n  - {type: conv, filters: fitlers, kernel: 3}\n  - {type: conv, filters: 0, kernel: 3}\n"
    path = tmp_path / "spec.yaml"
    assert spec_problem_lines(path, text) == [
        f"{path}:5:27: stem.0.filters: undefined name 'fitlers' in 'fitlers'; names: classes, depth, drop_path_rate, "
        "in_channels, in_height, in_width, width",
        f"{path}:6:27: stem.1.filters: input should be greater than 0 (received: 0)"]
