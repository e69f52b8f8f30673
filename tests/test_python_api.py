"""The Python API for every command (train, evaluate, predict, export, diff, plot, load_model): the
same results as the command line, which is a thin layer over it; errors in the API's words; and the
README's notebook workflow, run as it is written."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from train_support import IMAGES, REPO, TINY_SPEC, image_folder, invoke


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One epoch of the tiny spec through archbuilder.train, on 16 real photos of each of 3 digits."""
    import archbuilder

    root = tmp_path_factory.mktemp("api")
    photos = image_folder(root / "images", per_class=16)
    trained = archbuilder.train(TINY_SPEC, data=photos, epochs=2, out=root / "run", verbose=0)
    return trained, photos


def test_train_returns_the_run_folder_with_its_history_and_best_epoch(run):
    trained, _ = run
    state = json.loads((trained.path / "state.json").read_text())
    assert trained.history == state["history"] and [row["epoch"] for row in trained.history] == [1, 2]
    assert trained.best == state["best"] and trained.best["epoch"] in (1, 2)
    assert trained.metrics == json.loads((trained.path / "metrics.json").read_text())
    assert trained.best_model == trained.path / "best.keras" and trained.best_model.is_file()
    assert (trained.epochs_done, trained.interrupted, trained.writer) == (2, False, True)


def test_evaluate_returns_what_evaluate_json_prints(run):
    import archbuilder

    trained, photos = run
    report = archbuilder.evaluate(trained.best_model, photos)
    assert report == json.loads(invoke("evaluate", trained.best_model, "--data", photos, "--json").output)
    assert report["images"] == 48 and np.asarray(report["confusion_matrix"]).sum() == 48
    only = archbuilder.evaluate(str(trained.best_model), photos, classes=["0", "2"])
    assert only["images"] == 32 and [row["support"] for row in only["per_class"]] == [16, 0, 16]


def test_predict_takes_paths_folders_and_arrays_and_gives_the_cli_s_probabilities(run):
    import archbuilder
    from archbuilder.data.images import load_image_files

    trained, photos = run
    files = sorted((photos / "1").iterdir())
    by_folder = archbuilder.predict(trained.best_model, photos / "1")
    assert by_folder.inputs == files and by_folder.class_names == ("0", "1", "2")
    assert by_folder.probabilities.shape == (16, 3)
    np.testing.assert_allclose(by_folder.probabilities.sum(axis=1), 1.0, atol=1e-5)
    printed = [json.loads(line) for line in invoke("predict", trained.best_model, photos / "1", "--json").output.splitlines()]
    assert printed == by_folder.rows()
    assert by_folder.classes == [row["class"] for row in printed]
    # uint8 arrays at the input size go through the same x / 255: the same numbers, to the bit
    model = archbuilder.load_model(trained.best_model)
    arrays = archbuilder.predict(model, load_image_files(files, (32, 32, 3)))
    assert arrays.inputs is None and arrays.class_names == ("0", "1", "2")  # names known from the file
    np.testing.assert_array_equal(arrays.probabilities, by_folder.probabilities)
    one = archbuilder.predict(model, load_image_files(files[:1], (32, 32, 3))[0])  # one (H, W, C) image
    np.testing.assert_array_equal(one.probabilities, by_folder.probabilities[:1])


def test_export_returns_what_it_wrote_and_checked(run, tmp_path):
    import archbuilder

    trained, photos = run
    result = archbuilder.export(trained.best_model, "litert", tmp_path / "m.tflite", check=photos)
    assert result.path == tmp_path / "m.tflite" and result.size_bytes == result.path.stat().st_size
    assert (result.runtime, result.label) == ("LiteRT", "LiteRT float32")
    assert result.checked_on == f"48 images of {photos}"
    assert result.max_difference < 1e-4 and result.warnings == ()  # float32: rounding only (README, Export)
    assert result.keras_accuracy == result.export_accuracy
    exported = archbuilder.predict(result.path, photos / "1")
    np.testing.assert_allclose(exported.probabilities, archbuilder.predict(trained.best_model, photos / "1").probabilities,
                               atol=1e-4)


def test_diff_and_plot_are_the_commands_results(tmp_path):
    import archbuilder

    a, b = REPO / "architectures" / "resnet50.yaml", REPO / "architectures" / "resnet101.yaml"
    comparison = archbuilder.diff(a, b)
    assert [(f.path, f.a, f.b) for f in comparison.fields] == [("name", "ResNet50", "ResNet101"), ("stages.2.repeats", 6, 23)]
    assert comparison.as_json() == json.loads(invoke("diff", a, b, "--json").output)
    assert comparison.as_json()["delta"]["total_params"] == 42_670_470 - 23_600_006  # REFERENCE.md §2
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    drawn = archbuilder.plot(a, tmp_path / "r50.svg")
    assert drawn == tmp_path / "r50.svg" and drawn.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_errors_name_the_api_s_arguments_and_the_cli_its_flags(run, tmp_path):
    import archbuilder

    trained, photos = run
    image = sorted((photos / "0").iterdir())[0]
    with pytest.raises(archbuilder.UserError) as caught:
        archbuilder.predict(trained.best_model, image, overrides=["classes=3"], max_memory=2**30)
    assert str(caught.value) == (f"{trained.best_model}: overrides, max_memory applies with spec (a model built from a "
                                 "spec, the file's weights read into it); a .keras file alone carries its own architecture")
    printed = invoke("predict", trained.best_model, image, "--set", "classes=3", "--max-memory", "1GiB")
    assert printed.exit_code == 2 and printed.output.strip() == (
        f"{trained.best_model}: --set, --max-memory applies with --spec (a model built from a spec, the file's "
        "weights read into it); a .keras file alone carries its own architecture")
    # a spec over the memory limit: max_memory in Python, --max-memory on the command line
    with pytest.raises(archbuilder.SpecError) as caught:
        archbuilder.load_spec(TINY_SPEC, max_memory=1024)
    assert str(caught.value).endswith("; raise it with max_memory or ARCHBUILDER_MAX_MEMORY if this machine really "
                                      "has the memory") and "--" not in str(caught.value)
    printed = invoke("validate", TINY_SPEC, "--max-memory", "1KiB")
    assert printed.exit_code == 2 and "; raise it with --max-memory or ARCHBUILDER_MAX_MEMORY" in printed.output
    # a run folder that holds a run: resume='RUN' in Python, --resume RUN on the command line
    with pytest.raises(archbuilder.UserError) as caught:
        archbuilder.train(TINY_SPEC, data=photos, out=trained.path, verbose=0)
    assert str(caught.value) == f"{trained.path}: already exists and is not empty; use resume='{trained.path}' or another out"
    printed = invoke("train", TINY_SPEC, "--data", photos, "--out", trained.path)
    assert printed.exit_code == 2
    assert printed.output.strip() == f"{trained.path}: already exists and is not empty; use --resume {trained.path} or another --out"


@pytest.mark.parametrize("call, message", [
    (lambda api, model, photos: api.predict(model, 5), "inputs: expected image paths or a uint8 array (received: int)"),
    (lambda api, model, photos: api.predict(model, np.zeros((1, 8, 8, 3), np.uint8)), "inputs: images of shape (1, 8, 8, 3)"),
    (lambda api, model, photos: api.predict(model, np.zeros((1, 32, 32, 3), np.float32)), "images must be uint8"),
    (lambda api, model, photos: api.evaluate(5, photos), "model: expected a model file's path or a keras.Model"),
    (lambda api, model, photos: api.evaluate(model, None), "data: expected a path (received: NoneType)"),
    (lambda api, model, photos: api.train({"name": "x"}, data=photos), "train takes a spec file's path (received: dict)"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, epochs="2"),
     "epochs: expected a whole number, from 1 to 2147483647 (received: str '2')"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, devices=0), "devices: expected a whole number, from 1 to 2147483647"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, distribute="gpus"),
     "distribute: expected one of 'none', 'mirrored', 'multi-worker', 'auto' (received: str 'gpus')"),
    (lambda api, model, photos: api.train(resume=photos, epochs=3), "resume continues a run with its own settings; drop epochs"),
    (lambda api, model, photos: api.export(model, "tflite"), "format: unknown export format 'tflite'"),
    (lambda api, model, photos: api.load_model(str(photos / "model.onnx")), "an export runs in its own runtime"),
    (lambda api, model, photos: api.load_model(photos), "is a folder, not a model file (.keras, .h5) or a SavedModel"),
    # train's other arguments, refused before anything runs (each was a TypeError or silently
    # accepted: "ram" streamed, skip_bad_images="no" skipped, a string of overrides split into letters)
    (lambda api, model, photos: api.train(TINY_SPEC, data=5), "data: expected a path (received: int)"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, out=5), "out: expected a path (received: int)"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, test=5), "test: expected a path (received: int)"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, holdout_photographers="x"),
     "holdout_photographers: expected a number from 0 up to 1 (received: str 'x')"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, cache="ram"),
     "cache: expected one of 'auto', 'memory', 'disk', 'none' (received: str 'ram')"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, verbose=7), "verbose: expected one of 0, 1, 2"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, skip_bad_images="no"),
     "skip_bad_images: expected True or False (received: str 'no')"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, worker_timeout=-1), "worker_timeout: expected a number at least 1"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, remedy_words=3), "remedy_words: expected a function"),
    (lambda api, model, photos: api.train(TINY_SPEC, data=photos, overrides="training.epochs=x"),
     "training.epochs"),
    # the other calls' arguments (TypeErrors, TensorFlow's InvalidArgumentError, or "no" taken as yes before)
    (lambda api, model, photos: api.evaluate(model, photos, batch_size=0), "batch_size: expected a whole number, from 1 to 2147483647"),
    (lambda api, model, photos: api.predict(model, photos / "0", batch_size=1.5), "batch_size: expected a whole number"),
    (lambda api, model, photos: api.evaluate(model, photos, strict="no"), "strict: expected True or False (received: str 'no')"),
    (lambda api, model, photos: api.load_model(model, spec=5), "spec: expected a path (received: int)"),
    (lambda api, model, photos: api.export(model, "onnx", check=5), "check: expected a path (received: int)"),
    (lambda api, model, photos: api.info(TINY_SPEC, per_block="yes"), "per_block: expected True or False"),
    (lambda api, model, photos: api.plot(TINY_SPEC, out=5), "out: expected a path (received: int)"),
    (lambda api, model, photos: api.api.pack_data(photos, f"{photos}.h5", size=0), "size: expected a whole number, from 1 to 2147483647"),
    (lambda api, model, photos: api.api.pack_data(photos, f"{photos}.h5", split="val"), "split: expected one of 'train', 'test'"),
    (lambda api, model, photos: api.api.pack_data(photos, f"{photos}.h5", holdout_photographers=0.5, seed=-1),
     "seed: expected a whole number, from 0 to 2147483647 (received: int -1)"),
    (lambda api, model, photos: api.api.pack_records(photos, photos.parent / "records", shard_size=0),
     "shard_size: expected a whole number, from 1 to 2147483647 (received: int 0)"),
    (lambda api, model, photos: api.api.load_weights(api.build(TINY_SPEC), model, strict="no"), "strict: expected True or False"),
    (lambda api, model, photos: api.predict(f"{photos}.tflite", photos / "0", overrides=5),
     "overrides: expected a list of 'PATH=VALUE' strings (received: int)"),  # a TypeError on an export's path
    (lambda api, model, photos: api.predict("", photos / "0"), "model: the path is empty"),  # "." is a folder, not a SavedModel
], ids=["inputs-int", "array-size", "array-dtype", "model-int", "data-none", "spec-dict", "epochs-text",
        "train-devices-0", "distribute-mode", "resume-and-settings", "export-format", "load-model-export", "load-model-folder", "train-data-int",
        "train-out-int", "train-test-int", "train-holdout-text", "train-cache-unknown", "train-verbose",
        "train-flag-text", "train-worker-timeout", "train-remedy-words", "train-one-override-string",
        "evaluate-batch-0", "predict-batch-float", "evaluate-strict-text", "load-model-spec-int", "export-check-int",
        "info-per-block-text", "plot-out-int", "pack-size-0", "pack-split", "pack-seed-negative", "pack-records-shard-0", "load-weights-strict-text",
        "predict-export-overrides-int", "predict-model-empty"])
def test_bad_arguments_are_user_errors_never_type_errors(run, call, message):
    import archbuilder

    trained, photos = run
    with pytest.raises(archbuilder.UserError, match=re.escape(message)):
        call(archbuilder, trained.best_model, photos)


def test_errors_speak_the_api_s_words_not_the_flags(run):
    import archbuilder

    trained, photos = run
    with pytest.raises(archbuilder.UserError) as caught:
        archbuilder.evaluate(trained.best_model, photos, classes=["0", "0"])
    assert str(caught.value) == "classes needs at least two classes"  # it said "--classes ..."
    with pytest.raises(archbuilder.UserError, match=r"classes: an empty list names no class; leave it out \(None\)"):
        archbuilder.evaluate(trained.best_model, photos, classes=[])  # it evaluated every class


def _readme_notebook() -> str:
    """The README's "A whole workflow, as in a notebook" code block, as written."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### A whole workflow, as in a notebook"):]
    return section[section.index("```python\n") + len("```python\n"):section.index("\n```", section.index("```python"))]


def test_the_readme_notebook_workflow_runs_as_written(tmp_path, monkeypatch, capsys):
    import runpy

    # The block's paths are the repository's (tests/specs/..., ../shared/...); it runs in a copy of
    # that layout made of links, so that its runs/notebook is written here and not in the repository.
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "tests").symlink_to(REPO / "tests")
    (tmp_path / "shared").symlink_to(REPO.parent / "shared")
    script = tmp_path / "notebook.py"
    script.write_text(_readme_notebook())
    monkeypatch.chdir(tmp_path / "repo")
    # as a script, in this process: a Python session with TensorFlow imported once, as a notebook's
    runpy.run_path(str(script), run_name="__main__")
    stdout = capsys.readouterr().out
    # Keras's fit writes its epoch lines to stdout too ("Epoch 1/1", "94/94 - 2s - ..."): the rest is the block's
    lines = [line for line in stdout.splitlines() if not re.match(r"(Epoch \d+/\d+|\d+/\d+ - )", line)]
    run = tmp_path / "repo" / "runs" / "notebook"
    import archbuilder

    assert lines[0] == str(archbuilder.info(TINY_SPEC, overrides=["classes=10"])["total_params"])
    assert lines[1].startswith("runs/notebook ") and (run / "best.keras").is_file() and (run / "best.tflite").is_file()
    images = sum(1 for name in ("0", "1") for p in (IMAGES / name).iterdir())
    assert lines[2].startswith(f"{images} ")  # evaluate on the digits 0 and 1
    assert lines[3].startswith("('0', '1', '2', '3', '4', '5', '6', '7', '8', '9') (") and ", 10) [" in lines[3]
    assert lines[5].startswith("runs/notebook/best.tflite LiteRT float32 ")
    assert float(lines[5].split()[-1]) < 1e-4  # the float32 export agrees with Keras (README, Export)
    assert lines[6] == lines[3][lines[3].index(") [") + 2:]  # LiteRT predicts the classes Keras does
    assert lines[7] == "runs/notebook: already exists and is not empty; use resume='runs/notebook' or another out"
