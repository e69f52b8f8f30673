"""The model zoo (architectures/imagenet/, the U-Nets and DeepLabV3+ of architectures/segmentation/, RetinaNet of architectures/detection/), each file checked against the counts written in its own
`reference:` section (archbuilder/spec/reference.py), so a new zoo network is one file.

Counts are at 224x224x3 (EfficientNet-B1: its own 240x240; counts do not depend on it) with 1,000
classes (the U-Nets: their own input, 2 classes). `info` counts statically, without TensorFlow, in the default suite; Keras builds and, for
the keras.applications networks, the proof of equality run with `-m slow`: the reference is built
with `weights=None`, given seeded random weights with batch-norm statistics randomized, saved with
`model.save`, loaded into the spec's model with `--weights` (mapped by structure), and both must
predict the same on real photos within 1e-5 relative (tests/helpers/keras_reference.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from archbuilder.plan.validate import load_checked_spec
from archbuilder.spec.reference import ReferenceSpec
from train_support import REPO, ZOO_SPECS

ZOO = REPO / "architectures" / "imagenet"


@dataclass(frozen=True)
class Golden:
    """One `reference:` entry of one zoo file."""

    path: Path
    reference: ReferenceSpec

    @property
    def overrides(self) -> list[str]:
        return list(self.reference.overrides)

    @property
    def source(self) -> str:
        r = self.reference
        return f"{r.source} ({r.version}): {r.note}" if r.version else f"{r.source}: {r.note}"

    @property
    def id(self) -> str:
        return self.path.name + "".join("@" + o.split("=", 1)[1] for o in self.overrides)


def _golden() -> list[Golden]:
    # The resolved spec's entries (validation type-checks them); each file must write its own,
    # which test_every_zoo_file_writes_its_own_reference checks.
    return [Golden(path, reference) for path in ZOO_SPECS
            for reference in (load_checked_spec(path).spec.reference or ())]


GOLDEN = _golden()
IDS = [g.id for g in GOLDEN]


@pytest.mark.parametrize("path", ZOO_SPECS, ids=lambda p: p.name)
def test_every_zoo_file_writes_its_own_reference(path):
    """In the file itself, not inherited through `extends:` from the network it varies."""
    own = yaml.safe_load(path.read_text(encoding="utf-8")).get("reference")
    assert own, f"{path}: no reference: section of its own"
    assert [ReferenceSpec.model_validate(entry) for entry in own] == load_checked_spec(path).spec.reference


@pytest.mark.parametrize("golden", GOLDEN, ids=IDS)
def test_static_counts(golden):
    plan = load_checked_spec(golden.path, golden.overrides).plan
    assert plan.trainable_params == golden.reference.trainable_params, golden.source
    if golden.reference.total_params is not None:
        assert plan.total_params == golden.reference.total_params, golden.source
    else:
        # A Keras total is PyTorch's parameters plus each batch norm's two running statistics
        # per channel (REFERENCE.md §2); no convolution here carries a bias.
        channels = sum(n.out_shape[-1] for n in plan.nodes if n.kind == "batch_norm")
        assert plan.total_params == golden.reference.trainable_params + 2 * channels


@pytest.mark.slow
@pytest.mark.parametrize("golden", GOLDEN, ids=IDS)
def test_keras_counts(golden):
    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(golden.path, golden.overrides)
    model = build_model(checked.spec, checked.plan)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == (checked.plan.total_params, golden.reference.trainable_params), \
        golden.source


KERAS_REFERENCES = [g for g in GOLDEN if g.reference.keras_application]


@pytest.mark.slow
@pytest.mark.parametrize("golden", KERAS_REFERENCES, ids=[g.id for g in KERAS_REFERENCES])
def test_equal_to_keras_applications(golden, tmp_path):
    import keras

    from archbuilder.keras.weights import open_weights_with_spec
    from archbuilder.keras.weights_h5 import load_h5_weights
    from tests.helpers.keras_reference import assert_predicts_as_reference, saved_reference, sign_photos

    keras.utils.clear_session()  # Keras's automatic names (`normalization`) as in a fresh process
    checked = load_checked_spec(golden.path, golden.overrides)
    size = checked.spec.input.shape[0]
    images = sign_photos(size)
    reference = getattr(keras.applications, golden.reference.keras_application)(
        weights=None, input_shape=tuple(checked.spec.input.shape), **golden.reference.keras_arguments
    )
    assert reference.count_params() == golden.reference.total_params
    path, expected = saved_reference(reference, tmp_path, images, residual_gamma=_residual_gamma)
    model, report = open_weights_with_spec(path, golden.path, golden.overrides, strict=True)
    assert report.complete, report.format()
    assert_predicts_as_reference(model(images, training=False), expected)
    if golden.reference.keras_names:
        # Keras's names too, so the .h5 weight files keras.applications downloads load by name.
        legacy = tmp_path / "reference.h5"
        reference.save(legacy)
        assert load_h5_weights(model, legacy, strict=True).complete


def _residual_gamma(layer) -> bool:
    # The batch norms that end a residual branch get small gammas (tests/helpers/notebook_resnet.py
    # says why): ResNet50's `conv2_block1_3_bn`, MobileNetV2's `block_1_project_BN`, EfficientNet's
    # `block2a_project_bn`. ResNetV2 and ConvNeXt end their branches without one.
    return layer.name.endswith(("_3_bn", "_project_BN", "project_bn"))


SMALL = """\
name: small
input: {shape: [16, 16, 3]}
classes: 3
stem: [{type: conv, filters: 4, kernel: 3}]
head: [{type: global_average_pool}, {type: dense, units: classes}]
"""


def test_a_reference_section_is_type_checked_and_changes_no_network(tmp_path):
    from click.testing import CliRunner

    from archbuilder.cli import main
    from train_support import spec_problem_lines

    plain, noted = tmp_path / "plain.yaml", tmp_path / "noted.yaml"
    plain.write_text(SMALL)
    noted.write_text(SMALL + "reference:\n  - {source: hand count, trainable_params: 127, note: 3*3*3*4+4 + 4*3+3}\n")
    nodes = lambda path: [(n.name, n.kind, n.out_shape, n.params) for n in load_checked_spec(path).plan.nodes]  # noqa: E731
    assert nodes(noted) == nodes(plain)
    assert load_checked_spec(noted).plan.trainable_params == load_checked_spec(noted).spec.reference[0].trainable_params
    result = CliRunner().invoke(main, ["diff", str(plain), str(noted), "--json"])
    assert result.exit_code == 0 and '"fields": []' in result.output, result.output
    bad = SMALL + "reference:\n  - {source: x, trainable_params: true, total_params: -1, keras_application: 'a b'}\n"
    lines = spec_problem_lines(tmp_path / "bad.yaml", bad)
    assert [line.split(": ")[1] for line in lines] == [
        "reference.0.trainable_params", "reference.0.total_params", "reference.0.keras_application"], lines
