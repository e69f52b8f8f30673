"""`train`: data -> model -> fit with per-epoch checkpoints, resumable after any kill.

Imports Keras: only the train command imports this module, after runtime.py has set up the
environment. One `model.fit` call runs all epochs; the callbacks (training/callbacks/) write the
run folder after each finished epoch. Resuming loads the last checkpoint (weights *and* optimizer
state, including the step counter that drives the learning-rate schedule) and feeds the same
batches the run would have seen, because the order of epoch `e` depends only on (seed, e).
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from archbuilder.runtime import import_tensorflow_quietly

import_tensorflow_quietly()

import numpy as np  # noqa: E402

from archbuilder.cpu_info import cpuinfo  # noqa: E402
from archbuilder.errors import OutputFailed, Remedy, UserError, shown  # noqa: E402
from archbuilder.training.callbacks import Session, callbacks  # noqa: E402
from archbuilder.training import streamed_data  # noqa: E402
from archbuilder.training.callbacks.stop_guard import ctrl_c_stops_after_the_batch  # noqa: E402
from archbuilder.training.distribute import DEFAULT_WORKER_TIMEOUT, Distribution, WorkerLost, inference_call  # noqa: E402
from archbuilder.training.distribute import start as start_distribution  # noqa: E402
from archbuilder.training.end_phases import EndPhases, evaluation_images, load_saved_weights  # noqa: E402
from archbuilder.training.grappler_rounds import one_grappler_round  # noqa: E402
from archbuilder.training.instance_switch import gpu_present  # noqa: E402
from archbuilder.training.metrics import evaluate_probabilities, predict_probabilities  # noqa: E402
from archbuilder.training.precision import emulated_bfloat16_note, precision_policy  # noqa: E402
from archbuilder.training.prepare import (  # noqa: E402
    model_metadata, planned_training, resume, say, start_new, steps_per_epoch, weights_fingerprint,
)
from archbuilder.training.run_dir import RunDir  # noqa: E402
from archbuilder.training.run_state import PreparedRun, RunState  # noqa: E402


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
    cache: str | None = None  # data.cache_choice: auto, memory, disk, none; None: run.json's, else auto
    save_h5: bool = False  # also write the best model as RUN_DIR/best.h5 (Keras's HDF5 format)
    max_memory: int | None = None  # bytes the training estimate may reach (default: size_guard.memory_limit())
    distribute: str | None = None  # none, mirrored, multi-worker, auto; None: the spec's
    devices: int | None = None  # replicas of `mirrored` (logical CPUs where there is no GPU)
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT
    # How lines printed while training say what to do next (the command line passes its flags).
    remedy_words: Callable[[Remedy], str] = Remedy.in_python


@dataclass
class TrainResult:
    run: RunDir
    epochs_done: int
    interrupted: bool
    metrics: dict = field(default_factory=dict)
    writer: bool = True  # False on a distributed run's workers other than the chief
    stop_signal: int = 0  # the signal (SIGINT, SIGTERM) that interrupted the run, on any worker


def train(request: TrainRequest) -> TrainResult:
    """Train into a run folder, which stays locked against other writers until this returns
    (prepare takes the lock on the writer, the chief, once every check has passed)."""
    planned = planned_training(request)
    # tf.distribute must be set up before TensorFlow runs anything (the data loading does).
    distribution = start_distribution(request.distribute or planned.distribute, request.devices, request.worker_timeout)
    if planned.batch_norm_recompute_batches and distribution.strategy is not None:
        if distribution.watchdog is not None:
            distribution.watchdog.stop()
        raise UserError(
            f"training.batch_norm_recompute_batches: {planned.batch_norm_recompute_batches} applies to single-device "
            f"training, and this run is distributed ({distribution.describe()})",
            Remedy("; set it to 0 or train with {distribute}", (("distribute", "none"),)))
    with precision_policy(planned.precision):
        prepared = resume(request, distribution) if request.resume else start_new(request, distribution)
        # The chief's folder, or one the command names (the same on every worker); another worker's
        # default name is its own and exists nowhere, so it keeps RUN_DIR.
        if distribution.watchdog is not None and (distribution.is_chief or request.out or request.resume):
            distribution.watchdog.resume_at(prepared.run.root)
        try:
            return _train(request, prepared, distribution)
        finally:
            prepared.run.lock.release()
            if distribution.watchdog is not None:
                distribution.watchdog.stop()


def _train(request: TrainRequest, prepared: PreparedRun, distribution: Distribution) -> TrainResult:
    run, data, training = prepared.run, prepared.data, prepared.training
    classes = len(data.class_names)
    steps = steps_per_epoch(data, training)
    say(
        f"training {prepared.spec_name} on {len(data.train)} images, {classes} classes"
        + (f", validating on {len(data.validation)}" if data.validation is not None else "")
        + (f", testing on {len(data.test)} ({data.test_origin})" if data.test is not None else "")
        + f"; {training.epochs} epochs of {steps} steps, batch {training.batch_size}; run folder {shown(run.root)}"
    )
    if (reading := streamed_data.reading_line(data)) is not None:
        say(reading)
    if distribution.strategy is not None:
        say(f"distributed: {distribution.describe()}; the batch of {training.batch_size} is global, "
            f"about {training.batch_size / distribution.replicas:g} images per replica, learning rate "
            f"{training.learning_rate:g} as the spec says" + ("" if distribution.is_chief else "; the chief writes the run folder"))
    if training.precision != "float32":
        say(f"precision: {training.precision} (weights and the final softmax in float32)")
        note = emulated_bfloat16_note(training.precision, cpuinfo()[1], gpu_present())
        if note:
            say(note)
    # Every function traced and called from here on is optimized by grappler once, not twice
    # and again by tfg: the same computation, less of the first step (grappler_rounds.py).
    with one_grappler_round():
        return _fit_and_end(request, prepared, distribution, steps)


def _fit_and_end(request: TrainRequest, prepared: PreparedRun, distribution: Distribution, steps: int) -> TrainResult:
    run, model, data, training = prepared.run, prepared.model, prepared.data, prepared.training
    _use_exact_statistics(model, distribution)
    _use_fast_kernels(model, training)
    predict = _predictor(distribution)
    session = Session(
        run, prepared.state, data, model_metadata(data.class_names, prepared.shape, prepared.spec_name),
        training.batch_size, monitor="val_loss" if data.validation is not None else "loss", predict=predict,
        writer=distribution.is_chief,
    )
    if prepared.state.epochs_done < training.epochs:
        with ctrl_c_stops_after_the_batch(session, say), _scratch(session):
            try:
                _fit(prepared, session, distribution, steps, request.verbose)
            except OutputFailed:  # the terminal's output, not the run folder
                raise
            except OSError as error:  # a full disk, a file-size limit, a folder gone read-only
                raise _write_failed(error, run, session.state, distribution) from None
            except _cluster_errors() as error:
                raise _worker_lost(error, distribution, run) from None
    if distribution.watchdog is not None:
        # No collective follows: what is left is the chief's alone, and the end barrier waits for it.
        distribution.watchdog.stop()
    try:
        return _end(request, prepared, distribution, session, predict)
    finally:
        distribution.leave_together()


def _end(request: TrainRequest, prepared: PreparedRun, distribution: Distribution, session: Session,
         predict) -> TrainResult:
    """What follows the last step: the final weights' fingerprint, the chief's evaluation and files."""
    run, model, training = prepared.run, prepared.model, prepared.training
    state = session.state
    if distribution.cluster is not None:
        say(f"{distribution.cluster.describe()}: final weights {weights_fingerprint(model)}")
    if session.diverged_at:
        epoch, batch = session.diverged_at
        where = f"epoch {epoch}" + (f", batch {batch}" if batch else "")
        last = state.epochs_done
        raise TrainingDiverged(
            f"training stopped: the loss became NaN or infinite at {where}. "
            + (f"{run.root} keeps epoch {last}. " if last else ""),
            Remedy("Try a lower training.learning_rate (e.g. {overrides}).",
                   (("overrides", ["training.learning_rate=0.0001"]),)))
    # Ctrl-C during the last epoch's last batch interrupted nothing: every epoch is done.
    interrupted = session.stop_requested and state.epochs_done < training.epochs
    resume_hint = request.remedy_words(_resume_remedy(run, distribution))
    if not distribution.is_chief:
        if interrupted:
            say(f"stopped with the other workers after epoch {state.epochs_done}; the chief's run folder keeps it; "
                f"continue with: {resume_hint}")
        return TrainResult(run, state.epochs_done, interrupted, {}, writer=False, stop_signal=session.stop_signal)
    try:
        metrics = _finish(prepared, state, interrupted, request.save_h5, predict, session.weights_saved_at)
    except OutputFailed:
        raise
    except OSError as error:
        raise _write_failed(error, run, state, distribution) from None
    if interrupted and state.epochs_done:
        say(f"stopped after epoch {state.epochs_done}; continue with: {resume_hint}")
    elif interrupted:
        say(f"stopped before the first epoch finished; no epoch is kept; start it again with: {resume_hint}")
    elif session.stop_requested:
        say(f"interrupted after the last batch: all {training.epochs} epochs are done; nothing to resume")
    return TrainResult(run, state.epochs_done, interrupted, metrics, stop_signal=session.stop_signal)


def _predictor(distribution: Distribution):
    if distribution.strategy is None:
        return predict_probabilities
    watchdog = distribution.watchdog

    def predict(model, x):
        forward = inference_call(model)
        if watchdog is None:
            return predict_probabilities(model, x, call=forward)

        def call(batch):
            # The chief predicts the test set alone (at each epoch's end, and after the last): that
            # is progress, which its watchdog must hear of, or a test set that takes longer than
            # --worker-timeout to predict would end the run as if a worker were lost.
            watchdog.beat()
            return forward(batch)
        return predict_probabilities(model, x, call=call)
    return predict


@contextmanager
def _scratch(session: Session):
    """A temporary folder for what a non-chief worker must save, removed afterwards."""
    if session.writer:
        yield
        return
    with tempfile.TemporaryDirectory(prefix="archbuilder-worker-") as folder:
        session.scratch = Path(folder)
        yield


def _cluster_errors() -> tuple:
    import tensorflow as tf

    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError)


def _worker_lost(error, distribution: Distribution, run: RunDir) -> UserError:
    text = str(getattr(error, "message", error))
    first = (text.strip().splitlines() or [type(error).__name__])[0][:300]
    where = distribution.cluster.describe() if distribution.cluster else distribution.describe()
    lost = distribution.cluster.lost_peers(text) if distribution.cluster else []
    return WorkerLost(
        f"{where}: the cluster lost {', '.join(lost) or 'a worker'} ({type(error).__name__}: {first}). {run.root} keeps the last "
        f"finished epoch", Remedy("; rerun it on every worker with {resume}", (("resume", str(run.root)),)))


def _resume_remedy(run: RunDir, distribution: Distribution) -> Remedy:
    """How to continue the run: the run's own distribution is used again (run.json records it)."""
    if distribution.cluster is None:
        return Remedy("{call}", (("resume", str(run.root)),), call="train")
    return Remedy("{call}, on every worker", (("resume", str(run.root)), ("distribute", "multi-worker")), call="train")


def _fit(prepared: PreparedRun, session: Session, distribution: Distribution, steps: int, verbose: int) -> None:
    from archbuilder.data import pipeline

    data, training = prepared.data, prepared.training
    classes = len(data.class_names)
    arguments = (data.train.x, data.train.y, classes, training.batch_size, training.seed,
                 prepared.state.epochs_done, training.epochs, training.augmentation)
    validation = None
    if distribution.strategy is None:
        dataset = pipeline.training_dataset(*arguments)
        if data.validation is not None:
            validation = pipeline.validation_dataset(data.validation.x, data.validation.y, classes, training.batch_size)
    else:  # each worker builds its own shard; all of them run the same number of steps
        strategy = distribution.strategy
        dataset = strategy.distribute_datasets_from_function(
            lambda context: pipeline.replica_training_dataset(context, *arguments))
        if data.validation is not None:
            v = data.validation
            validation = strategy.distribute_datasets_from_function(
                lambda context: pipeline.replica_inference_dataset(context, v.x, v.y, classes, training.batch_size))
    if distribution.strategy is None:  # under a strategy Keras does this itself
        from archbuilder.training.first_step import build_before_tracing, trace_prediction_once

        build_before_tracing(prepared.model, dataset.element_spec)
        if data.test is not None and session.writer:  # predicted after every epoch (EpochRow)
            trace_prediction_once(prepared.model, dataset.element_spec[0])
    try:
        prepared.model.fit(
            dataset, epochs=training.epochs, initial_epoch=prepared.state.epochs_done, steps_per_epoch=steps,
            validation_data=validation, verbose=verbose,
            callbacks=[_graph_preparation(), *streamed_data.skipped_images(data, say),
                       *callbacks(session, prepared.model, distribution, say, training)],
            shuffle=False,
        )
    except Exception as error:  # noqa: BLE001 - only a streamed file's failure is turned into a message here
        streamed_data.stop_at_bad_file(error, data, prepared.run, session.state)
        raise


def _use_exact_statistics(model, distribution: Distribution) -> None:
    """Synchronized batch norm's statistics in two passes over all replicas, not Keras's
    E[x^2] - E[x]^2 (which loses float32 precision where a channel's mean dwarfs its spread)."""
    from archbuilder.training.synchronized_moments import use_exact_synchronized_moments

    layers = use_exact_synchronized_moments(model)
    if layers and distribution.replicas > 1:
        say(f"synchronized batch norm: {len(layers)} layer(s), statistics over the {distribution.replicas} "
            "replicas combined exactly (two passes, one all-reduce)")


def _use_fast_kernels(model, training) -> None:
    """Same math, other kernels: Adam as one fused op per weight, called directly without a
    strategy, the training and test steps traced as one tf.function each (not Keras's two), batch
    norm as one fused op per layer, and the gradients of swish, residual adds, global pooling and
    squeeze-and-excitation blocks written out (a smaller graph to trace and optimize before the
    first step, fewer passes over an SE block's input), the exact GELU and
    layer norm as one fused loop each way (fewer passes over the widest tensors), self-attention
    as 2-D matrix products, and where it pays on this CPU, grouped convolutions
    without XLA, the matmul kernel gradient, Winograd's 3x3 convolutions, 1x1 convolutions (and
    separable ones' 1x1 halves) as matrix products and TensorFlow's own depthwise kernel gradient;
    and a zero padding that pads as SAME would for the convolution after it, folded into it.
    All are made on the instances, so they are made again on a model loaded for --resume; model
    files do not change."""
    from archbuilder.training.direct_updates import use_direct_updates
    from archbuilder.training.fused_adam import use_fused_adam
    from archbuilder.training.fused_layers import use_fused_layers
    from archbuilder.training.unnested_step_functions import use_unnested_step_functions

    use_fused_adam(model.optimizer)
    use_direct_updates(model.optimizer)
    use_unnested_step_functions(model)
    fused = {name.replace("_", " "): len(layers) for name, layers in use_fused_layers(model).items() if layers}
    if fused:
        say("fused kernels, the same math: " + ", ".join(f"{count} {name}" for name, count in fused.items()))
    if training.fast_cpu_kernels:
        from archbuilder.training.depthwise_choice import switch_depthwise_gradient_where_faster
        from archbuilder.training.grouped_choice import switch_grouped_where_faster
        from archbuilder.training.kernel_choice import switch_kernels_where_faster
        from archbuilder.training.pointwise_choice import switch_pointwise_where_faster, switch_separable_where_faster
        from archbuilder.training.timed_switch import TimingBudget
        from archbuilder.training.winograd_choice import switch_winograd_where_faster

        switch_grouped_where_faster(model, training.batch_size, say)
        switch_kernels_where_faster(model, training.batch_size, say)
        switch_winograd_where_faster(model, training.batch_size, say)
        budget = TimingBudget()  # shared by the three below (timed_switch.py)
        switch_pointwise_where_faster(model, training.batch_size, say, budget)
        switch_separable_where_faster(model, training.batch_size, say, budget)
        switch_depthwise_gradient_where_faster(model, training.batch_size, say, budget)
    from archbuilder.training.fused_padding import use_folded_padding

    folded = use_folded_padding(model)  # after the timed switches: a Winograd layer keeps its padding
    if folded:
        say(f"zero padding folded into {len(folded)} convolution(s) (SAME), the same sums")


def _graph_preparation():
    from archbuilder.training.first_step import GraphPreparation

    return GraphPreparation(say)


def _write_failed(error: OSError, run: RunDir, state: RunState, distribution: Distribution) -> UserError:
    """Files are written atomically, so a failed write leaves the last finished epoch intact."""
    reason = error.strerror or (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    where = f" ({error.filename})" if error.filename else ""
    remedy = _resume_remedy(run, distribution)
    return UserError(f"{run.root}: cannot write the run folder: {reason}{where}. It keeps epoch {state.epochs_done}; "
                     "make room and continue with: ", remedy)


def _finish(prepared: PreparedRun, state: RunState, interrupted: bool, save_h5: bool, predict,
            weights_saved_at: int | None) -> dict:
    """Evaluate the best model; write metrics.json, the confusion matrix and, if asked, best.h5.
    `weights_saved_at`: the epoch whose checkpoint the model in memory equals (Session's)."""
    import tensorflow as tf

    from archbuilder.training.first_step import trace_prediction_once
    from archbuilder.training.plots import plot_confusion

    if not state.history:
        return {}
    run, model, data = prepared.run, prepared.model, prepared.data
    phases = EndPhases()
    if weights_saved_at != state.best["epoch"]:  # the best epoch is the last one saved: already in memory
        if not run.best.exists():  # deleted by hand: not a write that failed (nor a full disk)
            raise UserError(f"{shown(run.best)}: no such model file; it held the run's best epoch "
                            f"({state.best['epoch']}), which the evaluation and metrics.json are of: restore it")
        with phases("loading the best epoch's weights"):
            load_saved_weights(model, run.best)
    if save_h5:
        from archbuilder.keras.weights_h5 import keras2_note
        from archbuilder.keras.weights_h5 import save_h5 as write_h5

        h5 = write_h5(model, run.root / "best.h5")
        say(f"saved {shown(h5)}")
        if note := keras2_note(model, h5):
            say(note)
    images, origin = evaluation_images(data)
    with phases(f"predicting {len(images.y)} images"):
        if predict is predict_probabilities:  # one trace for every batch size (a no-op if fit traced it)
            trace_prediction_once(model, tf.TensorSpec((None, *images.x.shape[1:]), tf.float32))
        result = evaluate_probabilities(predict(model, images.x), images.y, data.class_names)
    history = state.history
    speeds = [row["images_per_second"] for row in history if "images_per_second" in row]
    metrics = {
        "spec_name": prepared.spec_name,
        "epochs_done": state.epochs_done,
        "interrupted": interrupted,
        "best": state.best,
        "evaluated_on": origin,
        "evaluation": result.to_json(),
        "last_epoch": history[-1],
        "training_seconds": round(sum(row["seconds"] for row in history), 1),
        "median_images_per_second": float(np.median(speeds)) if speeds else None,
    }
    with phases("metrics.json and the confusion matrix"):
        run.write_json(run.metrics, metrics)
        plot_confusion(
            result.confusion, data.class_names, run.confusion,
            f"{prepared.spec_name}, epoch {state.best['epoch']}: accuracy {result.accuracy:.4f}\n{origin}",
        )
    say(phases.describe())
    say(f"best epoch {state.best['epoch']}: {origin}: loss {result.loss:.4f}, accuracy {result.accuracy:.4f}")
    return metrics
