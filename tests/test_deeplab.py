"""DeepLabV3+ (architectures/segmentation/deeplabv3plus_resnet50.yaml) against its reference,
VainF/DeepLabV3Plus-Pytorch's `deeplabv3plus_resnet50` (network/_deeplab.py on torchvision's
resnet50, output stride 16), rebuilt here in PyTorch module for module (torchvision is not
installed), so its counts are measured, not copied. Counts and output shapes; the Keras build of
the full network runs with `-m slow` in test_zoo.py.
"""

from __future__ import annotations

import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

SPEC = REPO / "architectures" / "segmentation" / "deeplabv3plus_resnet50.yaml"
torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


def _conv_bn(i, o, kernel=1, stride=1, dilation=1):
    return [nn.Conv2d(i, o, kernel, stride, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(o)]


class _Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3x3 convolution)."""

    def __init__(self, i, planes, stride, dilation):
        super().__init__()
        self.main = nn.Sequential(*_conv_bn(i, planes), nn.ReLU(), *_conv_bn(planes, planes, 3, stride, dilation),
                                  nn.ReLU(), *_conv_bn(planes, planes * 4))
        self.down = nn.Sequential(*_conv_bn(i, planes * 4, 1, stride)) if stride != 1 or i != planes * 4 else None

    def forward(self, x):
        return F.relu(self.main(x) + (x if self.down is None else self.down(x)))


def _layer(i, planes, blocks, stride, dilate):
    # torchvision's _make_layer with replace_stride_with_dilation: the stride becomes dilation 2,
    # and the first block keeps the previous dilation (1)
    first_stride, dilation = (1, 2) if dilate else (stride, 1)
    layers = [_Bottleneck(i, planes, first_stride, 1)]
    layers += [_Bottleneck(planes * 4, planes, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class _ASPP(nn.Module):
    def __init__(self, i, rates, o=256):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(*_conv_bn(i, o), nn.ReLU())] +
                                   [nn.Sequential(*_conv_bn(i, o, 3, 1, r), nn.ReLU()) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn(i, o), nn.ReLU())
        self.project = nn.Sequential(*_conv_bn(5 * o, o), nn.ReLU(), nn.Dropout(0.1))

    def forward(self, x):
        pooled = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([c(x) for c in self.convs] + [pooled], dim=1))


class DeepLabV3PlusResNet50(nn.Module):
    """VainF's deeplabv3plus_resnet50(num_classes, output_stride=16): IntermediateLayerGetter
    (layer1 -> low_level, layer4 -> out; the fc is dropped), DeepLabHeadV3Plus, the upsampling."""

    def __init__(self, classes=21):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        self.layer1 = _layer(64, 64, 3, 1, False)
        self.rest = nn.Sequential(_layer(256, 128, 4, 2, False), _layer(512, 256, 6, 2, False),
                                  _layer(1024, 512, 3, 2, True))
        self.project = nn.Sequential(*_conv_bn(256, 48), nn.ReLU())
        self.aspp = _ASPP(2048, [6, 12, 18])
        self.classifier = nn.Sequential(*_conv_bn(304, 256, 3), nn.ReLU(), nn.Conv2d(256, classes, 1))

    def forward(self, x):
        low = self.layer1(self.stem(x))
        out = self.aspp(self.rest(low))
        low = self.project(low)
        out = F.interpolate(out, size=low.shape[2:], mode="bilinear", align_corners=False)
        out = self.classifier(torch.cat([low, out], dim=1))
        return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=False)


def _bn_channels(model) -> int:
    return sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_counts_equal_the_pytorch_reference():
    reference = DeepLabV3PlusResNet50(21)
    trainable = sum(p.numel() for p in reference.parameters())
    plan = load_checked_spec(SPEC).plan
    assert plan.trainable_params == trainable == 39_761_845
    # Keras keeps the batch norms' moving mean and variance as weights; PyTorch as buffers
    assert plan.non_trainable_params == 2 * _bn_channels(reference) == 56_800


def test_output_and_skip_shapes_equal_the_pytorch_reference():
    """At a small input (64x64: stride 16 gives 4x4, the low-level map 16x16) the two agree on
    every shape the decoder joins."""
    reference = DeepLabV3PlusResNet50(21).eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, 64, 64)
        low = reference.layer1(reference.stem(x))
        deep = reference.rest(low)
        out = reference(x)
    plan = load_checked_spec(SPEC, ["input.shape=[64,64,3]", "head.0.size=64"]).plan

    def last(prefix):  # a part's output: its last node
        return [n for n in plan.nodes if n.path[:len(prefix)] == prefix][-1].out_shape

    channels_last = lambda t: (*t.shape[2:], t.shape[1])  # noqa: E731
    assert last(("stages", 0)) == channels_last(low) == (16, 16, 256)
    assert last(("stages", 3)) == channels_last(deep) == (4, 4, 2048)
    assert last(("sections", "aspp")) == (4, 4, 256)
    assert plan.output.out_shape == channels_last(out) == (64, 64, 21)


@pytest.mark.slow
def test_outputs_equal_the_pytorch_reference_with_its_weights():
    """The architecture, not only its counts: the PyTorch network's weights (batch-norm statistics
    randomized) copied into the spec's Keras model in order, and both run on one random input at
    64x64. This checks the dilation of the last stage, the padding, the ASPP's branches and image
    pooling, and that Keras's bilinear Resizing is PyTorch's interpolate(align_corners=False)."""
    import numpy as np

    from archbuilder.keras.graph import _layer_names, build_model

    torch.manual_seed(0)
    reference = DeepLabV3PlusResNet50(21).eval()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    # PyTorch's modules in the order the spec creates its layers: the backbone, the ASPP, then the decoder
    parts = [reference.stem, reference.layer1, reference.rest, reference.aspp.convs, reference.aspp.pool,
             reference.aspp.project, reference.project, reference.classifier]
    torch_layers = [m for part in parts for m in part.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    checked = load_checked_spec(SPEC, ["input.shape=[64,64,3]", "head.0.size=64"])
    model = build_model(checked.spec, checked.plan)
    # in plan order (model.layers is Keras's topological order, which may put a shortcut first)
    keras_layers = [model.get_layer(name) for name in _layer_names(checked.plan)]
    keras_layers = [layer for layer in keras_layers if layer.weights]
    assert len(keras_layers) == len(torch_layers)
    for layer, module in zip(keras_layers, torch_layers):
        if isinstance(module, nn.Conv2d):
            assert type(layer).__name__ == "Conv2D" and layer.dilation_rate == module.dilation, layer.name
            weights = [module.weight.detach().numpy().transpose(2, 3, 1, 0)]
            weights += [module.bias.detach().numpy()] if module.bias is not None else []
        else:
            assert type(layer).__name__ == "BatchNormalization" and layer.epsilon == module.eps, layer.name
            weights = [t.detach().numpy() for t in (module.weight, module.bias, module.running_mean, module.running_var)]
        layer.set_weights(weights)
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(reference(torch.from_numpy(x.transpose(0, 3, 1, 2))), dim=1).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(model(x, training=False))
    # float32 through ~110 layers in two kernel libraries whose summation orders differ: measured
    # 2.2e-8 at most on probabilities near 1/21 (7e-7 relative); 1e-6 absolute leaves room for
    # other CPUs, while a wrong dilation, padding or resize moves them far more.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
