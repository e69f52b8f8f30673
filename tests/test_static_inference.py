"""Static inference (no TensorFlow) against the published numbers of REFERENCE.md §2."""

from __future__ import annotations

import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, SHIPPED_SPECS

# shared/reference/REFERENCE.md §1-2 (notebook conventions: 64x64x3, 6 classes, conv bias):
# (total, trainable, non-trainable, forward MACs)
NOTEBOOK_CONVENTIONS = {
    "resnet18.yaml": (11_193_990, 11_184_390, 9_600, 143_477_760),
    "resnet34.yaml": (21_313_286, 21_296_262, 17_024, 292_187_136),
    "resnet50.yaml": (23_600_006, 23_546_886, 53_120, 308_178_944),  # = the notebook's model.summary()
    "resnet101.yaml": (42_670_470, 42_565_126, 105_344, 611_217_408),
    "resnet152.yaml": (58_383_238, 58_231_814, 151_424, 914_255_872),
}
# REFERENCE.md §2, ImageNet layout (224x224x3, 1000 classes, global average pooling):
# (total with conv bias, trainable with conv bias, MACs); ResNet-50/101/152 totals equal
# keras.applications.ResNet50/101/152.
IMAGENET = {
    "resnet18.yaml": (11_703_912, 11_694_312, 1_797_705_728),
    "resnet34.yaml": (21_823_208, 21_806_184, 3_639_209_984),
    "resnet50.yaml": (25_636_712, 25_583_592, 3_834_331_136),
    "resnet101.yaml": (44_707_176, 44_601_832, 7_546_552_320),
    "resnet152.yaml": (60_419_944, 60_268_520, 11_258_773_504),
}
# REFERENCE.md §2: trainable parameters without conv bias = torchvision's resnet18/34/50/101/152.
TORCHVISION_TRAINABLE = {
    "resnet18.yaml": 11_689_512,
    "resnet34.yaml": 21_797_672,
    "resnet50.yaml": 25_557_032,
    "resnet101.yaml": 44_549_160,
    "resnet152.yaml": 60_192_808,
}


@pytest.mark.parametrize("name", sorted(NOTEBOOK_CONVENTIONS))
def test_notebook_convention_totals_and_macs(name):
    plan = load_checked_spec(REPO / "architectures" / name).plan
    assert (plan.total_params, plan.trainable_params, plan.non_trainable_params, plan.macs) == NOTEBOOK_CONVENTIONS[name]
    assert plan.output.out_shape == (6,)


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_totals_and_macs(name):
    plan = load_checked_spec(REPO / "architectures" / "imagenet" / name).plan
    assert (plan.total_params, plan.trainable_params, plan.macs) == IMAGENET[name]
    assert plan.output.out_shape == (1000,)


@pytest.mark.parametrize("name", sorted(TORCHVISION_TRAINABLE))
def test_imagenet_without_conv_bias_matches_torchvision(name):
    plan = load_checked_spec(REPO / "architectures" / "imagenet" / name, ["defaults.use_bias=false"]).plan
    assert plan.trainable_params == TORCHVISION_TRAINABLE[name]


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=[str(p.relative_to(REPO)) for p in SHIPPED_SPECS])
def test_every_shipped_spec_opens_with_its_build_command(path):
    first = path.read_text().splitlines()[0]
    assert first == f"# Build: python cli.py build {path.relative_to(REPO)}"


def test_block_letters_continue_past_z():
    plan = load_checked_spec(REPO / "architectures" / "resnet152.yaml").plan
    names = [n.name for n in plan.nodes if n.name and n.name.startswith("res4") and n.name.endswith("_branch2a")]
    assert len(names) == 36
    assert names[:2] == ["res4a_branch2a", "res4b_branch2a"]
    assert names[25:28] == ["res4z_branch2a", "res4aa_branch2a", "res4ab_branch2a"]
    assert len(set(n.name for n in plan.nodes if n.name)) == len([n for n in plan.nodes if n.name])


def test_keras_naming_scheme_matches_keras_applications():
    plan = load_checked_spec(REPO / "architectures" / "imagenet" / "resnet50.yaml", ["defaults.naming=keras"]).plan
    names = [n.name for n in plan.nodes if n.group == "conv2_block1"]
    assert names == [
        "conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_1_relu",
        "conv2_block1_2_conv", "conv2_block1_2_bn", "conv2_block1_2_relu",
        "conv2_block1_3_conv", "conv2_block1_3_bn", "conv2_block1_0_conv", "conv2_block1_0_bn",
        "conv2_block1_add", "conv2_block1_out",
    ]
