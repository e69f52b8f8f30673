"""The model zoo (architectures/imagenet/), each file checked against the number kept beside its source.

Counts are at 224x224x3 (EfficientNet-B1: its own 240x240; counts do not depend on it) with 1,000
classes. `info` counts statically, without TensorFlow, in the default suite; Keras builds and, for
the keras.applications networks, the proof of equality run with `-m slow`: the reference is built
with `weights=None`, given seeded random weights with batch-norm statistics randomized, saved with
`model.save`, loaded into the spec's model with `--weights` (mapped by structure), and both must
predict the same on real photos within 1e-5 relative (tests/helpers/keras_reference.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from archbuilder.plan.validate import load_checked_spec
from tests.conftest import REPO, ZOO_SPECS

ZOO = REPO / "architectures" / "imagenet"
KERAS_315 = "keras.applications 3.15.1, weights=None: REFERENCE.md §2 'Other families'"
PYTORCH = "trainable, BatchNorm statistics are buffers there, no conv bias: REFERENCE.md §2"


@dataclass(frozen=True)
class Golden:
    file: str
    total: int | None  # Keras's count_params(); None where the source publishes only trainable
    trainable: int
    source: str
    overrides: tuple[str, ...] = ()
    keras_reference: str | None = None  # the keras.applications function the outputs are compared with
    keras_kwargs: tuple[tuple[str, float], ...] = ()
    keras_names: bool = True  # with a keras_reference: its weighted layers carry Keras's names too


GOLDEN = [
    Golden("resnet50_keras.yaml", 25_636_712, 25_583_592, "keras.applications.ResNet50: REFERENCE.md §2",
           keras_reference="ResNet50"),
    Golden("resnet50v2.yaml", 25_613_800, 25_568_360, f"ResNet50V2, {KERAS_315}", keras_reference="ResNet50V2"),
    Golden("mobilenetv2.yaml", 3_538_984, 3_504_872, f"MobileNetV2 alpha 1.0, {KERAS_315}",
           keras_reference="MobileNetV2"),
    Golden("mobilenetv2.yaml", 1_691_208, 1_677_128, f"MobileNetV2 alpha 0.35, {KERAS_315}",
           ("multipliers.width=0.35",), "MobileNetV2", (("alpha", 0.35),)),
    Golden("mobilenetv2.yaml", 6_156_712, 6_108_776, f"MobileNetV2 alpha 1.4, {KERAS_315}",
           ("multipliers.width=1.4",), "MobileNetV2", (("alpha", 1.4),)),
    Golden("efficientnet_b0.yaml", 5_330_571, 5_288_548, f"EfficientNetB0, {KERAS_315}",
           keras_reference="EfficientNetB0"),
    Golden("efficientnet_b1.yaml", 7_856_239, 7_794_184, f"EfficientNetB1, {KERAS_315}",
           keras_reference="EfficientNetB1"),
    Golden("convnext_tiny.yaml", 28_589_128, 28_589_128, f"ConvNeXtTiny, {KERAS_315}",
           keras_reference="ConvNeXtTiny", keras_names=False),  # Keras nests its stem in Sequentials
    Golden("resnext50_32x4d.yaml", None, 25_028_904, f"torchvision resnext50_32x4d, {PYTORCH}"),
    Golden("wide_resnet50_2.yaml", None, 68_883_240, f"torchvision wide_resnet50_2, {PYTORCH}"),
    Golden("seresnet50.yaml", None, 28_088_024, f"timm seresnet50, {PYTORCH}"),
    Golden("resnet50d.yaml", None, 25_576_264, f"timm resnet50d, {PYTORCH}"),
]
IDS = [f"{g.file}{''.join('@' + o.split('=')[1] for o in g.overrides)}" for g in GOLDEN]


def test_every_zoo_file_has_a_golden_row():
    assert sorted({ZOO / g.file for g in GOLDEN}) == ZOO_SPECS


@pytest.mark.parametrize("golden", GOLDEN, ids=IDS)
def test_static_counts(golden):
    plan = load_checked_spec(ZOO / golden.file, list(golden.overrides)).plan
    assert plan.trainable_params == golden.trainable, golden.source
    if golden.total is not None:
        assert plan.total_params == golden.total, golden.source
    else:
        # A Keras total is PyTorch's parameters plus each batch norm's two running statistics
        # per channel (REFERENCE.md §2); no convolution here carries a bias.
        channels = sum(n.out_shape[-1] for n in plan.nodes if n.kind == "batch_norm")
        assert plan.total_params == golden.trainable + 2 * channels


@pytest.mark.slow
@pytest.mark.parametrize("golden", GOLDEN, ids=IDS)
def test_keras_counts(golden):
    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(ZOO / golden.file, list(golden.overrides))
    model = build_model(checked.spec, checked.plan)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == (checked.plan.total_params, golden.trainable), golden.source


KERAS_REFERENCES = [g for g in GOLDEN if g.keras_reference]


@pytest.mark.slow
@pytest.mark.parametrize("golden", KERAS_REFERENCES, ids=[i for i, g in zip(IDS, GOLDEN) if g.keras_reference])
def test_equal_to_keras_applications(golden, tmp_path):
    import keras

    from archbuilder.keras.weights import open_weights_with_spec
    from archbuilder.keras.weights_h5 import load_h5_weights
    from tests.helpers.keras_reference import assert_predicts_as_reference, saved_reference, sign_photos

    keras.utils.clear_session()  # Keras's automatic names (`normalization`) as in a fresh process
    checked = load_checked_spec(ZOO / golden.file, list(golden.overrides))
    size = checked.spec.input.shape[0]
    images = sign_photos(size)
    reference = getattr(keras.applications, golden.keras_reference)(
        weights=None, input_shape=tuple(checked.spec.input.shape), **dict(golden.keras_kwargs)
    )
    assert reference.count_params() == golden.total
    path, expected = saved_reference(reference, tmp_path, images, residual_gamma=_residual_gamma)
    model, report = open_weights_with_spec(path, ZOO / golden.file, list(golden.overrides), strict=True)
    assert report.complete, report.format()
    assert_predicts_as_reference(model(images, training=False), expected)
    if golden.keras_names:
        # Keras's names too, so the .h5 weight files keras.applications downloads load by name.
        legacy = tmp_path / "reference.h5"
        reference.save(legacy)
        assert load_h5_weights(model, legacy, strict=True).complete


def _residual_gamma(layer) -> bool:
    # The batch norms that end a residual branch get small gammas (tests/helpers/notebook_resnet.py
    # says why): ResNet50's `conv2_block1_3_bn`, MobileNetV2's `block_1_project_BN`, EfficientNet's
    # `block2a_project_bn`. ResNetV2 and ConvNeXt end their branches without one.
    return layer.name.endswith(("_3_bn", "_project_BN", "project_bn"))
