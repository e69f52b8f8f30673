"""The Python API: `archbuilder.build`, `load_spec`, `info`, and one exception type carrying located problems."""

from __future__ import annotations

import subprocess
import sys

import pytest

from train_support import REPO

RESNET50 = REPO / "architectures" / "resnet50.yaml"


def test_import_archbuilder_does_not_import_tensorflow():
    code = (
        "import sys, archbuilder\n"
        "assert callable(archbuilder.build) and callable(archbuilder.load_spec) and callable(archbuilder.info)\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_info_of_a_file_and_of_a_dict_give_the_reference_totals():
    import archbuilder

    # REFERENCE.md §2 (and the notebook): ResNet-50 at 64x64x3, 6 classes.
    facts = archbuilder.info(RESNET50)
    assert (facts["name"], facts["total_params"], facts["trainable_params"]) == ("ResNet50", 23_600_006, 23_546_886)
    spec = {
        "name": "small", "input": {"shape": [32, 32, 3]}, "classes": 4,
        "stem": [{"type": "conv", "filters": 8, "kernel": 3, "name": "c"}],
        "head": [{"type": "global_average_pool"}, {"type": "dense", "units": "classes", "activation": "softmax"}],
    }
    # conv 3*3*3*8 + 8 = 224; dense 8*4 + 4 = 36
    assert archbuilder.info(spec)["total_params"] == 260
    assert archbuilder.info(spec, overrides=["classes=10"])["total_params"] == 224 + 8 * 10 + 10


def test_load_spec_raises_one_exception_type_with_every_located_problem(tmp_path):
    import archbuilder

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: {shape: [32, 32, 3]}\nclasses: 2\nstem: []\nhead: []\ndefaults: {use_bais: true}\n")
    with pytest.raises(archbuilder.SpecError) as caught:
        archbuilder.load_spec(bad, overrides=["classes=-1"])
    lines = [str(p) for p in caught.value.problems]
    assert any(line.startswith(f"{bad}:6:") and "did you mean 'use_bias'" in line for line in lines), lines
    assert any(line.startswith("<--set classes=-1>:1:1: classes:") for line in lines), lines
    assert isinstance(caught.value, archbuilder.UserError)


def test_build_returns_the_keras_model_of_the_spec_with_overrides():
    import archbuilder

    model = archbuilder.build(REPO / "architectures" / "resnet18.yaml", overrides=["classes=3"])
    assert model.output_shape == (None, 3)
    assert model.count_params() == archbuilder.info(REPO / "architectures" / "resnet18.yaml",
                                                    overrides=["classes=3"])["total_params"]
