"""The U-Nets of architectures/segmentation/ (issue 18 item 6): the paper's shapes, counts equal to
the paper's network written in PyTorch (and to milesial/Pytorch-UNet's configuration with batch
norm), a built model that predicts a map for a real photo, equal outputs to a hand-written Keras
U-Net with the same weights; and `train`/`evaluate` refusing a network that is no classifier
(issue 18 item 7) in one line, where `predict` shows its map.

The static counts against each file's `reference:` section are tests/test_zoo.py's; the Keras
counts too (`-m slow`). PyTorch is a bench-only dependency: without it those tests skip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO, IMAGES, run_cli_in_process

VALID = REPO / "architectures" / "segmentation" / "unet.yaml"
SAME = REPO / "architectures" / "segmentation" / "unet_same.yaml"
PHOTO = IMAGES / "0" / "IMG_1118.JPG"
# The smallest size of the paper's family 16k + 60 whose bottom map is 8x8 (k = 8): 188 -> 4x4x2.
SMALL = ["--set", "input.shape=[188,188,1]"]


def _reference(path):
    (reference,) = load_checked_spec(path).spec.reference
    return reference


# -- shapes -----------------------------------------------------------------------------------------

def test_the_papers_tile_sizes():
    """Fig. 1 of the paper: 572x572 in, 568, 280, 136, 64 at the four skips, 28 at the bottom, 388x388x2 out."""
    plan = load_checked_spec(VALID).plan
    stages = [n.out_shape for n in plan.nodes if n.group != "head" and n.kind == "activation"]
    assert [stages[i] for i in (1, 3, 5, 7, 9)] == [
        (568, 568, 64), (280, 280, 128), (136, 136, 256), (64, 64, 512), (28, 28, 1024)]
    concats = [n.out_shape for n in plan.nodes if n.kind == "concat"]
    assert concats == [(56, 56, 1024), (104, 104, 512), (200, 200, 256), (392, 392, 128)]
    assert plan.output.out_shape == (388, 388, 2)
    assert load_checked_spec(SAME).plan.output.out_shape == (512, 512, 2)


@pytest.mark.parametrize("k", [8, 12, 32])
def test_the_crops_hold_for_every_valid_size(k):
    # The file's comment: an input of side 16k + 60 (k >= 8) gives an output of side 16k - 124, same crops.
    plan = load_checked_spec(VALID, [f"input.shape=[{16 * k + 60},{16 * k + 60},1]"]).plan
    assert plan.output.out_shape == (16 * k - 124, 16 * k - 124, 2)


def test_a_size_outside_the_family_is_a_located_shape_error(tmp_path):
    from archbuilder.errors import SpecError

    with pytest.raises(SpecError) as error:
        load_checked_spec(VALID, ["input.shape=[570,570,1]"])
    (problem,) = error.value.problems
    assert "head.2" in str(problem) and "55x55x512 and 54x54x512" in str(problem), str(problem)


# -- counts and outputs against PyTorch -------------------------------------------------------------

def _torch_unet(padding: int, batch_norm: bool = False, in_channels: int = 1, classes: int = 2):
    """The paper's U-Net in PyTorch (padding 0: Fig. 1; padding 1: same). With batch_norm, the
    configuration of milesial/Pytorch-UNet's UNet(bilinear=False): a BatchNorm2d after each 3x3."""
    import torch
    from torch import nn

    def double(i, o):
        layers = []
        for a in (i, o):
            layers += [nn.Conv2d(a, o, 3, padding=padding)] + ([nn.BatchNorm2d(o)] if batch_norm else []) + [nn.ReLU()]
        return nn.Sequential(*layers)

    widths = [64, 128, 256, 512, 1024]

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.down = nn.ModuleList([double(in_channels, 64)] + [double(a, b) for a, b in zip(widths, widths[1:])])
            self.up = nn.ModuleList([nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in reversed(widths[1:])])
            self.decode = nn.ModuleList([double(w, w // 2) for w in reversed(widths[1:])])
            self.out = nn.Conv2d(64, classes, 1)

        def forward(self, x):
            skips = []
            for k, level in enumerate(self.down):
                x = level(nn.functional.max_pool2d(x, 2) if k else x)
                skips.append(x)
            skips.pop()
            for up, decode in zip(self.up, self.decode):
                x, skip = up(x), skips.pop()
                c = (skip.shape[-1] - x.shape[-1]) // 2  # the paper's crop: the center
                x = decode(torch.cat([skip[..., c:skip.shape[-2] - c, c:skip.shape[-1] - c], x], 1))
            return self.out(x).softmax(1)

    return UNet()


@pytest.mark.parametrize("path, padding", [(VALID, 0), (SAME, 1)], ids=["valid", "same"])
def test_counts_equal_the_papers_network_in_pytorch(path, padding):
    pytest.importorskip("torch")
    count = sum(p.numel() for p in _torch_unet(padding).parameters())
    assert count == _reference(path).trainable_params == load_checked_spec(path).plan.trainable_params == 31_030_658


def test_milesial_configuration_adds_its_batch_norms():
    """milesial/Pytorch-UNet's UNet(n_channels=1, n_classes=2, bilinear=False) is the same network
    with a BatchNorm2d after each 3x3 convolution: gamma and beta per channel are trainable."""
    torch = pytest.importorskip("torch")
    model = _torch_unet(1, batch_norm=True)
    plan = load_checked_spec(SAME).plan
    channels = sum(n.out_shape[-1] for n in plan.nodes if n.kind == "conv" and n.layer.kernel == 3)
    assert channels == 5_888
    assert sum(p.numel() for p in model.parameters()) == plan.trainable_params + 2 * channels == 31_042_434
    statistics = sum(b.numel() for b in model.buffers() if b.dtype != torch.int64)  # not num_batches_tracked
    assert statistics == 2 * channels


@pytest.mark.parametrize("path, size, padding", [(VALID, 188, 0), (SAME, 64, 1)], ids=["valid", "same"])
def test_output_shape_equals_pytorch(path, size, padding):
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        out = _torch_unet(padding).eval()(torch.zeros(1, 1, size, size))
    plan = load_checked_spec(path, [f"input.shape=[{size},{size},1]"]).plan
    assert tuple(out.shape[2:]) + tuple(out.shape[1:2]) == plan.output.out_shape


# -- build, predict; train and evaluate refuse ------------------------------------------------------

@pytest.fixture(scope="module")
def small_unet(tmp_path_factory):
    """The valid U-Net at 188x188x1 (31M weights as at 572; 6 GMACs a forward pass, not 150), built by the CLI."""
    out = tmp_path_factory.mktemp("unet")
    result = run_cli_in_process("build", str(VALID), *SMALL, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Total params: 31,030,658" in result.stdout
    return out / "UNet.keras"


@pytest.mark.slow  # 13 s: a 31M-weight predict twice; the default suite keeps the build and evaluate's refusal
def test_build_writes_a_model_that_maps_a_real_photo(small_unet):
    result = run_cli_in_process("predict", str(small_unet), str(PHOTO), "--json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["output_shape"] == [4, 4, 2]
    assert set(row["pixel_share"]) == {"0", "1"} and sum(row["pixel_share"].values()) == pytest.approx(1.0)
    text = run_cli_in_process("predict", str(small_unet), str(PHOTO))
    assert text.returncode == 0 and "output 4x4x2 (class probabilities per pixel)" in text.stdout, text.stderr


def _refused(result, *needles):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and all(n in lines[0] for n in needles), lines


def test_evaluate_refuses_a_map_in_one_line(small_unet):
    _refused(run_cli_in_process("evaluate", str(small_unet), "--data", str(IMAGES)),
             "UNet.keras", "outputs 4x4x2 per image, not one value per class", "classifiers only")


def test_export_refuses_a_map_before_writing_anything(small_unet, tmp_path):
    # It wrote the export, then failed its own classifier check on it, leaving the file (or
    # replacing an earlier export at --out) behind.
    earlier = tmp_path / "earlier.onnx"
    earlier.write_bytes(b"an earlier export")
    for fmt, out in (("onnx", earlier), ("litert", tmp_path / "u.tflite"), ("saved_model", tmp_path / "sm")):
        _refused(run_cli_in_process("export", str(small_unet), "--format", fmt, "--out", str(out)),
                 "UNet.keras: the model outputs a map (4x4x2 per image)")
    assert earlier.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier.onnx"]


def test_train_refuses_a_map_before_reading_data_or_writing(tmp_path):
    out = tmp_path / "run"
    _refused(run_cli_in_process("train", str(VALID), "--data", str(IMAGES), "--out", str(out)),
             "unet.yaml", "outputs 388x388x2 per image, not one value per class")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("path, shape", [(VALID, [388, 388, 2]), (SAME, [512, 512, 2])], ids=["valid", "same"])
def test_full_size_build_maps_a_real_photo(path, shape, tmp_path):
    result = run_cli_in_process("build", str(path), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (model,) = tmp_path.glob("*.keras")
    predicted = run_cli_in_process("predict", str(model), str(PHOTO), "--json")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["output_shape"] == shape


def _hand_written_keras_unet(size: int):
    """Fig. 1 in Keras layers, written without archbuilder."""
    import keras
    from keras import layers

    def double(x, filters):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, activation=None)(x)
            x = layers.Activation("relu")(x)
        return x

    inputs = keras.Input((size, size, 1))
    x, skips = inputs, []
    for k, filters in enumerate([64, 128, 256, 512, 1024]):
        x = double(layers.MaxPooling2D(2)(x) if k else x, filters)
        skips.append(x)
    skips.pop()
    for filters in [512, 256, 128, 64]:
        x = layers.Conv2DTranspose(filters, 2, strides=2)(x)
        skip = skips.pop()
        crop = (skip.shape[1] - x.shape[1]) // 2
        x = double(layers.Concatenate()([layers.Cropping2D(crop)(skip), x]), filters)
    outputs = layers.Activation("softmax")(layers.Conv2D(2, 1)(x))
    return keras.Model(inputs, outputs)


@pytest.mark.slow
def test_outputs_equal_a_hand_written_keras_unet():
    from archbuilder.data.images import load_image_files
    from archbuilder.keras.graph import build_model

    checked = load_checked_spec(VALID, ["input.shape=[188,188,1]"])
    ours = build_model(checked.spec, checked.plan)
    theirs = _hand_written_keras_unet(188)
    weighted = lambda model: [layer for layer in model.layers if layer.weights]  # noqa: E731
    pairs = list(zip(weighted(ours), weighted(theirs), strict=True))
    for mine, other in pairs:
        assert type(mine) is type(other) and [w.shape for w in mine.weights] == [w.shape for w in other.weights]
        other.set_weights(mine.get_weights())
    assert theirs.count_params() == ours.count_params() == 31_030_658
    x = load_image_files([PHOTO, IMAGES / "5" / "IMG_1123.JPG"], (188, 188, 1)).astype("float32") / 255
    a, b = np.asarray(ours(x, training=False)), np.asarray(theirs(x, training=False))
    # The same Keras layers on the same shapes run the same kernels in the same order: measured
    # here bit-identical. The bound is for a summation order that differed (another oneDNN
    # blocking): float32 rounds a sum of n products by ~sqrt(n) * 6e-8 relative, n <= 9,216 for the
    # 3x3 convolutions over 1,024 channels, so ~6e-6 a layer, ~1.4e-4 over the 23 convolutions in
    # sequence; the soft-max's slope is at most 1/4, so probabilities move by < 1e-4.
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
    assert a.shape == (2, 4, 4, 2) and np.ptp(a) > 0.01  # random weights: not a flat 0.5 map


def test_block_diagram_draws_the_skips():
    from archbuilder.diagrams import block_diagram

    checked = load_checked_spec(VALID)
    skips = [(a.tail, a.head, a.shortcut) for a in block_diagram(checked.plan, checked.spec).arrows if a.shortcut]
    assert skips == [("res4a", "head", "skip: crop"), ("res3a", "head", "skip: crop"),
                     ("res2a", "head", "skip: crop"), ("stem", "head", "skip: crop")]


def test_the_readmes_small_unet_is_what_it_prints(tmp_path):
    """README "Beyond classifiers": the YAML as written there gives the counts and shape shown there."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Beyond classifiers"):]
    text = section[section.index("```yaml\n") + 8:section.index("```\n", section.index("```yaml\n") + 8)]
    spec = tmp_path / "small_unet.yaml"
    spec.write_text(text)
    plan = load_checked_spec(spec).plan
    assert (plan.total_params, plan.macs, plan.output.out_shape) == (117_058, 100_466_688, (64, 64, 2))
    assert "ok: small_unet.yaml: small_unet, 117,058 params, 100,466,688 MACs" in section


def test_predictions_classes_of_a_map_or_named_outputs_is_our_error(small_unet):
    # It raised IndexError (a map: argmax of each flattened map) or TypeError (named outputs).
    import archbuilder

    with pytest.raises(archbuilder.UserError, match=r"a map per image \(4x4x2\), not one class per image"):
        archbuilder.predict(small_unet, [PHOTO]).classes
    named = archbuilder.build(str(REPO / "tests" / "specs" / "two_outputs.yaml"))
    size = named.input_shape[1:]
    with pytest.raises(archbuilder.UserError, match="named outputs, not one class per image; use rows"):
        archbuilder.predict(named, np.zeros((1, *size), np.uint8)).classes
