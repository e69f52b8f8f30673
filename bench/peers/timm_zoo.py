"""timm's network beside each zoo file (architectures/imagenet/), and a way to build it here.

TIMM_NAMES is the one place that maps a zoo file to the timm model bench/zoo_speed.py trains
against. Where the zoo file is the same network as a timm model (same layers, same count of
weights up to biases), the name is that model; where timm has no identical network, the nearest
one of the same family and cost is named and the note says what differs.

timm is a bench-only dependency (`pip install -e .[bench]`, timm 1.0.31 on torch 2.13.0+cpu).
"""

from __future__ import annotations

# zoo file stem -> (timm model name, what differs from our file; "" = the same network)
TIMM_NAMES: dict[str, tuple[str, str]] = {
    "convnext_tiny": ("convnext_tiny", ""),
    "efficientnet_b0": ("efficientnet_b0", ""),
    "efficientnet_b1": ("efficientnet_b1", ""),
    "mobilenetv2": ("mobilenetv2_100", ""),
    "resnet18": ("resnet18", "ours: the notebook's conventions (convolution biases, BN epsilon 1e-3)"),
    "resnet34": ("resnet34", "ours: the notebook's conventions (convolution biases, BN epsilon 1e-3)"),
    "resnet50": ("resnet50", "ours: v1, stride on the first 1x1 of a block (timm: v1.5, on the 3x3), biases"),
    "resnet101": ("resnet101", "ours: v1, stride on the first 1x1 of a block (timm: v1.5, on the 3x3), biases"),
    "resnet152": ("resnet152", "ours: v1, stride on the first 1x1 of a block (timm: v1.5, on the 3x3), biases"),
    "resnet50_keras": ("resnet50", "ours: keras.applications' v1, stride on the first 1x1 (timm: v1.5), biases"),
    "resnet50d": ("resnet50d", ""),
    "resnet50v2": ("resnetv2_50", "timm's pre-activation ResNet-50 v2; Keras's v2 puts the stride on the last block of a stage"),
    "resnext50_32x4d": ("resnext50_32x4d", ""),
    "seresnet50": ("seresnet50", ""),
    "wide_resnet50_2": ("wide_resnet50_2", ""),
    "xception": ("legacy_xception", ""),  # timm's port of Keras's Xception: 22,855,952 weights = our trainable count
    "vit_b16": ("vit_base_patch16_224", ""),  # 86,567,656 trainable, equal to ours (tests/test_vit.py)
}


def import_timm_without_torchvision():
    """timm, imported so that torchvision is never imported.

    timm 1.0.31 needs torchvision at import in two places, neither of which our networks use:
    - `timm.layers` imports `torchvision.ops.misc.FrozenBatchNorm2d` (for freezing batch norms);
    - timm's model files import constants from `timm.data` (IMAGENET_DEFAULT_MEAN and the like),
      and `timm.data`'s `__init__` imports its data-loading modules, which import torchvision.
    The index's torchvision may be a build that cannot load beside torch+cpu, and installing
    another is not ours to do (issue 21). So, before timm is imported: `torchvision` and
    `torchvision.ops.misc` are registered as stand-ins whose FrozenBatchNorm2d refuses to be built
    (a network that used it would fail loudly, not train something else), and `timm.data` as a
    package whose `__init__` is not run, holding the names of `timm/data/constants.py` (a file of
    constants that imports nothing). The models, their layers and their initialization are timm's
    own, unchanged. Bench-only: nothing in archbuilder imports this.
    """
    import importlib.util
    import sys
    import types
    from pathlib import Path

    if "timm" in sys.modules:
        return sys.modules["timm"]
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("timm is not installed: pip install -e .[bench] (or timm==1.0.31 --no-deps)")
    _stand_in_for_torchvision(sys.modules, types)
    data_folder = Path(spec.origin).parent / "data"
    data = types.ModuleType("timm.data")
    data.__path__ = [str(data_folder)]
    data.__package__ = "timm.data"
    constants_spec = importlib.util.spec_from_file_location("timm.data.constants", data_folder / "constants.py")
    constants = importlib.util.module_from_spec(constants_spec)
    constants_spec.loader.exec_module(constants)
    data.constants = constants
    data.__dict__.update({name: value for name, value in vars(constants).items() if not name.startswith("_")})
    sys.modules["timm.data"] = data
    sys.modules["timm.data.constants"] = constants
    import timm

    return timm


def _stand_in_for_torchvision(modules: dict, types) -> None:
    import torch

    class FrozenBatchNorm2d(torch.nn.Module):
        def __init__(self, *args, **kwargs):
            raise NotImplementedError("torchvision's FrozenBatchNorm2d is not available in bench/peers/timm_zoo.py "
                                      "(torchvision is never imported there)")

    torchvision = types.ModuleType("torchvision")
    torchvision.__path__ = []  # a package with no submodules: `import torchvision.models` fails as absent
    ops = types.ModuleType("torchvision.ops")
    ops.__path__ = []
    misc = types.ModuleType("torchvision.ops.misc")
    misc.FrozenBatchNorm2d = FrozenBatchNorm2d
    torchvision.ops, ops.misc = ops, misc
    modules.update({"torchvision": torchvision, "torchvision.ops": ops, "torchvision.ops.misc": misc})


def create_timm_model(name: str, classes: int):
    """timm's `name` with random weights and a head of `classes` (no download)."""
    return import_timm_without_torchvision().create_model(name, pretrained=False, num_classes=classes)


def timm_version() -> str:
    return import_timm_without_torchvision().__version__
