"""The notebook's ResNet-50, hand-written in PyTorch: the peer that benchmarks compare against.

    .venv/bin/python bench/peers/torch_resnet50.py      # prints and checks the parameter counts

Written as a PyTorch user would write the documented network (shared/reference/REFERENCE.md §1),
layer for layer the notebook's Keras code (tests/helpers/notebook_resnet.py):
- stem: ZeroPadding 3 -> Conv 64, 7x7 stride 2, valid -> BatchNorm -> ReLU -> MaxPool 3x3 stride 2;
- stages 2-5: one convolutional block (stride on its first 1x1 convolution and on the projection
  shortcut) then identity blocks; filters [64,64,256]x3 (s=1), [128,128,512]x4, [256,256,1024]x6,
  [512,512,2048]x3 (s=2);
- head: AvgPool 2x2 -> Flatten -> Linear to `classes`.

Conventions translated from Keras: every convolution keeps its bias (Keras's default); BatchNorm
uses Keras's epsilon 1e-3 and momentum 0.99, which is 0.01 in PyTorch's convention (PyTorch's
momentum weighs the new batch, Keras's the old average); kernels glorot_uniform (PyTorch calls it
xavier_uniform) and biases zero, as Keras initializes them. The module returns logits: PyTorch's
`CrossEntropyLoss` applies the softmax that the notebook's Dense layer applies, in one fused and
numerically safer op, which is how a PyTorch user trains.

Parameter counts: Keras counts BatchNorm's moving mean and variance as (non-trainable) weights,
PyTorch keeps them as buffers. So PyTorch's parameters are Keras's *trainable* count, 23,546,886,
and parameters + BatchNorm running statistics are Keras's total, 23,600,006 (REFERENCE.md §1).
"""

from __future__ import annotations

from torch import nn

# shared/reference/REFERENCE.md §1, ResNet-50 at 64x64x3 with 6 classes.
REFERENCE_TOTAL = 23_600_006
REFERENCE_TRAINABLE = 23_546_886
REFERENCE_NON_TRAINABLE = 53_120  # BatchNorm moving mean + variance: 2 x 26,560 channels

BN_EPSILON = 1e-3  # Keras's default
BN_MOMENTUM = 0.01  # Keras's momentum 0.99, in PyTorch's convention (1 - 0.99)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1, padding: int = 0) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=True),
        nn.BatchNorm2d(out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM),
    ]


class Bottleneck(nn.Module):
    """The notebook's `convolutional_block` (with a projection shortcut) or `identity_block`.

    Its f x f convolution is Keras's `same` padding: odd f, stride 1, so padding f // 2.
    """

    def __init__(self, in_channels: int, filters: tuple[int, int, int], f: int = 3, stride: int = 1,
                 projection: bool = False):
        super().__init__()
        f1, f2, f3 = filters
        self.branch = nn.Sequential(
            *_conv_bn(in_channels, f1, 1, stride), nn.ReLU(inplace=True),
            *_conv_bn(f1, f2, f, 1, f // 2), nn.ReLU(inplace=True),
            *_conv_bn(f2, f3, 1),
        )
        self.shortcut = nn.Sequential(*_conv_bn(in_channels, f3, 1, stride)) if projection else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.branch(x) + self.shortcut(x))


# (filters, blocks, stride of the convolutional block): the notebook's stages 2-5.
STAGES = (((64, 64, 256), 3, 1), ((128, 128, 512), 4, 2), ((256, 256, 1024), 6, 2), ((512, 512, 2048), 3, 2))


def resnet50_notebook(classes: int = 6) -> nn.Module:
    """The documented ResNet-50 for 64x64x3 inputs (NCHW tensors; channels_last memory works too)."""
    layers: list[nn.Module] = [
        nn.ZeroPad2d(3), *_conv_bn(3, 64, 7, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
    ]
    channels = 64
    for filters, blocks, stride in STAGES:
        layers.append(Bottleneck(channels, filters, stride=stride, projection=True))
        layers += [Bottleneck(filters[2], filters) for _ in range(blocks - 1)]
        channels = filters[2]
    # 64 -> 32 (conv1) -> 15 (max pool) -> 8 -> 4 -> 2 (stages 3-5) -> 1 (avg pool 2x2)
    layers += [nn.AvgPool2d(2), nn.Flatten(), nn.Linear(channels, classes)]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # Keras's glorot_uniform
            nn.init.zeros_(module.bias)
    return model


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """Counts in Keras's terms: trainable = PyTorch parameters; total adds BatchNorm's running stats."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(m.running_mean.numel() + m.running_var.numel()
                  for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    return {"total": trainable + running, "trainable": trainable, "non_trainable": running}


def check_reference_counts(model: nn.Module) -> None:
    """Raise unless `model` (6 classes) has the documented network's counts, REFERENCE.md §1."""
    want = {"total": REFERENCE_TOTAL, "trainable": REFERENCE_TRAINABLE, "non_trainable": REFERENCE_NON_TRAINABLE}
    got = parameter_counts(model)
    if got != want:
        raise AssertionError(f"torch ResNet-50 counts {got} differ from REFERENCE.md §1 {want}")


if __name__ == "__main__":
    import torch

    network = resnet50_notebook(6)
    check_reference_counts(network)
    output = network(torch.zeros(2, 3, 64, 64))
    assert tuple(output.shape) == (2, 6), output.shape
    print(parameter_counts(network), "= REFERENCE.md §1; output", tuple(output.shape))
