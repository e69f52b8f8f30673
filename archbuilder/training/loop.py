"""`train`: data -> model -> fit with per-epoch checkpoints, resumable after any kill.

Imports Keras: only the train command imports this module, after runtime.py has set up the
environment. One `model.fit` call runs all epochs; the RunRecorder callback writes the run folder after each
finished epoch. Resuming loads the last checkpoint (weights *and* optimizer state, including the
step counter that drives the learning-rate schedule) and feeds the same batches the run would have
seen, because the order of epoch `e` depends only on (seed, e).
"""

from __future__ import annotations

import math
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from archbuilder.data.split import stratified_split
from archbuilder.errors import UserError
from archbuilder.keras.model_files import PREPROCESSING, save_model_file
from archbuilder.spec.training import TrainingSpec
from archbuilder.training.metrics import evaluate_probabilities, predict_probabilities
from archbuilder.training.run_dir import RunDir


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainRequest:
    spec_path: str | None
    overrides: tuple[str, ...] = ()
    data: str | None = None
    test: str | None = None
    holdout_photographers: float | None = None
    classes: tuple[str, ...] | None = None
    out: str | None = None
    resume: str | None = None
    verbose: int = 1
    skip_bad_images: bool = False
    save_h5: bool = False  # also write the best model as RUN_DIR/best.h5 (Keras's HDF5 format)
    max_memory: int | None = None  # bytes the training estimate may reach (default: size_guard.memory_limit())


@dataclass
class TrainResult:
    run: RunDir
    epochs_done: int
    interrupted: bool
    metrics: dict = field(default_factory=dict)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_optimizer(training: TrainingSpec, steps_per_epoch: int):
    rate = training.learning_rate
    if training.schedule == "cosine":
        warmup = training.warmup_epochs * steps_per_epoch
        decay = max(1, training.epochs * steps_per_epoch - warmup)
        if warmup:
            rate = keras.optimizers.schedules.CosineDecay(0.0, decay, warmup_target=rate, warmup_steps=warmup)
        else:
            rate = keras.optimizers.schedules.CosineDecay(rate, decay)
    if training.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=training.weight_decay)
    if training.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=training.momentum)
    return keras.optimizers.RMSprop(rate)


def compile_model(model, training: TrainingSpec, steps_per_epoch: int) -> None:
    from archbuilder.training.head_output import classification_loss

    model.compile(
        optimizer=make_optimizer(training, steps_per_epoch),
        loss=classification_loss(model, training.label_smoothing),
        metrics=["accuracy"],
    )


def _dump_spec(spec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False)


def _load_spec(spec_path: str, overrides: tuple[str, ...], max_memory: int | None = None):
    """The checked spec, its memory estimated for training at its batch size and optimizer."""
    from archbuilder.plan.size_guard import memory_limit, optimizer_slots
    from archbuilder.spec.validate import check_memory, load_checked_spec

    checked = load_checked_spec(spec_path, overrides=list(overrides), max_memory=max_memory)
    training = checked.spec.training or TrainingSpec()
    check_memory(checked.plan, checked.document, memory_limit() if max_memory is None else max_memory,
                 batch_size=training.batch_size, training=True,
                 slots=optimizer_slots(training.optimizer, training.momentum))
    return checked


class _Data:
    """Train / validation / test arrays of one run, as run.json describes them."""

    def __init__(self, run_info: dict, shape: tuple[int, int, int]):
        from archbuilder.data.sources import training_data

        training = TrainingSpec.model_validate(run_info["training"])
        loaded = training_data(
            run_info["data"], run_info["test"], shape,
            holdout_photographers=run_info["holdout_photographers"],
            seed=training.seed, classes=tuple(run_info["classes_filter"]) if run_info["classes_filter"] else None,
            skip_bad_images=run_info.get("skip_bad_images", False),
        )
        self.class_names = loaded.train.class_names
        if run_info.get("class_names") and tuple(run_info["class_names"]) != self.class_names:
            raise UserError(
                f"{run_info['data']}: classes are now {', '.join(self.class_names)}, but the run was "
                f"started with {', '.join(run_info['class_names'])}"
            )
        self.train, self.validation = loaded.train, None
        if training.validation_split:
            kept, held = stratified_split(loaded.train.y, training.validation_split, training.seed)
            self.train, self.validation = loaded.train.subset(kept), loaded.train.subset(held)
        self.test, self.test_origin = loaded.test, loaded.test_origin


class RunRecorder(keras.callbacks.Callback):
    """Writes the run folder after each finished epoch; watches for NaN loss and Ctrl-C."""

    def __init__(self, run, state, data, metadata, batch_size, monitor):
        super().__init__()
        self.run, self.state, self.data = run, state, data
        self.metadata, self.batch_size, self.monitor = metadata, batch_size, monitor
        self.stop_requested = False
        self.diverged_at: tuple[int, int] | None = None
        self.first_step_done = False

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.step_times: list[float] = []
        self.step_cpu_times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.step_start = time.perf_counter()
        self.step_cpu_start = time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        elapsed = time.perf_counter() - self.step_start
        cpu = time.process_time() - self.step_cpu_start
        if self.first_step_done:  # the first step of a process includes tracing
            self.step_times.append(elapsed)
            self.step_cpu_times.append(cpu)
        self.first_step_done = True
        if not math.isfinite(loss):
            self.diverged_at = (self.epoch_number(), batch + 1)
            self.model.stop_training = True
        self.batches_done = batch + 1
        if self.stop_requested:
            self.model.stop_training = True

    def epoch_number(self) -> int:
        return len(self.state["history"]) + 1

    def on_epoch_end(self, epoch, logs=None):
        # Ctrl-C during an epoch's last batch interrupts nothing: the epoch is whole and is kept.
        whole = getattr(self, "batches_done", 0) == self.params.get("steps")
        if self.diverged_at or (self.stop_requested and not whole):
            return  # a partial epoch: the last checkpoint stays the last finished epoch
        logs = {k: float(v) for k, v in (logs or {}).items()}
        number = epoch + 1
        seconds = round(time.perf_counter() - self.epoch_start, 3)  # training + validation
        row = {"epoch": number, "loss": logs.get("loss"), "accuracy": logs.get("accuracy")}
        if "val_loss" in logs:
            row.update(val_loss=logs["val_loss"], val_accuracy=logs.get("val_accuracy"))
        if self.data.test is not None:
            result = evaluate_probabilities(
                predict_probabilities(self.model, self.data.test.x), self.data.test.y, self.data.class_names
            )
            row.update(test_loss=result.loss, test_accuracy=result.accuracy)
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row["seconds"] = seconds
        if self.step_times:
            row["images_per_second"] = round(self.batch_size / float(np.median(self.step_times)), 2)
            # CPU time of the whole process (all threads, tf.data included): less sensitive than
            # wall time to other programs sharing the machine.
            row["images_per_cpu_second"] = round(self.batch_size / float(np.median(self.step_cpu_times)), 2)
        if not all(math.isfinite(v) for v in logs.values()):
            self.diverged_at = (number, 0)
            self.model.stop_training = True
            return
        checkpoint = self.run.checkpoint(number)
        save_model_file(self.model, checkpoint, {**self.metadata, "epoch": number})
        value = row.get(self.monitor)
        best = self.state.get("best")
        if best is None or (value is not None and value < best["value"]):
            self.run.link_best(checkpoint)
            best = {"epoch": number, "monitor": self.monitor, "value": value}
        history = self.state["history"] + [row]
        self.state = {"epochs_done": number, "checkpoint": checkpoint.name, "best": best, "history": history}
        self.run.write_json(self.run.state, self.state)
        self.run.remove_checkpoints_except(checkpoint)
        self.run.write_history(history)
        from archbuilder.training.plots import plot_curves

        plot_curves(history, self.run.curves, self.metadata.get("spec_name", "training"))
        if "test_accuracy" in row:
            _say(f"epoch {number}: test loss {row['test_loss']:.4f}, test accuracy {row['test_accuracy']:.4f}")


def _model_metadata(class_names, shape, spec_name: str) -> dict:
    return {
        "class_names": list(class_names),
        "input_shape": list(shape),
        "preprocessing": PREPROCESSING,
        "spec_name": spec_name,
    }


def _start_new(request: TrainRequest):
    """Check everything (spec, memory, run folder, data, model) before the run folder is written."""
    checked = _load_spec(request.spec_path, request.overrides, request.max_memory)
    spec = checked.spec
    training = spec.training or TrainingSpec()
    shape = tuple(spec.input.shape)
    run = RunDir(request.out or f"runs/{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    _check_new_run_folder(run)
    run_info = {
        "spec_source": str(request.spec_path),
        "overrides": list(request.overrides),
        "data": _absolute(request.data),
        "test": _absolute(request.test),
        "holdout_photographers": request.holdout_photographers,
        "classes_filter": list(request.classes) if request.classes else None,
        "skip_bad_images": request.skip_bad_images,
        "training": training.model_dump(mode="json"),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    data = _Data(run_info, shape)
    classes = len(data.class_names)
    overrides = request.overrides
    if spec.classes != classes:
        had = "sets no classes" if spec.classes is None else f"has {spec.classes} {_plural(spec.classes, 'class', 'classes')}"
        _say(
            f"note: the spec {had}; the data has {classes} "
            f"({', '.join(data.class_names)}), so the head was resized to {classes} (classes={classes})"
        )
        overrides = (*overrides, f"classes={classes}")
        checked = _load_spec(request.spec_path, overrides, request.max_memory)
        spec = checked.spec
    run_info["overrides"] = list(overrides)
    run_info["class_names"] = list(data.class_names)
    from archbuilder.atomic import atomic_write_text
    from archbuilder.keras.graph import build_model
    from archbuilder.training.head_output import check_classifier_output

    model = build_model(spec)
    check_classifier_output(model, classes, str(request.spec_path))
    compile_model(model, training, _steps(data, training))
    # Every check passed: only now is anything written.
    run.lock.acquire()
    try:
        _check_new_run_folder(run)  # another process may have started here meanwhile
        atomic_write_text(run.spec, _dump_spec(spec))
        atomic_write_text(run.classes, "\n".join(data.class_names) + "\n")
        run.write_json(run.run_json, {**run_info, "spec_name": spec.name, "input_shape": list(shape)})
    except BaseException:
        run.lock.release()
        raise
    state = {"epochs_done": 0, "checkpoint": None, "best": None, "history": []}
    return run, model, data, training, shape, spec.name, state


def _check_new_run_folder(run: RunDir) -> None:
    """A new run needs a writable folder holding nothing (a lock file left by a kill is nothing)."""
    from archbuilder.output_paths import check_output_folder
    from archbuilder.training.run_lock import LOCK_NAME

    check_output_folder(run.root)
    if run.root.exists() and any(p.name != LOCK_NAME for p in run.root.iterdir()):
        hint = f"use --resume {run.root} or another --out" if run.is_run() else "give another --out"
        raise UserError(f"{run.root}: already exists and is not empty; {hint}")


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


def _absolute(path: str | None) -> str | None:
    """Data paths are recorded absolute, so `--resume` works from any folder."""
    import os

    return os.path.abspath(path) if path else None


def _steps(data: _Data, training: TrainingSpec) -> int:
    from archbuilder.data.pipeline import steps_per_epoch

    return steps_per_epoch(len(data.train), training.batch_size)


def _resume(request: TrainRequest):
    run = RunDir(request.resume)
    run_info = run.read_run_info()  # before the lock: a folder that is no run gets no lock file
    run.lock.acquire()
    try:
        return _resume_locked(run, run_info, request)
    except BaseException:
        run.lock.release()
        raise


def _resume_locked(run: RunDir, run_info: dict, request: TrainRequest):
    """`--resume` with the run folder locked: it re-checks what it loads, as a new run does."""
    from archbuilder.training.head_output import check_classifier_output

    run.remove_temporaries()  # what a killed process was writing; the files it replaces are intact
    state = run.read_state()
    if request.data:
        run_info["data"] = _absolute(request.data)
    if request.test:
        run_info["test"] = _absolute(request.test)
    if request.skip_bad_images:  # images may have gone bad since the run started
        run_info["skip_bad_images"] = True
    shape = tuple(run_info["input_shape"])
    training = TrainingSpec.model_validate(run_info["training"])
    data = _Data(run_info, shape)
    if state is None:  # killed before its first epoch finished: start again from the run's own spec
        from archbuilder.keras.graph import build_model

        model = build_model(_load_spec(str(run.spec), (), request.max_memory).spec)
        check_classifier_output(model, len(data.class_names), str(run.spec))
        _say(f"resuming {run.root} from the start: no epoch had finished")
        compile_model(model, training, _steps(data, training))
        state = {"epochs_done": 0, "checkpoint": None, "best": None, "history": []}
        return run, model, data, training, shape, run_info["spec_name"], state
    checkpoint = run.checkpoints / state["checkpoint"]
    # As every model file: safe mode, archbuilder's initializers registered, damage named.
    from archbuilder.keras.model_files import open_model_file

    model = open_model_file(checkpoint)
    check_classifier_output(model, len(data.class_names), str(checkpoint))
    _say(f"resuming {run.root} after epoch {state['epochs_done']} of {training.epochs}")
    return run, model, data, training, shape, run_info["spec_name"], state


def train(request: TrainRequest) -> TrainResult:
    """Train into a run folder, which stays locked against other writers until this returns."""
    if request.resume:
        run, model, data, training, shape, spec_name, state = _resume(request)
    else:
        run, model, data, training, shape, spec_name, state = _start_new(request)
    try:
        return _fit(request, run, model, data, training, shape, spec_name, state)
    finally:
        run.lock.release()


def _fit(request: TrainRequest, run: RunDir, model, data: _Data, training: TrainingSpec, shape, spec_name: str,
         state: dict) -> TrainResult:
    from archbuilder.data.pipeline import inference_dataset, training_dataset

    metadata = _model_metadata(data.class_names, shape, spec_name)
    classes = len(data.class_names)
    steps = _steps(data, training)
    monitor = "val_loss" if data.validation is not None else "loss"
    first = state["epochs_done"]
    _say(
        f"training {spec_name} on {len(data.train)} images, {classes} classes"
        + (f", validating on {len(data.validation)}" if data.validation is not None else "")
        + (f", testing on {len(data.test)} ({data.test_origin})" if data.test is not None else "")
        + f"; {training.epochs} epochs of {steps} steps, batch {training.batch_size}; run folder {run.root}"
    )
    _use_fast_kernels(model, training)
    recorder = RunRecorder(run, state, data, metadata, training.batch_size, monitor)
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if recorder.stop_requested:  # second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous_handler)
            raise KeyboardInterrupt
        recorder.stop_requested = True
        _say("\ninterrupted: stopping after this batch (Ctrl-C again to stop at once)")

    if first < training.epochs:
        dataset = training_dataset(
            data.train.x, data.train.y, classes, training.batch_size, training.seed,
            first, training.epochs, training.augmentation,
        )
        validation = None
        if data.validation is not None:
            import tensorflow as tf

            validation = tf.data.Dataset.zip((
                inference_dataset(data.validation.x, training.batch_size),
                tf.data.Dataset.from_tensor_slices(tf.one_hot(data.validation.y, classes)).batch(training.batch_size),
            ))
        signal.signal(signal.SIGINT, on_sigint)
        try:
            model.fit(
                dataset, epochs=training.epochs, initial_epoch=first, steps_per_epoch=steps,
                validation_data=validation, callbacks=[_graph_preparation(), recorder], verbose=request.verbose,
                shuffle=False,
            )
        except OSError as error:  # a full disk, a file-size limit, a folder gone read-only
            raise _write_failed(error, run, recorder.state) from None
        finally:
            signal.signal(signal.SIGINT, previous_handler)
    state = recorder.state
    if recorder.diverged_at:
        epoch, batch = recorder.diverged_at
        where = f"epoch {epoch}" + (f", batch {batch}" if batch else "")
        last = state["epochs_done"]
        raise TrainingDiverged(
            f"training stopped: the loss became NaN or infinite at {where}. "
            + (f"{run.root} keeps epoch {last}. " if last else "")
            + "Try a lower training.learning_rate (e.g. --set training.learning_rate=0.0001)."
        )
    interrupted = recorder.stop_requested and state["epochs_done"] < training.epochs
    try:
        metrics = _finish(run, model, data, state, spec_name, interrupted, request.save_h5)
    except OSError as error:
        raise _write_failed(error, run, state) from None
    if interrupted and state["epochs_done"]:
        _say(f"stopped after epoch {state['epochs_done']}; continue with: python cli.py train --resume {run.root}")
    elif interrupted:
        _say(f"stopped before the first epoch finished; nothing to resume in {run.root}")
    elif recorder.stop_requested:
        _say(f"interrupted after the last batch: all {training.epochs} epochs are done; nothing to resume")
    return TrainResult(run, state["epochs_done"], interrupted, metrics)


def _use_fast_kernels(model, training: TrainingSpec) -> None:
    """Same math, other kernels: Adam as one fused op per weight (a smaller graph to trace and
    optimize), and where it pays on this CPU, the matmul kernel gradient. Both are made on the
    instances, so they are made again on a model loaded for --resume; model files do not change."""
    from archbuilder.training.fused_adam import use_fused_adam

    use_fused_adam(model.optimizer)
    if training.fast_cpu_kernels:
        from archbuilder.training.kernel_choice import switch_kernels_where_faster

        switch_kernels_where_faster(model, training.batch_size, _say)


def _graph_preparation():
    from archbuilder.training.first_step import GraphPreparation

    return GraphPreparation(_say)


def _write_failed(error: OSError, run: RunDir, state: dict) -> UserError:
    """Files are written atomically, so a failed write leaves the last finished epoch intact."""
    reason = error.strerror or (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    where = f" ({error.filename})" if error.filename else ""
    return UserError(
        f"{run.root}: cannot write the run folder: {reason}{where}. It keeps epoch {state['epochs_done']}; "
        f"make room and continue with: python cli.py train --resume {run.root}"
    )


def _finish(run: RunDir, model, data: _Data, state: dict, spec_name: str, interrupted: bool,
            save_h5: bool = False) -> dict:
    """Evaluate the best model; write metrics.json, the confusion matrix and, if asked, best.h5."""
    from archbuilder.training.plots import plot_confusion

    if not state["history"]:
        return {}
    model.load_weights(run.best)
    if save_h5:
        from archbuilder.keras.weights_h5 import save_h5 as write_h5

        _say(f"saved {write_h5(model, run.root / 'best.h5')}")
    if data.test is not None:
        images, origin = data.test, f"test set: {data.test_origin}"
    elif data.validation is not None:
        images, origin = data.validation, "validation split (no test set given)"
    else:
        images, origin = data.train, "training images (no test set or validation split given)"
    result = evaluate_probabilities(predict_probabilities(model, images.x), images.y, data.class_names)
    history = state["history"]
    speeds = [row["images_per_second"] for row in history if "images_per_second" in row]
    metrics = {
        "spec_name": spec_name,
        "epochs_done": state["epochs_done"],
        "interrupted": interrupted,
        "best": state["best"],
        "evaluated_on": origin,
        "evaluation": result.to_json(),
        "last_epoch": history[-1],
        "training_seconds": round(sum(row["seconds"] for row in history), 1),
        "median_images_per_second": float(np.median(speeds)) if speeds else None,
    }
    run.write_json(run.metrics, metrics)
    plot_confusion(
        result.confusion, data.class_names, run.confusion,
        f"{spec_name}, epoch {state['best']['epoch']}: accuracy {result.accuracy:.4f}\n{origin}",
    )
    _say(f"best epoch {state['best']['epoch']}: {origin}: loss {result.loss:.4f}, accuracy {result.accuracy:.4f}")
    return metrics
