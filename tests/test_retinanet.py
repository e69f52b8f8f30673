"""RetinaNet (architectures/detection/retinanet_resnet50.yaml) against its reference, keras-hub
0.32's RetinaNetObjectDetector on a ResNet-50 RetinaNetBackbone (min_level 3, max_level 7,
use_p5=False, 91 classes): the plan's pyramid and shared subnets here; with `-m slow`, keras-hub's
model built, its counts compared, its weights loaded into the spec's model layer by layer and
both run on one input (tests/test_zoo.py checks the file's counts statically)."""

from __future__ import annotations

import numpy as np
import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

SPEC = REPO / "architectures" / "detection" / "retinanet_resnet50.yaml"
SMALL = ["input.shape=[128,128,3]"]  # P3 16x16 ... P7 1x1: every level, in a second


def test_five_levels_of_anchors_and_one_set_of_subnet_weights():
    plan = load_checked_spec(SPEC, SMALL).plan
    outputs = {name: node.out_shape for name, node in plan.output_nodes().items()}
    anchors = 9 * sum(side * side for side in (16, 8, 4, 2, 1))
    assert outputs == {"bbox_regression": (anchors, 4), "cls_logits": (anchors, 91)}
    subnets = [n for n in plan.nodes if n.path[:2] == ("sections", "subnets") and n.kind == "conv"]
    # two subnets of five convolutions at five levels; only the first level's own weights
    assert len(subnets) == 2 * 5 * 5
    owners = [n for n in subnets if n.shares is None]
    assert [n.name for n in owners] == [f"{head}_{layer}" for head in ("box_head", "classification_head")
                                         for layer in ("conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "logits_layer")]
    assert sum(n.params for n in subnets) == 2 * 4 * 590_080 + 82_980 + 1_887_795
    for node in subnets:
        if node.shares is not None:
            first = plan.nodes[node.shares]
            assert (node.name, node.params, first.shares) == (first.name, 0, None)
            assert node.stats.macs == first.stats.macs * node.out_shape[0] ** 2 // first.out_shape[0] ** 2


def _keras_hub_detector(size: int):
    keras_hub = pytest.importorskip("keras_hub")
    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        use_pre_activation=False, image_shape=(size, size, 3))
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=7, use_p5=False,
                                                  image_shape=(size, size, 3))
    return keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=91)


def _keras_hub_name(plan, node, block_of: dict) -> str:
    """The path of the keras-hub layer holding the weights of our `node`: the spec names the
    stem, FPN and subnet layers as keras-hub does; the backbone's blocks (resnet_torch.yaml's,
    unnamed) are keras-hub's `stack{s}_block{b}_{k}_conv|bn`, k in the block's order (main path
    1, 2, 3, then the projection 0)."""
    if node.name is not None:
        for head in ("box_head", "classification_head"):
            if node.name.startswith(head + "_"):
                return f"{head}/{node.name[len(head) + 1:]}"
        return f"fpn/{node.name}" if node.path[:2] == ("sections", "fpn") else node.name
    stage, block, position = block_of[node.index]
    return f"stack{stage}_block{block}_{'11223300'[position]}_{'conv' if position % 2 == 0 else 'bn'}"


def _backbone_positions(plan) -> dict[int, tuple[int, int, int]]:
    """node index -> (stage, block in the stage, weighted layer in the block) for the stages."""
    found, blocks = {}, {}
    for group, _, nodes in plan.groups():
        if nodes[0].path[:1] != ("stages",):
            continue
        stage = nodes[0].path[1]
        block = blocks[stage] = blocks.get(stage, -1) + 1
        weighted = [n for n in nodes if n.params]
        for position, node in enumerate(weighted):
            found[node.index] = (stage, block, position)
    return found


@pytest.mark.slow
def test_counts_and_outputs_equal_keras_hub_with_its_weights():
    """keras-hub's network, its weights (batch-norm statistics randomized, seeded) copied into the
    spec's model layer for layer by name, both run on one random image at 128x128: this checks the
    top-down path, which FPN level feeds P6, the ReLU before P7, that one subnet serves all levels,
    and the order in which the levels' anchors are joined."""
    from archbuilder.keras.graph import _layer_names, build_model

    reference = _keras_hub_detector(128)
    checked = load_checked_spec(SPEC, SMALL)
    plan = checked.plan
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert (reference.count_params(), trainable) == (plan.total_params, plan.trainable_params) == (34_121_239, 34_068_119)

    rng = np.random.default_rng(0)
    held: dict[str, list] = {}
    for variable in reference.weights:
        holder, field = variable.path.rsplit("/", 1)
        if field in ("moving_mean", "beta"):
            variable.assign(rng.uniform(-0.2, 0.2, variable.shape).astype("float32"))
        elif field in ("moving_variance", "gamma"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype("float32"))
        held.setdefault(holder, []).append(variable)
    model = build_model(checked.spec, plan)
    # By name, not weights_nested's pairing by order and shape: that pairs all 124 groups here, but
    # wrongly (outputs off by ~100, measured): keras-hub's blocks make the projection before the
    # main path's last 1x1 convolution, of one shape with it in stage 2, and its graph lists the
    # FPN's and subnets' same-shaped 3x3 convolutions in another order than ours.
    names = _layer_names(plan)
    block_of = _backbone_positions(plan)
    mapped = {}
    for node in plan.nodes:
        if node.params and node.shares is None:
            mapped[_keras_hub_name(plan, node, block_of)] = model.get_layer(names[node.index])
    assert sorted(mapped) == sorted(held)  # every weighted layer on each side, once
    for holder, layer in mapped.items():
        assert [tuple(w.shape) for w in layer.weights] == [tuple(v.shape) for v in held[holder]], holder
        layer.set_weights([v.numpy() for v in held[holder]])

    x = rng.uniform(0, 1, (2, 128, 128, 3)).astype("float32")
    expected = reference(x, training=False)
    got = model(x, training=False)
    assert list(got) == ["bbox_regression", "cls_logits"]
    for key in got:
        want = np.asarray(expected[key])
        # the same Keras ops on the same weights in one process; measured 0 difference here. The
        # bound allows other summation orders: 1e-5 of the outputs' range, far below what a wrong
        # level, padding or missing ReLU moves.
        np.testing.assert_allclose(np.asarray(got[key]), want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
