"""What `train` does before its first step (archbuilder/training/first_step.py): one trace of the
training step per run, and a smaller graph; no timings here (bench/first_step.py measures them)."""

from __future__ import annotations

from train_support import TINY_SPEC, image_folder, invoke

import keras  # noqa: I001  (train_support sets TensorFlow's environment first)


def test_train_traces_the_training_step_once_partial_last_batch_included(tmp_path, monkeypatch):
    # 3 classes x 7 photos = 21 images in batches of 16: every epoch ends on a batch of 5.
    photos = image_folder(tmp_path / "images", per_class=7)
    traced = []
    stock = keras.Model.train_step

    def counted(self, data):  # runs once per trace (Python runs only while TensorFlow traces)
        traced.append([tuple(tensor.shape) for tensor in keras.tree.flatten(data)])
        return stock(self, data)

    monkeypatch.setattr(keras.Model, "train_step", counted)
    result = invoke("train", TINY_SPEC, "--data", photos, "--out", tmp_path / "run", "--epochs", "2",
                    "--quiet", "--set", "training.fast_cpu_kernels=false")
    assert result.exit_code == 0, result.output
    # Keras alone builds Adam's slots and the accuracy metric inside the first trace, and
    # TensorFlow then traces a second time; the last, smaller batch must not retrace either.
    assert traced == [[(None, 32, 32, 3), (None, 3)]]
    assert "preparing the graph: " in result.output and "graph ready: the first step ended " in result.output


def test_the_test_sets_predict_function_is_traced_once_before_training(tmp_path, monkeypatch):
    # 75 test photos are predicted in batches of 64 and 11 after every epoch.
    photos = image_folder(tmp_path / "images", per_class=7)
    test = image_folder(tmp_path / "test", per_class=25)
    traced = []
    stock = keras.Model.predict_step

    def counted(self, data):  # runs once per trace of the predict function
        traced.append([tuple(tensor.shape) for tensor in keras.tree.flatten(data)])
        return stock(self, data)

    monkeypatch.setattr(keras.Model, "predict_step", counted)
    result = invoke("train", TINY_SPEC, "--data", photos, "--test", test, "--out", tmp_path / "run",
                    "--epochs", "2", "--quiet", "--set", "training.fast_cpu_kernels=false")
    assert result.exit_code == 0, result.output
    # Keras alone traces it for the first batch of 64, then again for the batch of 11.
    assert traced == [[(None, 32, 32, 3)]]


def test_the_image_decoder_is_traced_once_per_process_and_shape(tmp_path):
    """Every dataset traces its map function; the decoder's branches (EXIF turns, JPEG scales) are
    traced once per output shape, and each later load reuses them: the same pixels, no new trace."""
    from archbuilder.data.images import _file_decoder, load_image_files, max_image_pixels

    photos = image_folder(tmp_path / "images", per_class=2)
    paths = sorted(p for folder in photos.iterdir() for p in folder.iterdir())
    first = load_image_files(paths, (24, 20, 3))
    decoder = _file_decoder(24, 20, 3, max_image_pixels())
    assert decoder.experimental_get_tracing_count() == 1
    again = load_image_files(paths[::-1], (24, 20, 3))
    assert decoder.experimental_get_tracing_count() == 1
    assert (again[::-1] == first).all()
    load_image_files(paths, (20, 24, 3))
    assert decoder.experimental_get_tracing_count() == 1 and _file_decoder(20, 24, 3, max_image_pixels()).experimental_get_tracing_count() == 1


def test_optimizer_slots_are_built_without_tensorflow_names_and_with_keras_names_and_paths():
    """build_before_tracing creates the optimizer's slots with no TensorFlow-level name (each named
    variable's handle op is a new eager kernel: bench/RESULTS.md, 2026-12-05 fifth session); what
    Keras names them, saves them under and restores them from is the same as Keras's own build."""
    import tensorflow as tf

    from archbuilder.keras.graph import build_model
    from archbuilder.plan.validate import load_checked_spec
    from archbuilder.spec.training import TrainingSpec
    from archbuilder.training.first_step import build_before_tracing
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.optimizers import compile_model

    def compiled():
        model = build_model(load_checked_spec(TINY_SPEC).spec)
        compile_model(model, TrainingSpec(), 3)
        use_fused_adam(model.optimizer)
        return model

    ours, stock = compiled(), compiled()
    build_before_tracing(ours, (tf.TensorSpec((None, 32, 32, 3)), tf.TensorSpec((None, 3))))
    stock.optimizer.build(stock.trainable_variables)
    slots = [v for v in ours.optimizer.variables if v.name not in ("iteration", "learning_rate")]
    assert len(slots) == 2 * len(ours.trainable_variables)  # Adam's two moments
    # (the second optimizer is "adam_1": Keras numbers each new object's name)
    assert [(v.name, v.path.split("/", 1)[1], v.shape) for v in ours.optimizer.variables] == [
        (v.name, v.path.split("/", 1)[1], v.shape) for v in stock.optimizer.variables]
    assert all(v.value.name.split("/")[-1].startswith("Variable") for v in slots)
    assert not any(v.value.name.split("/")[-1].startswith("Variable") for v in stock.optimizer.variables)
