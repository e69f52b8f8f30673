"""architectures/imagenet/vit_b16.yaml (ViT-B/16, and ViT-S/16 and ViT-Ti/16 by `variables`) against
its two references: timm's vit_*_patch16_224 (trainable counts) and keras-hub 0.32.0's
ViTImageClassifier on a ViTBackbone of the same configuration (counts, and outputs with its
weights loaded into ours). Random weights only: nothing is downloaded. Each reference skips where
its package is absent (CI installs neither torch nor keras-hub).

The default suite checks ViT-Ti/16 against keras-hub (5.7M weights) and a 2-layer ViT-B/16; the
full B/16 runs with -m slow.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from archbuilder.plan.validate import load_checked_spec
from train_support import REPO

VIT = REPO / "architectures" / "imagenet" / "vit_b16.yaml"
# name: (timm model, hidden, heads, MLP units); 12 layers each, patch 16, 224x224.
VARIANTS = {
    "B16": ("vit_base_patch16_224", 768, 12, 3072),
    "S16": ("vit_small_patch16_224", 384, 6, 1536),
    "Ti16": ("vit_tiny_patch16_224", 192, 3, 768),
}


def _overrides(variant: str, layers: int = 12) -> list[str]:
    _, hidden, heads, mlp = VARIANTS[variant]
    return [f"variables.hidden={hidden}", f"variables.heads={heads}", f"variables.mlp={mlp}",
            f"variables.encoder_layers={layers}"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_trainable_count_equals_timm(variant):
    pytest.importorskip("torch")
    if importlib.util.find_spec("timm") is None:  # imported without torchvision, which it needs at import
        pytest.skip("timm is not installed")
    from bench.peers.timm_zoo import create_timm_model

    reference = create_timm_model(VARIANTS[variant][0], classes=1000)
    expected = sum(p.numel() for p in reference.parameters() if p.requires_grad)
    plan = load_checked_spec(VIT, _overrides(variant)).plan
    assert (plan.trainable_params, plan.total_params) == (expected, expected)
    if variant == "B16":
        assert expected == 86_567_656  # issue 18's number for timm's vit_base_patch16_224


def _keras_hub_classifier(variant: str, layers: int):
    keras_hub = pytest.importorskip("keras_hub")
    _, hidden, heads, mlp = VARIANTS[variant]
    backbone = keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=layers,
                                            num_heads=heads, hidden_dim=hidden, mlp_dim=mlp)
    # Our head ends in softmax; keras-hub's gives logits unless asked.
    return keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000, activation="softmax")


RESIDUAL_SCALE = 0.3


def _randomize(model, seed: int = 0) -> None:
    """Seeded random weights of a size that makes every part matter: keras-hub initializes layer
    norms to 1 and 0 and biases to ~1e-6, which would leave those unproven, and small kernels would
    make attention uniform and every image's class token alike. Kernels are N(0, 1 / fan_in)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape, path = tuple(variable.shape), variable.path
        name = path.rsplit("/", 1)[-1]
        if name == "gamma":
            value = 1 + 0.1 * rng.normal(size=shape)
        elif name in ("beta", "bias"):
            value = 0.1 * rng.normal(size=shape)
        elif name == "kernel":
            # query, key and value map (D) to (heads, key_dim); every other kernel ends in its outputs.
            fan_in = shape[0] if any(f"/{p}/" in path for p in ("query", "key", "value")) else np.prod(shape[:-1])
            value = rng.normal(size=shape) / np.sqrt(fan_in)
            if any(f"/{p}/" in path for p in ("attention_output", "dense_2")):
                # The projections that end a residual branch: smaller, as a trained ViT's are, so
                # that 12 random blocks do not wash the image out of the class token.
                value *= RESIDUAL_SCALE
        else:  # class token, position embeddings
            value = 0.02 * rng.normal(size=shape)  # as timm initializes them
        variable.assign(value.astype("float32"))


def _equal_to_keras_hub(variant: str, layers: int) -> None:
    import archbuilder.keras.graph  # noqa: F401  (TensorFlow's environment before keras-hub imports Keras)
    from archbuilder.keras.graph import build_model
    from archbuilder.keras.weights_nested import load_weights_from_model
    from tests.helpers.keras_reference import TOLERANCE, sign_photos

    reference = _keras_hub_classifier(variant, layers)
    _randomize(reference)
    checked = load_checked_spec(VIT, _overrides(variant, layers))
    model = build_model(checked.spec, checked.plan)
    assert reference.count_params() == model.count_params() == checked.plan.total_params
    report = load_weights_from_model(model, reference, strict=True)
    assert report.complete and len(report.matched) == 3 + 8 * layers + 2, report.format()
    images = sign_photos(224) * 2 - 1  # keras-hub's ViT preprocessing: [-1, 1]
    expected = np.asarray(reference(images, training=False))
    got = np.asarray(model(images, training=False))
    # Random deep ViTs give every image much the same class token, so keras_reference's check of
    # distinct top classes does not hold; what shows that the comparison proves something is that
    # the probabilities differ from image to image, and that a wrong pairing fails it (below).
    assert expected.min() > 0 and (expected.std(axis=0) / expected.mean(axis=0)).mean() > 0.05
    # The same float32 operations in the same order on both sides (Keras's MultiHeadAttention,
    # LayerNormalization, Dense with exact GELU, the same convolution; the class token
    # concatenated and position embeddings added as keras-hub does): outputs agree to rounding,
    # and 1e-5 relative is what tests/helpers/keras_reference.py allows any zoo network.
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE, atol=0)
    # One wrong pair (the first block's query and key projections swapped) is far outside it.
    query, key = (next(w for w in model.weights if w.path == f"self_attention/{part}/kernel") for part in ("query", "key"))
    query_value = np.asarray(query)
    query.assign(np.asarray(key))
    key.assign(query_value)
    wrong = np.asarray(model(images, training=False))
    assert np.max(np.abs(wrong - expected) / expected) > 100 * TOLERANCE


# B16 costs ~7 s on a slow CPU; Ti16 checks the same layers at a smaller width by default.
@pytest.mark.parametrize("variant", [pytest.param("B16", marks=pytest.mark.slow), "Ti16"])
def test_two_layer_vit_equals_keras_hub(variant):
    """12 and 3 heads, hidden 768 and 192, two encoder blocks (the blocks repeat)."""
    _equal_to_keras_hub(variant, layers=2)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_vit_equals_keras_hub(variant):
    _equal_to_keras_hub(variant, layers=12)


def test_a_model_of_another_depth_is_refused_whole_when_strict():
    import archbuilder.keras.graph  # noqa: F401
    from archbuilder.errors import UserError
    from archbuilder.keras.graph import build_model
    from archbuilder.keras.weights_nested import load_weights_from_model

    reference = _keras_hub_classifier("Ti16", layers=1)
    checked = load_checked_spec(VIT, _overrides("Ti16", layers=2))
    model = build_model(checked.spec, checked.plan)
    before = [np.asarray(w) for w in model.weights]
    with pytest.raises(UserError) as raised:
        load_weights_from_model(model, reference, strict=True)
    message = str(raised.value)
    assert "loaded weights for 13 of 21 layers by order and shape" in message, message
    assert "missing in the file (8)" in message and "self_attention_1/query" in message, message
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.weights))  # nothing assigned


TINY_VIT = REPO / "tests" / "specs" / "tiny_vit.yaml"


def test_tiny_vit_trains_an_epoch(tmp_path):
    """`train` one epoch on a few sign photos, dropout in the blocks on; the trained file opens (safe
    mode, archbuilder's token layers registered) and `predict` reads it."""
    from train_support import image_folder, invoke

    from archbuilder.keras.model_files import open_model_file

    data = image_folder(tmp_path / "data", per_class=12)
    result = invoke("train", TINY_VIT, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 0, result.output
    model = open_model_file(tmp_path / "run" / "best.keras")
    assert [type(layer).__name__ for layer in model.layers if type(layer).__module__.startswith("archbuilder")] == [
        "ClassToken", "PositionEmbedding", "SelfAttention", "SelfAttention", "TakeToken"]
    photo = sorted((data / "1").iterdir())[0]
    predicted = invoke("predict", tmp_path / "run" / "best.keras", photo, "--json")
    assert predicted.exit_code == 0 and '"class"' in predicted.output, predicted.output


@pytest.mark.slow  # ~16 s; by default test_export.py runs each format and test_primitives.py saves every layer
def test_tiny_vit_exports_to_every_format(tmp_path):
    """Each export format runs a ViT (einsum attention, exact GELU, the class token's broadcast and
    concatenation) in its own runtime as Keras does, on seeded weights large enough to matter."""
    from test_export import FLOAT32_TOLERANCE, _run_in_own_runtime
    from train_support import invoke

    from archbuilder.export.formats import write_export
    from archbuilder.keras.model_files import open_model_file, save_model_file

    assert invoke("build", TINY_VIT, "--out", tmp_path).exit_code == 0
    model = open_model_file(tmp_path / "tiny_vit.keras")
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])), w.shape).astype("float32") if w.ndim > 1
                       else rng.normal(0.5, 0.3, w.shape).astype("float32") for w in model.get_weights()])
    save_model_file(model, tmp_path / "tiny_vit.keras", {"class_names": ["0", "1", "2"]})
    x = np.random.default_rng(1).random((8, 32, 32, 3), dtype=np.float32)
    reference = np.asarray(model(x, training=False))
    assert reference.max() < 0.99, reference  # saturated probabilities would hide differences
    for kind, name in (("saved_model", "sm"), ("litert", "m.tflite"), ("onnx", "m.onnx")):
        write_export(model, kind, tmp_path / name, {"class_names": ["0", "1", "2"]})
        probabilities, _ = _run_in_own_runtime(kind, tmp_path / name, x)
        np.testing.assert_allclose(probabilities, reference, rtol=0, atol=FLOAT32_TOLERANCE, err_msg=kind)


def test_a_keras_hub_file_given_to_weights_is_one_line_exit_2(tmp_path):
    """keras-hub's `.keras` file holds its own classes, no layer graph: `--weights` says so and what to
    use instead, without a traceback."""
    keras_hub = pytest.importorskip("keras_hub")
    from train_support import invoke

    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                            hidden_dim=32, mlp_dim=64)
    keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3).save(tmp_path / "hub.keras")
    result = invoke("build", TINY_VIT, "--weights", tmp_path / "hub.keras", "--strict", "--out", tmp_path)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert "hub.keras: not a Keras 3 functional or sequential model (its config is a 'ViTImageClassifier')" in last
    assert "weights_nested.load_weights_from_model" in last and "Traceback" not in result.output


@pytest.mark.parametrize("head, message", [
    ("[{type: multi_head_attention, num_heads: 2}]",
     "multi_head_attention 2 heads needs a sequence of tokens (tokens, channels); received shape (4, 4, 8); an image "
     "becomes tokens by `reshape` to [-1, channels]"),
    ("[{type: reshape, shape: [-1, 8]}, {type: multi_head_attention, num_heads: 3}]",
     "multi_head_attention 3 heads: 3 heads do not divide the 8 channels; give key_dim"),
    ("[{type: reshape, shape: [-1, 8]}, {type: take_token, index: 16}]",
     "take_token index 16 is beyond the 16 tokens (input shape (16, 8))"),
])
def test_token_layers_on_the_wrong_input_are_located_errors(tmp_path, head, message):
    from train_support import spec_problem_lines

    spec = ("name: bad\ninput: {shape: [8, 8, 3]}\nclasses: 2\n"
            "stem: [{type: conv, filters: 8, kernel: 2, stride: 2}]\nhead: " + head + "\n")
    lines = spec_problem_lines(tmp_path / "bad.yaml", spec)
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'bad.yaml'}:5:") and message in lines[0], lines


def test_attention_scores_count_in_the_memory_estimate():
    """Attention holds heads x N x N scores per image, far more than its N x D output when the
    tokens are many: 1x1 patches of a 128x128 image are 16,385 tokens, and 2 heads' scores and
    softmax are 2 x 2 x 16,385^2 values, 4.0 GiB in float32 per image. `validate` must refuse that
    under a 2 GiB limit although every layer's output is small (16,385 x 32 values, 2 MiB)."""
    command = [sys.executable, str(REPO / "cli.py"), "validate", str(REPO / "tests" / "specs" / "tiny_vit.yaml"),
               "--set", "input.shape=[128,128,3]", "--set", "variables.patch=1", "--max-memory"]
    refused = subprocess.run(command + ["2GiB"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "exceeds the limit of 2.0 GiB" in refused.stderr and "Traceback" not in refused.stderr
    fine = subprocess.run(command + ["64GiB"], capture_output=True, text=True, timeout=120)
    assert fine.returncode == 0, fine.stderr
