"""The Keras graph: the notebook's ResNet-50 exactly, and static inference equal to Keras for
every shipped spec."""

from __future__ import annotations

import re

import numpy as np
import pytest

from archbuilder.keras.graph import build_model
from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, SHIPPED_SPECS, shipped_spec_params

import keras  # noqa: E402  (archbuilder.keras.graph sets TF's environment first)

TEST_SPECS = sorted((REPO / "tests" / "specs").glob("*.yaml"))
# Layers the notebook leaves unnamed get Keras's numbered names; they carry no weights.
AUTO_NAMED = re.compile(r"^(input|zero_padding2d|activation|max_pooling2d|add|flatten)_\d+$")
# ... and in Keras 3 (input_layer, zero_padding2d, activation_7, ...).
KERAS_AUTO_NAMED = re.compile(r"^(input_layer|zero_padding2d|activation|max_pooling2d|add|flatten)(_\d+)?$")
# A row of the notebook's model.summary() table, as the PDF-to-text extraction left it:
#   res2a_branch2b (Conv2D)<TAB>(None,<TAB>15,<TAB>15,<TAB>64)<TAB>36928<TAB>activation_5[0]
SUMMARY_ROW = re.compile(r"^(?P<name>\w+) \((?P<type>\w+)\)?\t\(None,\t?(?P<shape>[^)]*)\)\t+(?P<params>\d+)", re.M)
CLEAN_SHAPE = re.compile(r"^\d+(,\s*\d+)*$")


def notebook_summary(text: str) -> list[tuple[str, tuple[int, ...] | None, int]]:
    """(name, output shape or None where the extraction garbled it, params) per named layer.

    Five rows (res3a_branch2a … res3a_branch2b, flatten_1; three of them named) have their shape columns garbled by
    the text extraction ("8, 8\\t3, 12\\t28"); for those only the name and params are checked.
    """
    rows = []
    for match in SUMMARY_ROW.finditer(text):
        if AUTO_NAMED.match(match["name"]):
            continue
        shape_text = match["shape"].replace("\t", " ").strip()
        shape = tuple(int(d) for d in shape_text.split(",")) if CLEAN_SHAPE.match(shape_text) else None
        rows.append((match["name"], shape, int(match["params"])))
    return rows


@pytest.fixture(scope="module")
def resnet50():
    checked = load_checked_spec(REPO / "architectures" / "resnet50.yaml")
    return build_model(checked.spec, checked.plan)


def test_notebook_summary_is_reproduced_layer_by_layer(resnet50, notebook_text):
    expected = notebook_summary(notebook_text)
    assert len(expected) == 108  # 53 convolutions, 53 batch norms, avg_pool, fc6
    assert sum(shape is None for _, shape, _ in expected) == 3
    ours = [(layer.name, tuple(layer.output.shape[1:]), layer.count_params())
            for layer in resnet50.layers if not KERAS_AUTO_NAMED.match(layer.name)]
    assert [name for name, _, _ in ours] == [name for name, _, _ in expected]
    for (name, shape, params), (_, our_shape, our_params) in zip(expected, ours):
        assert our_params == params, name
        if shape is not None:
            assert our_shape == shape, name


def test_notebook_totals(resnet50, notebook_text):
    # The notebook's model.summary() footer, parsed from the reference text itself.
    totals = {k: int(v.replace(",", "")) for k, v in re.findall(r"^(Total|Trainable|Non-trainable) params: ([\d,]+)$", notebook_text, re.M)}
    trainable = sum(int(np.prod(w.shape)) for w in resnet50.trainable_weights)
    assert totals == {"Total": 23_600_006, "Trainable": 23_546_886, "Non-trainable": 53_120}
    assert (resnet50.count_params(), trainable) == (totals["Total"], totals["Trainable"])
    assert resnet50.get_layer("fc6").output.shape[1:] == (6,)


# shared/reference/REFERENCE.md §1 "Documented block outputs": out[1][1][0] printed by the notebook.
DOCUMENTED_BLOCK_OUTPUTS = {
    "identity_block.yaml": [0.94822985, 0.0, 1.16101444, 2.747859, 0.0, 1.36677003],
    "convolutional_block.yaml": [0.09018463, 1.23489773, 0.46822017, 0.0367176, 0.0, 0.65516603],
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED_BLOCK_OUTPUTS))
def test_documented_block_outputs(name):
    checked = load_checked_spec(REPO / "tests" / "specs" / name)
    model = build_model(checked.spec, checked.plan)
    np.random.seed(1)
    x = np.random.randn(3, 4, 4, 6)  # the notebook's X
    out = model(x.astype("float32"), training=False)  # inference mode, as learning_phase 0
    np.testing.assert_allclose(np.asarray(out)[1][1][0], DOCUMENTED_BLOCK_OUTPUTS[name], atol=1e-5, rtol=0)
    names = [layer.name for layer in model.layers if layer.weights]
    assert names[:2] == ["res1a_branch2a", "bn1a_branch2a"]


@pytest.mark.parametrize("path", shipped_spec_params(SHIPPED_SPECS + TEST_SPECS))
def test_static_inference_equals_keras(path):
    checked = load_checked_spec(path)
    model = build_model(checked.spec, checked.plan)
    plan = checked.plan
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (model.count_params(), trainable) == (plan.total_params, plan.trainable_params)
    named = plan.output_nodes()
    if named is None:
        assert tuple(model.output.shape[1:]) == plan.output.out_shape
    else:  # `outputs:` gives a dict, in the spec's order
        assert {k: tuple(t.shape[1:]) for k, t in model.output.items()} == {k: n.out_shape for k, n in named.items()}
        assert list(model.output) == list(named)
    # a node that shares an earlier node's layer (`share:`) runs that Keras layer again: no new layer
    assert len(model.layers) == sum(node.shares is None for node in plan.nodes)
    for node in plan.nodes:
        if node.name and node.kind != "input" and node.shares is None:
            layer = model.get_layer(node.name)
            assert (tuple(layer.output.shape[1:]), layer.count_params()) == (node.out_shape, node.params), node.name


def test_keras_naming_builds_every_layer_named():
    checked = load_checked_spec(REPO / "architectures" / "resnet18.yaml", ["defaults.naming=keras"])
    model = build_model(checked.spec, checked.plan)
    assert "conv3_block1_0_conv" in [layer.name for layer in model.layers]  # projection where shape changes
    assert "conv2_block1_0_conv" not in [layer.name for layer in model.layers]  # identity in stage 2


def test_default_initializer_is_keras_unseeded_glorot(tmp_path):
    spec = tmp_path / "plain.yaml"
    spec.write_text("name: plain\ninput: {shape: [8, 8, 3]}\nstem:\n  - {type: conv, filters: 4, kernel: 3, name: c}\n")
    checked = load_checked_spec(spec)
    first, second = (build_model(checked.spec, checked.plan) for _ in range(2))
    assert type(first.get_layer("c").kernel_initializer) is keras.initializers.GlorotUniform
    # Unseeded: two builds draw different kernels.
    assert not np.array_equal(first.get_layer("c").kernel.numpy(), second.get_layer("c").kernel.numpy())
    # Only a spec that asks for the TF1 draw gets it.
    tf1 = load_checked_spec(REPO / "architectures" / "resnet50.yaml")
    assert type(build_model(tf1.spec, tf1.plan).get_layer("conv1").kernel_initializer).__name__ == "GlorotUniformTF1"


def test_user_blocks_under_keras_naming_build_with_their_names():
    # tests/specs/block_language.yaml names its layers per scheme; static inference and Keras
    # agree under the keras scheme too (the notebook scheme is covered above with every spec).
    checked = load_checked_spec(REPO / "tests" / "specs" / "block_language.yaml", ["defaults.naming=keras"])
    model = build_model(checked.spec, checked.plan)
    for node in checked.plan.nodes:
        if node.name and node.kind != "input":
            layer = model.get_layer(node.name)
            assert (tuple(layer.output.shape[1:]), layer.count_params()) == (node.out_shape, node.params), node.name
    assert "block3a_expand_conv" in [layer.name for layer in model.layers]
    assert model.count_params() == checked.plan.total_params
