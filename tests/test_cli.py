"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train_support import REPO, SHIPPED_SPECS, TINY_SPEC, cli_env, run_cli, run_cli_in_process


def test_build_resnet50_prints_summary_totals_and_saves_a_loadable_model(tmp_path):
    # In this process (a TensorFlow start saved); the fresh-clone check runs it as README's first command.
    result = run_cli_in_process("build", REPO / "architectures" / "resnet50.yaml", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for expected in ("Total params: 23,600,006", "Trainable params: 23,546,886", "Non-trainable params: 53,120"):
        assert expected in lines
    assert "res5c_branch2c" in result.stdout and "fc6" in result.stdout
    saved = tmp_path / "ResNet50.keras"
    assert lines[-1] == f"Saved {saved}"
    assert [p.name for p in tmp_path.iterdir()] == ["ResNet50.keras"]  # no temporary file left behind
    import keras

    import archbuilder.keras.initializers  # noqa: F401 - the notebook's initializer, registered as a user does
    loaded = keras.saving.load_model(saved, safe_mode=True)
    assert (loaded.count_params(), loaded.name) == (23600006, "ResNet50")


def test_validate_and_info_of_every_shipped_spec_without_importing_tensorflow():
    code = (
        "import sys\n"
        "from archbuilder.cli import main\n"
        f"specs = {[str(p) for p in SHIPPED_SPECS]!r}\n"
        "for args in (['validate', *specs], ['info', '--json', specs[-1]]):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, stop.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print('no tensorflow')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok: ") == len(SHIPPED_SPECS) == 28
    assert result.stdout.splitlines()[-1] == "no tensorflow"


def test_info_json_has_the_totals():
    result = run_cli("info", "architectures/resnet50.yaml", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert {k: info[k] for k in ("total_params", "trainable_params", "non_trainable_params", "macs", "output_shape")} == {
        "total_params": 23_600_006, "trainable_params": 23_546_886, "non_trainable_params": 53_120,
        "macs": 308_178_944, "output_shape": [6],
    }
    assert [row["name"] for row in info["rows"]] == ["stem", "stage 2", "stage 3", "stage 4", "stage 5", "head"]
    assert [row["blocks"] for row in info["rows"]] == [0, 3, 4, 6, 3, 0]
    assert sum(row["params"] for row in info["rows"]) == 23_600_006
    assert sum(row["macs"] for row in info["rows"]) == 308_178_944


def test_info_table_per_stage():
    result = run_cli("info", "architectures/resnet50.yaml")
    assert result.returncode == 0, result.stderr
    assert "stage 5  bottleneck       3  2x2x2048      14,998,528   59,768,832" in result.stdout
    assert "Forward MACs: 308,178,944" in result.stdout


SHARED_LABELS = """\
name: shared_labels
input: {shape: [32, 32, 3]}
classes: 10
blocks:
  plain:
    params: {filters: {type: int, min: 1}}
    layers: [{type: conv, filters: filters, kernel: 3, padding: same}]
  other:
    params: {filters: {type: int, min: 1}}
    layers: [{type: conv, filters: filters, kernel: 1}]
stem: [{type: conv, filters: 8, kernel: 3}]
stages:
  - {block: plain, filters: 8, label: 3}
  - {block: other, filters: 16, repeats: 2, label: 3}
  - {block: plain, filters: 16, label: 4}
head: [{type: global_average_pool}, {type: dense, units: classes}]
"""


def test_info_keeps_stages_that_share_a_label_apart(tmp_path):
    # Two stages labelled 3 used to merge into one row "stage 3" of 3 `plain` blocks, and their
    # blocks (both named res3a) into one block row.
    spec = tmp_path / "shared.yaml"
    spec.write_text(SHARED_LABELS)
    result = run_cli("info", str(spec))
    assert result.returncode == 0, result.stderr
    assert "stage 3 (stages.0)  plain       1  30x30x8" in result.stdout
    assert "stage 3 (stages.1)  other       2  30x30x16" in result.stdout
    assert "stage 4             plain       1  30x30x16" in result.stdout
    import archbuilder

    rows = archbuilder.info(str(spec), per_block=True)["rows"]
    assert [(r["name"], r["kind"], r["params"]) for r in rows] == [
        ("stem", "stem", 224), ("res3a (stages.0)", "plain", 584), ("res3a (stages.1)", "other", 144),
        ("res3b (stages.1)", "other", 272), ("res4a", "plain", 2320), ("head", "head", 170),
    ]


def test_block_diagram_keeps_stages_that_share_a_label_apart(tmp_path):
    from archbuilder.diagrams import block_diagram
    from archbuilder.plan.validate import load_checked_spec

    spec = tmp_path / "shared.yaml"
    spec.write_text(SHARED_LABELS)
    checked = load_checked_spec(spec)
    diagram = block_diagram(checked.plan, checked.spec)
    assert [(b.id, b.stage) for b in diagram.boxes] == [
        ("input", None), ("stem", None), ("res3a (stages.0)", "stage 3 (stages.0)"),
        ("res3a (stages.1)", "stage 3 (stages.1)"), ("res3b (stages.1)", "stage 3 (stages.1)"),
        ("res4a", "stage 4"), ("head", None),
    ]
    ids = [b.id for b in diagram.boxes]
    assert [(a.tail, a.head) for a in diagram.arrows] == list(zip(ids, ids[1:]))


def test_set_overrides_any_field_and_is_validated():
    result = run_cli("info", "architectures/resnet50.yaml", "--json", "--set", "input.shape=[224,224,3]",
                     "--set", "classes=1000", "--set", "stages.2.repeats=23")
    info = json.loads(result.stdout)
    assert info["input_shape"] == [224, 224, 3] and info["output_shape"] == [1000]
    assert info["rows"][3]["blocks"] == 23
    bad = run_cli("info", "architectures/resnet50.yaml", "--set", "input.shape=[224,224]")
    assert bad.returncode == 2
    assert bad.stderr == "<--set input.shape=[224,224]>:1:1: input.shape: list should have at least 3 items after validation, not 2 (received: [224, 224])\n"


def test_schema_command_matches_the_shipped_schema_file():
    result = run_cli("schema")
    assert result.returncode == 0
    assert result.stdout == (REPO / "schema" / "archbuilder.schema.json").read_text()
    schema = json.loads(result.stdout)
    assert schema["else"]["required"] == ["name", "input"]
    assert "extends" in schema["properties"]


@pytest.mark.parametrize("command", [["schema"], ["info", str(TINY_SPEC)], ["--help"], ["--version"]])
def test_a_standard_output_that_cannot_be_written_is_one_line(command):
    # `> /dev/full` (a full disk under a redirect) was click.echo's OSError traceback, exit 1.
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(REPO / "cli.py"), *command], cwd=REPO, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=120, env=cli_env())
    assert result.returncode == 2, result.stderr
    assert result.stderr == "cannot write the output to standard output (No space left on device)\n", result.stderr


def test_a_closed_standard_output_still_builds(tmp_path):
    # `build ... >&-`: the guard around sys.stdout wrapped None, and every command failed
    # (AttributeError, exit 120); before it, print wrote nowhere and the model was built.
    import os

    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "build", str(TINY_SPEC), "--out", str(tmp_path)],
                            cwd=REPO, stderr=subprocess.PIPE, text=True, timeout=120, env=cli_env(),
                            preexec_fn=lambda: os.close(1))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny.keras").is_file()


def test_train_to_a_full_standard_output_says_so_not_that_the_run_folder_failed(tmp_path):
    # train's `except OSError` took the terminal's ENOSPC for the run folder's ("cannot write the
    # run folder ... make room"), though the run folder was fine.
    from train_support import image_folder

    photos = image_folder(tmp_path / "images", per_class=2)
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, str(REPO / "cli.py"), "train", str(TINY_SPEC), "--data", str(photos),
                                 "--epochs", "1", "--out", str(tmp_path / "run")], cwd=REPO, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=300, env=cli_env())
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "cannot write the output to standard output (No space left on device)"
