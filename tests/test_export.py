"""`export` to SavedModel, LiteRT and ONNX, each run in its own runtime on real photos, and
`predict` on the exports. One tiny model is trained in seconds on three digits of the
sign-language photos, with whole photographers held out for the accuracy checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plain_keras import predict_in_plain_keras
from train_support import IMAGES, REPO, TINY_SPEC, invoke, link_split

REPO_ARCH = REPO / "architectures"

CLASSES = ("0", "1", "2")
# A float32 export runs the same float32 ops as Keras in another kernel library (XNNPACK, ONNX
# Runtime's MLAS, TensorFlow's graph runtime): only summation order differs, a few float32 ulps
# on softmax outputs <= 1 (~1e-7). 1e-4 is the bound and sits far above that.
FLOAT32_TOLERANCE = 1e-4


def _held_out_split(root: Path) -> tuple[Path, Path]:
    """Class folders of symlinks: the photographers `train --holdout-photographers 0.15` trains on,
    and those it holds out (seed 0, the same split: data/sources.folder_split)."""
    from archbuilder.data.sources import folder_split

    return link_split(folder_split(str(IMAGES), None, CLASSES, False, 0.15, seed=0), root)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    train, heldout = _held_out_split(root)
    # Momentum 0.9 and a cosine schedule let batch norm's moving statistics settle within the
    # ~600 steps that take seconds here; the held-out photographers then score ~95%.
    result = invoke("train", TINY_SPEC, "--data", train, "--epochs", "12", "--out", root / "run", "--quiet",
                    "--set", "defaults.batch_norm.momentum=0.9", "--set", "training.learning_rate=0.003",
                    "--set", "training.schedule=cosine")
    assert result.exit_code == 0, result.output
    return root / "run" / "best.keras", train, heldout


@pytest.fixture(scope="module")
def keras_reference(trained):
    """Keras's probabilities and labels for the held-out photographers' images."""
    from archbuilder.data.sources import evaluation_data
    from archbuilder.keras.model_files import open_model_file
    from archbuilder.training.metrics import predict_probabilities

    model_path, _, heldout = trained
    model = open_model_file(model_path)
    data = evaluation_data(str(heldout), tuple(model.input_shape[1:]), CLASSES)
    return predict_probabilities(model, data.x), data


def _inputs(data) -> np.ndarray:
    return data.x.astype(np.float32) / np.float32(255.0)


def _run_in_own_runtime(kind: str, path: Path, x: np.ndarray) -> tuple[np.ndarray, dict]:
    """The export's probabilities from its runtime's own API (not archbuilder's wrapper), and its metadata."""
    if kind == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        (output,) = serve(tf.constant(x)).values()
        return output.numpy(), json.loads((path / "assets.extra" / "archbuilder.json").read_text())
    if kind == "litert":
        from ai_edge_litert.interpreter import Interpreter

        from archbuilder.export.metadata import read_tflite_metadata

        interpreter = Interpreter(model_path=str(path))
        (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(given["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"]), read_tflite_metadata(path.read_bytes())
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["archbuilder.json"])
    return session.run(None, {session.get_inputs()[0].name: x})[0], metadata


@pytest.mark.parametrize("kind,name", [("saved_model", "sm"), ("litert", "m.tflite"), ("onnx", "m.onnx")])
def test_float32_exports_agree_with_keras_in_their_own_runtime(trained, keras_reference, tmp_path, kind, name):
    model_path, _, heldout = trained
    reference, data = keras_reference
    out = tmp_path / name
    result = invoke("export", model_path, "--format", kind, "--out", out, "--check", heldout)
    assert result.exit_code == 0, result.output
    probabilities, metadata = _run_in_own_runtime(kind, out, _inputs(data))
    assert probabilities.shape == reference.shape
    np.testing.assert_allclose(probabilities, reference, rtol=0, atol=FLOAT32_TOLERANCE)
    assert metadata["class_names"] == list(CLASSES) and metadata["input_shape"] == [32, 32, 3]
    assert "x/255" in metadata["preprocessing"]
    accuracy = float(np.mean(np.argmax(reference, axis=1) == data.y))
    assert f"Keras float32 {100 * accuracy:.2f}%" in result.output
    assert "warning" not in result.output
    # predict takes the export and gives Keras's answer for a held-out photo.
    photo = sorted((heldout / "2").iterdir())[0]
    predicted = json.loads(invoke("predict", out, photo, "--json").output)
    index = [i for i, label in enumerate(data.y) if label == 2][0]  # the first held-out photo of "2"
    assert predicted["class"] == CLASSES[int(np.argmax(reference[index]))]
    assert abs(predicted["probabilities"]["2"] - float(reference[index][2])) <= FLOAT32_TOLERANCE


# float16 costs ~16 s on a slow CPU (its rounding bound takes a gradient per class and image);
# int8, the one whose accuracy rule the issue states, runs by default.
@pytest.mark.parametrize("quantize", [pytest.param("float16", marks=pytest.mark.slow), "int8"])
def test_quantized_litert_reports_accuracy_next_to_float32(trained, keras_reference, tmp_path, quantize):
    model_path, train, heldout = trained
    reference, data = keras_reference
    out = tmp_path / f"m-{quantize}.tflite"
    extra = ["--calibration", train] if quantize == "int8" else []
    result = invoke("export", model_path, "--format", "litert", "--quantize", quantize, "--out", out,
                    "--check", heldout, *extra)
    assert result.exit_code == 0, result.output
    probabilities, metadata = _run_in_own_runtime("litert", out, _inputs(data))
    assert metadata["quantization"] == quantize
    float_accuracy = 100 * float(np.mean(np.argmax(reference, axis=1) == data.y))
    accuracy = 100 * float(np.mean(np.argmax(probabilities, axis=1) == data.y))
    assert float_accuracy > 100 / len(CLASSES) + 20, "the model must have learned for the comparison to mean anything"
    line = next(line for line in result.output.splitlines() if line.startswith("Accuracy on"))
    assert f"Keras float32 {float_accuracy:.2f}%" in line and f"LiteRT {quantize} {accuracy:.2f}%" in line
    lost = float_accuracy - accuracy
    # The rule: int8 loses at most 1 point, or the command says how much it lost.
    assert (f"int8 lost {lost:.2f} points" in result.output) == (quantize == "int8" and lost > 1), result.output
    if quantize == "float16":
        from archbuilder.keras.model_files import open_model_file

        # float16 rounds each stored constant c to c(1 + d), |d| <= u = 2**-11, and computes in
        # float32. To first order that moves probability p by at most u * sum |dp/dw| |w| over
        # the Keras weights: the converter's constants are products of weights (conv kernel x
        # batch-norm scale; one relative error, the kernel's term) or sums (folded shift
        # beta - mean * scale, bounded by the beta and mean terms). Second-order terms are
        # O(u * depth) smaller, far inside the factor 2; float32 summation order adds its own.
        # (A fixed 1e-2 stood here and failed in CI on a model trained on another CPU: the
        # spread depends on the trained weights, so the bound is computed from them. int8 has no
        # such bound: activations are rounded to 1/256 of their range at every layer; the
        # accuracy rule above is what the issue asks of it.)
        bound = _rounding_first_order_bound(open_model_file(model_path), _inputs(data), 2.0 ** -11)
        excess = np.abs(probabilities - reference) - (2 * bound + FLOAT32_TOLERANCE)
        assert np.max(excess) <= 0, f"float16 moved a probability {np.max(excess):.2e} past its rounding bound"


def _rounding_first_order_bound(model, x: np.ndarray, unit: float) -> np.ndarray:
    """u * sum over every weight w of |dp/dw| * |w|, per image and class: the first-order bound
    on how far rounding each weight by a relative `unit` can move the probabilities."""
    import tensorflow as tf

    # Every weight, batch norm's moving statistics too: the converter folds them in.
    variables = [weight.value for weight in model.weights]
    magnitudes = [np.abs(variable.numpy()) for variable in variables]
    bound = np.zeros((len(x), model.output_shape[-1]), np.float64)
    for i in range(len(x)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(variables)
            p = model(x[i:i + 1], training=False)[0]
            outputs = [p[k] for k in range(p.shape[0])]
        for k, output in enumerate(outputs):
            grads = tape.gradient(output, variables, unconnected_gradients="zero")
            bound[i, k] = sum(float(np.sum(np.abs(g.numpy()) * m)) for g, m in zip(grads, magnitudes))
        del tape
    return unit * bound


def test_build_and_train_files_load_in_plain_keras_without_archbuilder(trained, keras_reference, tmp_path):
    import zipfile

    from archbuilder.keras.model_files import open_model_file

    model_path, _, _ = trained
    result = invoke("build", TINY_SPEC, "--out", tmp_path / "build",
                    "--set", "defaults.kernel_initializer={type: glorot_uniform_tf1, seed: 0}")
    assert result.exit_code == 0, result.output
    built = tmp_path / "build" / "tiny.keras"
    files = [built, model_path]
    for path in files:  # what the issue asked for: only Keras's own objects named in the config
        config = zipfile.ZipFile(path).read("config.json").decode()
        assert "archbuilder" not in config and '"GlorotUniform"' in config
    assert "archbuilder.json" in zipfile.ZipFile(model_path).namelist()  # the metadata stays

    _, data = keras_reference
    plain = predict_in_plain_keras([(path, [_inputs(data)]) for path in files], tmp_path)
    for path, predicted in zip(files, plain):
        expected = np.asarray(open_model_file(path).predict(_inputs(data), verbose=0))
        # Same TensorFlow, same kernels, same weights: equal up to threading's summation order.
        np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-6)


def _refused(*args) -> str:
    from click.testing import CliRunner

    from archbuilder.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_bad_export_input_is_one_line_exit_2_and_writes_nothing(trained, tmp_path):
    model_path, _, _ = trained
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "no-photos").mkdir()
    (tmp_path / "no-photos" / "notes.txt").write_text("no images here")
    (tmp_path / "text.keras").write_text("not a model")
    (tmp_path / "my-folder").mkdir()
    (tmp_path / "my-folder" / "keep.txt").write_text("a user's file")
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / "m.onnx"
    cases = {
        ("export", tmp_path / "missing.keras", "--format", "onnx", "--out", out): "no such model file",
        ("export", model_path, "--format", "tflite", "--out", out): "unknown export format 'tflite'; one of: saved_model, litert, onnx",
        ("export", model_path, "--format", "onnx", "--out", tmp_path / "a-file" / "m.onnx"): "cannot write there",
        ("export", model_path, "--format", "onnx", "--out", tmp_path / "m.tflite"): "must end in .onnx",
        ("export", model_path, "--format", "litert", "--quantize", "int8", "--out", tmp_path / "m.tflite",
         "--calibration", tmp_path / "no-photos"): "no images in the calibration folder",
        ("export", model_path, "--format", "litert", "--quantize", "int8", "--out", tmp_path / "m.tflite"): "needs --calibration",
        ("export", model_path, "--format", "onnx", "--quantize", "int8", "--out", out): "applies to --format litert",
        ("export", model_path, "--format", "litert", "--quantize", "int4", "--out", tmp_path / "m.tflite"): "unknown quantization",
        ("export", tmp_path / "text.keras", "--format", "onnx", "--out", out): "not a Keras model file",
        ("export", model_path, "--format", "saved_model", "--out", tmp_path / "my-folder"): "refusing to replace it",
        ("export", model_path, "--format", "onnx", "--out", tmp_path / "new" / "sub" / "m.tflite"): "must end in .onnx",
    }
    for args, message in cases.items():
        assert message in _refused(*args), args
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temporary file


@pytest.mark.parametrize("name,content", [
    ("fake.onnx", b"not an onnx graph"), ("fake.tflite", b"TFL3 but not really"), ("empty.tflite", b""),
])
def test_predict_refuses_files_that_are_not_exports(trained, tmp_path, name, content):
    _, _, heldout = trained
    (tmp_path / name).write_bytes(content)
    photo = sorted((heldout / "0").iterdir())[0]
    assert _refused("predict", tmp_path / name, photo).startswith(f"{tmp_path / name}: not a loadable")


@pytest.mark.slow
def test_documented_resnet50_exports_agree_with_keras_in_their_runtimes(tmp_path):
    """The documented ResNet-50 (REFERENCE.md §1) in all three float32 formats, on real photos."""
    from archbuilder.data.images import load_image_files
    from archbuilder.export.formats import write_export
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec

    checked = load_checked_spec(REPO_ARCH / "resnet50.yaml")
    model = build_model(checked.spec, checked.plan)
    assert model.count_params() == 23_600_006  # REFERENCE.md §1
    photos = [sorted((IMAGES / str(c)).iterdir())[0] for c in range(6)]
    x = load_image_files(photos, (64, 64, 3)).astype(np.float32) / np.float32(255.0)
    reference = np.asarray(model.predict_on_batch(x))
    for kind, name in (("saved_model", "sm"), ("litert", "m.tflite"), ("onnx", "m.onnx")):
        write_export(model, kind, tmp_path / name, {"class_names": [str(c) for c in range(6)]})
        probabilities, metadata = _run_in_own_runtime(kind, tmp_path / name, x)
        np.testing.assert_allclose(probabilities, reference, rtol=0, atol=FLOAT32_TOLERANCE, err_msg=kind)
        assert metadata["class_names"] == [str(c) for c in range(6)]


@pytest.mark.slow  # ~24 s; by default the per-format runs above and test_primitives.py's plain-Keras load of every layer
def test_convnext_blocks_load_in_plain_keras_and_export_to_every_format(tmp_path):
    """ConvNeXt's block (layer scale, drop path, exact GELU, depthwise as a grouped conv), a
    ResNeXt-style grouped conv and a gelu_tanh head, as `build` writes them: the file names only
    Keras's objects, plain Keras predicts what archbuilder does, and each export format agrees
    with Keras in its own runtime (ONNX needed onnx_gaps.py for the grouped convs and Erfc)."""
    import zipfile

    from archbuilder.export.formats import write_export
    from archbuilder.keras.model_files import open_model_file, save_model_file

    result = invoke("build", REPO / "tests" / "specs" / "tiny_convnext.yaml", "--out", tmp_path / "build")
    assert result.exit_code == 0, result.output
    built = tmp_path / "build" / "tiny_convnext.keras"
    config = zipfile.ZipFile(built).read("config.json").decode()
    assert "archbuilder" not in config
    # What stands for the three: keras.applications' LayerScale, a per-sample Dropout, Keras's Gelu op.
    assert '"LayerScale"' in config and '"noise_shape": [null, 1, 1, 1]' in config and '"Gelu"' in config

    # Layer scale starts at 1e-6, which would hide the blocks: seeded weights instead, kernels at
    # 1/sqrt(fan-in) and scales, shifts and biases around 0.5, so every layer's conversion shows
    # in outputs that stay off softmax's saturation (checked below).
    model = open_model_file(built)
    rng = np.random.default_rng(0)
    model.set_weights([
        rng.normal(0, 1 / np.sqrt(np.prod(w.shape[:-1])), w.shape).astype("float32") if w.ndim > 1
        else rng.normal(0.5, 0.3, w.shape).astype("float32") for w in model.get_weights()
    ])
    save_model_file(model, built, {"class_names": list(CLASSES)})
    x = np.random.default_rng(1).random((8, 32, 32, 3), dtype=np.float32)
    reference = np.asarray(model(x, training=False))
    assert reference.max() < 0.99, reference  # saturated probabilities would hide differences
    (plain,) = predict_in_plain_keras([(built, [x])], tmp_path)
    np.testing.assert_allclose(plain, reference, rtol=0, atol=1e-6)  # same kernels: threading's order only

    for kind, name in (("saved_model", "sm"), ("litert", "m.tflite"), ("onnx", "m.onnx")):
        write_export(model, kind, tmp_path / name, {"class_names": list(CLASSES)})
        probabilities, _ = _run_in_own_runtime(kind, tmp_path / name, x)
        np.testing.assert_allclose(probabilities, reference, rtol=0, atol=FLOAT32_TOLERANCE, err_msg=kind)


@pytest.mark.parametrize("kind, name", [("saved_model", "sm"), ("onnx", "m.onnx")])
def test_an_export_that_fails_its_check_never_replaces_the_earlier_one(tmp_path, kind, name):
    # export wrote the file in place, then ran it in its runtime: an export failing there (as a
    # U-Net's did) had already replaced the earlier export at --out. The check now runs on the
    # export beside `out`, which it replaces only if the check passes.
    from archbuilder.errors import UserError
    from archbuilder.export.formats import write_export
    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec

    model = build_model(load_checked_spec(TINY_SPEC).spec)
    out = tmp_path / name
    write_export(model, kind, out, {"class_names": ["0", "1", "2"]})
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    seen = []

    def failing(path):
        seen.append(path)
        assert path != out and path.exists() and path.parent == out.parent  # the new export, beside out
        raise UserError(f"{path}: refused by its runtime")

    with pytest.raises(UserError, match="refused by its runtime"):
        write_export(model, kind, out, {"class_names": ["a", "b", "c"]}, check=failing)
    assert len(seen) == 1
    assert {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert write_export(model, kind, out, {"class_names": ["a", "b", "c"]}, check=lambda path: "ran") == "ran"
