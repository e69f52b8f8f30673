"""The Python API: one call per command of the command line, which is a thin layer over these.

    import archbuilder
    model = archbuilder.build("architectures/resnet50.yaml", overrides=["classes=10"])
    archbuilder.info({"name": "net", ...})["total_params"]
    run = archbuilder.train("spec.yaml", data="images/", epochs=5, out="runs/x")
    archbuilder.evaluate(run.best_model, "held_out/"), archbuilder.predict(run.best_model, ["photo.jpg"])
    archbuilder.export(run.best_model, "litert"), archbuilder.diff(a, b), archbuilder.plot("spec.yaml")

Bad input raises `archbuilder.UserError` (`SpecError` for specs, whose `problems` are the same
located lines the command line prints); what to change is named as these functions' arguments
(`errors.Remedy`), where the command line names its flags. Only the calls that need TensorFlow
import it, when called, so `import archbuilder` stays instant.
"""

from __future__ import annotations

import math
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from archbuilder.api_inputs import path_argument
from archbuilder.errors import Remedy, SpecError, UserError, literal, shown

if TYPE_CHECKING:
    import keras

    from archbuilder.plan.validate import CheckedSpec


def load_spec(spec: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = (),
              max_memory: int | str | None = None) -> "CheckedSpec":
    """Validate a spec file (or a dict holding a spec) with `--set`-style overrides; return the
    checked spec and its plan. A dict's `extends` is relative to the current folder. Arguments of
    the wrong type raise `archbuilder.UserError`; one string is one override."""
    from archbuilder.api_inputs import max_memory_argument, overrides_argument, spec_argument
    from archbuilder.plan.validate import check_memory, load_checked_data, load_checked_spec

    overrides, max_memory = overrides_argument(overrides), max_memory_argument(max_memory)
    if _is_checked(spec):  # already checked: overrides would need the document read again
        if overrides:
            raise UserError("overrides apply to a spec file or dict; this spec was already checked by load_spec: "
                            "give the overrides to load_spec (or pass the file or dict here)")
        if max_memory is not None:
            check_memory(spec.plan, spec.document, max_memory)
        return spec
    spec = spec_argument(spec)
    if isinstance(spec, dict):
        return load_checked_data(spec, overrides, max_memory)
    return load_checked_spec(spec, overrides, max_memory)


def info(spec, overrides: Iterable[str] = (), max_memory: int | str | None = None, per_block: bool = False) -> dict:
    """What `info --json` prints: name, input shape, totals, MACs and one row per stage (or block)."""
    from archbuilder.api_inputs import flag_argument
    from archbuilder.plan import report

    flag_argument("per_block", per_block)
    checked = load_spec(spec, overrides, max_memory)
    labels = checked.spec.stage_labels()
    return {
        "name": checked.spec.name, "input_shape": list(checked.spec.input.shape),
        **report.totals_json(checked.plan), "rows": [row.as_json() for row in report.rows(checked.plan, labels, per_block=per_block)],
    }


def build(spec, overrides: Iterable[str] = (), max_memory: int | str | None = None) -> "keras.Model":
    """The Keras model of a spec file, a dict, or a spec already checked by `load_spec`."""
    checked = load_spec(spec, overrides, max_memory)
    from archbuilder.keras.graph import build_model

    return build_model(checked.spec, checked.plan)


def _is_checked(value) -> bool:
    from archbuilder.plan.validate import CheckedSpec

    return isinstance(value, CheckedSpec)


# --- training, evaluation, prediction, export: TensorFlow is imported when one is called ----------
#
# Each command of the command line is one of these calls; the command line parses flags, calls,
# and prints. Every failure is an archbuilder.UserError whose remedy names these arguments.

@dataclass(frozen=True)
class TrainedRun:
    """What `train` returns: the run folder and what it holds."""

    path: Path  # the run folder: best.keras, checkpoints/, history.csv, metrics.json, ...
    history: list[dict]  # one row per finished epoch, as history.csv
    best: dict | None  # the best epoch: {"epoch", "monitor", "value"}
    metrics: dict  # metrics.json: the best model evaluated ({} when no epoch finished)
    epochs_done: int
    interrupted: bool  # stopped (Ctrl-C, SIGTERM) before the last epoch: train(resume=path) continues
    stop_signal: int = 0  # the signal that stopped it (SIGINT, SIGTERM), on any worker
    writer: bool = True  # False on a multi-worker run's other workers: the chief's folder holds the run

    @property
    def best_model(self) -> Path:
        return self.path / "best.keras"


def train(spec: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
          test: str | os.PathLike | None = None, epochs: int | None = None, out: str | os.PathLike | None = None,
          overrides: Iterable[str] = (), *, resume: str | os.PathLike | None = None, batch_size: int | None = None,
          holdout_photographers: float | None = None, classes: Iterable[str] | None = None,
          skip_bad_images: bool = False, cache: str | None = None, max_memory: int | None = None,
          distribute: str | None = None, devices: int | None = None, worker_timeout: float | None = None,
          save_h5: bool = False,
          verbose: int | None = None, remedy_words: Callable[[Remedy], str] | None = None) -> TrainedRun:
    """Train the spec file `spec` on `data` (a class folder or a SIGNS .h5) into the run folder `out`
    (default runs/<name>-<time>), or continue the run folder `resume` with its own settings.

    What `train` prints goes to stderr; `verbose` is Keras's (0 no progress, 1 a progress bar, 2 a
    line per epoch; default: a bar on a terminal, else lines); archbuilder's own lines (notes, the
    summary) go to sys.stderr whatever it is. A first Ctrl-C stops after the batch and
    returns the run as it is (`interrupted`). `remedy_words` says the hints printed while training
    (the command line passes its flags; default: these arguments). `cache`: where the decoded images
    live, "memory", "disk", "none" (streamed) or "auto" (the default; README "Large data sets").
    """
    from archbuilder.api_inputs import (choice_argument, count_argument, flag_argument, number_argument,
                                        overrides_argument)
    from archbuilder.data.cache_choice import CACHE_CHOICES
    from archbuilder.training.distribute import MODES, planned_distribution

    overrides = overrides_argument(overrides)  # one string is one override, never its characters
    _check_given_paths(data=data, test=test, out=out, resume=resume)
    number_argument("holdout_photographers", holdout_photographers, 0.0, 1.0)
    number_argument("worker_timeout", worker_timeout, 1.0)  # as --worker-timeout
    choice_argument("cache", cache, CACHE_CHOICES)
    choice_argument("verbose", verbose, (0, 1, 2))
    choice_argument("distribute", distribute, MODES)
    # None: the spec's own (or, resumed, the run's); a NumPy integer becomes an int
    epochs, batch_size, devices = (None if value is None else count_argument(name, value)
                                   for name, value in (("epochs", epochs), ("batch_size", batch_size), ("devices", devices)))
    flag_argument("skip_bad_images", skip_bad_images)
    flag_argument("save_h5", save_h5)
    if remedy_words is not None and not callable(remedy_words):
        raise UserError(f"remedy_words: expected a function of a Remedy (received: {type(remedy_words).__name__})")
    given = [name for name, value in (("spec", spec), ("epochs", epochs), ("batch_size", batch_size),
             ("overrides", overrides), ("out", out), ("classes", classes),
             ("holdout_photographers", holdout_photographers)) if value]
    if resume is not None:
        if given:
            raise UserError("", Remedy("{resume} continues a run with its own settings; drop "
                                       + ", ".join(f"{{{name}}}" for name in given)))
        from archbuilder.training.run_dir import RunDir

        run_info = RunDir(resume).read_run_info()  # checked; no TensorFlow yet
        planned = _training_settings(run_info["training"]).distribute
    else:
        if spec is None or data is None:
            raise UserError("", Remedy("train needs {spec} (a spec file) and {data} (a class folder or a SIGNS .h5 file)"))
        if not isinstance(spec, (str, os.PathLike)):
            raise UserError(f"train takes a spec file's path (received: {type(spec).__name__}); "
                            "write a dict with yaml.safe_dump to a file first")
        overrides += tuple(f"training.{name}={value}" for name, value in (("epochs", epochs), ("batch_size", batch_size))
                           if value is not None)
        planned = (load_spec(spec, overrides, max_memory).spec.training or _training_settings({})).distribute
        run_info = None
    if run_info is not None and distribute is None and devices is None:
        distribute, devices = _resumed_distribution(run_info, remedy_words or Remedy.in_python)
    # TF_CONFIG is checked here, before TensorFlow is imported (which takes seconds to minutes).
    cluster = planned_distribution(distribute or planned)
    from archbuilder.output_paths import check_cache_outside, check_output_folder, check_outside

    check_cache_outside(data, test)  # XLA's and the decoded images' caches are written by every worker
    if out is not None and resume is None and (cluster is None or cluster.is_chief):
        check_output_folder(out)  # before the data is read; the other workers write nothing anywhere
        for read in (data, test):
            check_outside(out, read)
    from archbuilder.training.distribute import DEFAULT_WORKER_TIMEOUT
    from archbuilder.training.loop import TrainRequest, train as run_training

    result = run_training(TrainRequest(
        spec_path=None if spec is None else os.fspath(spec), overrides=overrides,
        data=None if data is None else os.fspath(data), test=None if test is None else os.fspath(test),
        holdout_photographers=holdout_photographers, classes=_class_list(classes),
        out=None if out is None else os.fspath(out), resume=None if resume is None else os.fspath(resume),
        verbose=_verbosity() if verbose is None else verbose, skip_bad_images=skip_bad_images, cache=cache,
        save_h5=save_h5, max_memory=max_memory, distribute=distribute, devices=devices,
        worker_timeout=DEFAULT_WORKER_TIMEOUT if worker_timeout is None else worker_timeout,
        remedy_words=remedy_words or Remedy.in_python,
    ))
    state = (result.run.read_state() or {}) if result.writer else {}
    return TrainedRun(result.run.root, list(state.get("history", [])), state.get("best"), result.metrics,
                      result.epochs_done, result.interrupted, result.stop_signal, result.writer)


def _training_settings(data: dict):
    from archbuilder.spec.training import TrainingSpec

    return TrainingSpec.model_validate(data)


def _resumed_distribution(run_info: dict, words: Callable[[Remedy], str]) -> tuple[str | None, int | None]:
    """The distribution run.json records (what the run was started with), said when it is not one device."""
    mode, devices = run_info.get("distribute"), run_info.get("devices")
    if mode not in (None, "none"):
        import sys

        on = f" on {devices} devices" if devices else ""
        print(f"resuming with the run's own distribution: {mode}{on}"
              + words(Remedy(" ({distribute} and {devices} choose another)")), file=sys.stderr, flush=True)
    return mode, devices


def _verbosity() -> int:
    """Keras's fit verbosity: a live progress bar on a terminal; redirected to a file or a pipe,
    one plain line per epoch, because the bar's carriage returns and colour codes garble logs."""
    import sys

    return 1 if sys.stdout.isatty() else 2


def load_model(path: str | os.PathLike, spec: str | os.PathLike | None = None, overrides: Iterable[str] = (),
               strict: bool = False, max_memory: int | None = None) -> "keras.Model":
    """A `.keras` file (safe mode: no code runs), or a Keras 2 `.h5` / Keras 3 file read into the
    model of `spec` (the weights report is printed to stderr). `evaluate`, `predict` and `export`
    take the model returned with the class names stored in its file."""
    from archbuilder.export.runtimes import export_kind

    path_argument("path", path)
    if export_kind(path) is not None:
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):  # a data folder, say
            raise UserError(f"{shown(path)}: is a folder, not a model file (.keras, .h5) or a SavedModel export")
        raise UserError(f"{shown(path)}: an export runs in its own runtime; give its path to archbuilder.predict")
    return _opened(path, spec, overrides, strict, max_memory).model


def evaluate(model, data: str | os.PathLike, *, batch_size: int = 64, classes: Iterable[str] | None = None,
             spec: str | os.PathLike | None = None, overrides: Iterable[str] = (), strict: bool = False,
             max_memory: int | None = None) -> dict:
    """What `evaluate --json` prints: loss, accuracy, per-class precision and recall, the confusion
    matrix, of `model` (a model file's path, or a model from `load_model`) on the labelled images
    `data` (a class folder or a SIGNS .h5), preprocessed exactly as in training."""
    from archbuilder.api_inputs import count_argument
    from archbuilder.data.sources import evaluation_data
    from archbuilder.output_paths import check_cache_outside
    from archbuilder.training.metrics import evaluate_probabilities, predict_probabilities

    path_argument("data", data)
    batch_size = count_argument("batch_size", batch_size)
    check_cache_outside(data)
    opened = _opened(model, spec, overrides, strict, max_memory)
    from archbuilder.training.head_output import check_one_vector_per_image, per_image_output

    check_one_vector_per_image(per_image_output(opened.model), opened.label)  # a classifier's, before reading data
    # auto: a folder too large for memory is streamed (one pass, bounded memory), with the same pixels
    images = evaluation_data(os.fspath(data), opened.shape, opened.class_names, classes=_class_list(classes), cache="auto")
    result = evaluate_probabilities(predict_probabilities(opened.model, images.x, batch_size), images.y,
                                    opened.class_names)
    return {"model": opened.label, "data": os.fspath(data), **result.to_json()}


@dataclass(frozen=True)
class Predictions:
    """What `predict` returns: one row of class probabilities per input; for a model with named
    outputs (`outputs:` in its spec), `outputs` holds each one's raw array and `probabilities` is None."""

    class_names: tuple[str, ...]
    probabilities: Any  # numpy float32 (inputs, classes)
    inputs: list[Path] | None  # the image files, in order; None for an array
    outputs: dict[str, Any] | None = None  # output name -> numpy (inputs, ...), as the model returns it

    @property
    def classes(self) -> list[str]:
        """The most probable class of each input (a classifier's; a map or named outputs have none:
        `rows()` says what they hold)."""
        if self.outputs is not None or self.probabilities.ndim != 2:
            what = "named outputs" if self.outputs is not None else \
                f"a map per image ({'x'.join(map(str, self.probabilities.shape[1:]))})"
            raise UserError(f"classes: the model gives {what}, not one class per image; use rows() or "
                            + ("outputs" if self.outputs is not None else "probabilities"))
        return [self.class_names[int(row.argmax())] for row in self.probabilities]

    def rows(self) -> list[dict]:
        """What `predict --json` prints, one dict per input. A classifier's row holds its class
        probabilities; a map per image (a U-Net's H x W x classes) its shape and each class's share of
        the pixels where it is the most probable."""
        import numpy as np

        if self.outputs is not None:  # raw arrays, as the model gives them: no meaning is assumed
            count = len(next(iter(self.outputs.values())))
            return [{**({"image": shown(self.inputs[index])} if self.inputs is not None else {}),
                     "outputs": {name: values[index].tolist() for name, values in self.outputs.items()}}
                    for index in range(count)]
        rows = []
        for index, row in enumerate(self.probabilities):
            image = {"image": shown(self.inputs[index])} if self.inputs is not None else {}
            if row.ndim > 1:
                counts = np.bincount(np.argmax(row, axis=-1).ravel(), minlength=len(self.class_names))
                rows.append({**image, "output_shape": list(row.shape),
                             "pixel_share": {n: float(c) / counts.sum() for n, c in zip(self.class_names, counts)}})
                continue
            best = int(row.argmax())
            rows.append({**image, "probabilities": dict(zip(self.class_names, map(float, row))),
                         "class": self.class_names[best], "probability": float(row[best])})
        return rows


def predict(model, inputs, *, batch_size: int = 64, spec: str | os.PathLike | None = None,
            overrides: Iterable[str] = (), strict: bool = False, max_memory: int | None = None) -> Predictions:
    """Class probabilities of `inputs` by `model` (a model file or an export's path: `.keras`, `.h5`
    with `spec`, `.tflite`, `.onnx`, a SavedModel folder; or a model from `load_model`).

    `inputs`: an image file or a folder (its image files), a list of them, or uint8 images already
    at the model's input size, (N, H, W, C) or one (H, W, C). Files are decoded and resized exactly
    as in training; every input goes through training's x / 255."""
    import numpy as np

    from archbuilder.api_inputs import count_argument, overrides_argument
    from archbuilder.data.images import load_image_files
    from archbuilder.export.runtimes import export_kind, open_exported
    from archbuilder.training.metrics import predict_probabilities

    batch_size = count_argument("batch_size", batch_size)
    overrides = overrides_argument(overrides)  # also where an export refuses them
    if isinstance(model, (str, os.PathLike)):
        path_argument("model", model)
    paths = None if isinstance(inputs, np.ndarray) else _image_paths(inputs)
    if isinstance(model, (str, os.PathLike)) and export_kind(model) is not None:
        if spec is not None:
            raise UserError(f"{shown(model)}: ", Remedy("{spec} applies to Keras 2 .h5 files; an export carries its own architecture"))
        exported = open_exported(model, overrides, strict, max_memory)
        names, shape = exported.class_names(), exported.input_shape
        x = load_image_files(paths, shape) if paths is not None else _image_array(inputs, shape)
        if exported.outputs is not None:
            return Predictions(tuple(exported.metadata.get("class_names") or ()), None, paths, exported.predict_uint8(x))
        return Predictions(names, exported.predict_uint8(x), paths)
    opened = _opened(model, spec, overrides, strict, max_memory)
    x = load_image_files(paths, opened.shape) if paths is not None else _image_array(inputs, opened.shape)
    from archbuilder.keras.model_files import named_output_shapes

    if named_output_shapes(opened.model) is not None:
        return Predictions(opened.class_names, None, paths, _named_outputs(opened.model, x, batch_size))
    return Predictions(opened.class_names, predict_probabilities(opened.model, x, batch_size), paths)


def _named_outputs(model, x_uint8, batch_size: int) -> dict:
    """Each named output's values for uint8 images, through training's x / 255, batch by batch."""
    import numpy as np

    from archbuilder.data.pipeline import inference_dataset

    from archbuilder.keras.model_files import named_output_shapes

    batches = [model.predict_on_batch(batch) for batch in inference_dataset(x_uint8, batch_size)]
    return {name: np.concatenate([np.asarray(batch[name]) for batch in batches]) if batches else
            np.zeros((0, *shape[1:]), np.float32) for name, shape in named_output_shapes(model).items()}


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote, and how the export compared with Keras in its own runtime."""

    path: Path
    runtime: str  # "TensorFlow SavedModel", "LiteRT", "ONNX Runtime"
    label: str  # the runtime and the precision: "LiteRT int8"
    size_bytes: int
    checked_on: str  # "8 seeded random inputs", or "N images of DATA"
    max_difference: float  # largest |p - p_keras| over the inputs checked
    keras_accuracy: float | None = None  # with `check`: on its labelled images
    export_accuracy: float | None = None
    warnings: tuple[str, ...] = ()  # differences beyond the bounds (the file is written all the same)
    outputs: tuple[str, ...] = ()  # a model's named outputs (whose accuracy `check` cannot measure)


# A float32 export computes what Keras computes, op for op, in another kernel library: the
# probabilities differ by rounding (measured ~1e-7); 1e-4 is the bound, far above that.
FLOAT32_TOLERANCE = 1e-4
# int8 may cost at most this many points of accuracy against float32 before a warning.
INT8_MAX_LOSS_POINTS = 1.0


def export(model, format: str, out: str | os.PathLike | None = None, *, quantize: str | None = None,
           calibration: str | os.PathLike | None = None, check: str | os.PathLike | None = None,
           spec: str | os.PathLike | None = None, overrides: Iterable[str] = (), strict: bool = False,
           max_memory: int | None = None) -> ExportResult:
    """Write `model` (a model file's path, or a model from `load_model`; then `out` is needed) as
    `format` (saved_model, litert, onnx; default `out`: beside the model file), then run it in its
    own runtime against Keras on `check` (labelled images) or 8 seeded random inputs."""
    import numpy as np

    from archbuilder.export import FORMATS, QUANTIZATIONS

    _check_given_paths(out=out, calibration=calibration, check=check)
    if format not in FORMATS:
        raise UserError("", Remedy(f"{{format}}: unknown export format {literal(format)}; one of: {', '.join(FORMATS)}"))
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise UserError("", Remedy(f"{{quantize}}: unknown quantization {literal(quantize)}; one of: {', '.join(QUANTIZATIONS)}"))
    if quantize is not None and format != "litert":
        raise UserError("", Remedy("{quantize} applies to {format}" + f" (received: {literal(format)})", (("format", "litert"),)))
    if quantize == "int8" and calibration is None:
        raise UserError("", Remedy("{quantize} needs {calibration}: a folder of photos like those the model will see",
                                   (("quantize", "int8"),)))
    if calibration is not None and quantize != "int8":
        raise UserError("", Remedy("{calibration} applies to {quantize}", (("quantize", "int8"),)))
    from archbuilder.export.calibration import calibration_inputs
    from archbuilder.export.formats import check_out, default_out, write_export
    from archbuilder.export.runtimes import open_exported
    from archbuilder.keras.model_files import PREPROCESSING, read_model_metadata
    from archbuilder.training.metrics import predict_probabilities

    if isinstance(model, (str, os.PathLike)):
        path_argument("model", model)
        if not Path(model).exists():
            raise UserError(f"{shown(model)}: no such model file")
        out = Path(out) if out is not None else default_out(Path(model), format, quantize)
    elif out is None:
        raise UserError("", Remedy("export of a model object needs {out}, the path to write"))
    out = Path(out)
    check_out(out, format)
    opened = _opened(model, spec, overrides, strict, max_memory)
    from archbuilder.keras.model_files import named_output_shapes

    named = named_output_shapes(opened.model) is not None
    if not named:
        from archbuilder.training.head_output import per_image_output

        if len(shape := per_image_output(opened.model)) != 1:  # refused before anything is written
            raise UserError(f"{opened.label}: the model outputs a map ({'x'.join(map(str, shape))} per image); an "
                            "export runs classifiers (one value per class) and named outputs in their runtimes; "
                            "predict with the model file instead")
    if named and check is not None:
        raise UserError(f"{opened.label}: ", Remedy("{check} measures a classifier's accuracy; this model has named "
                                                    "outputs (it is checked on 8 seeded random inputs without it)"))
    calibration_x = calibration_inputs(Path(calibration), opened.shape) if calibration is not None else None
    labelled = None
    if check is not None:
        from archbuilder.data.sources import evaluation_data

        labelled = evaluation_data(os.fspath(check), opened.shape, opened.class_names)
    stored = read_model_metadata(model) if isinstance(model, (str, os.PathLike)) else {}
    metadata = {**stored, "class_names": list(opened.class_names), "input_shape": list(opened.shape),
                "preprocessing": PREPROCESSING, "input": "float32 x/255, shape (batch, height, width, channels)"}
    if quantize:
        metadata["quantization"] = quantize
    if named:  # what lets the runtimes take an export of several outputs as the spec's named ones
        metadata["outputs"] = list(named_output_shapes(opened.model))

    def run_it_there(path: Path):
        """The export, written beside `out`, in its own runtime against Keras (before it replaces `out`)."""
        exported = open_exported(path)
        if labelled is not None:  # uint8 images through the x/255 of training, on both sides
            return (exported.runtime, predict_probabilities(opened.model, labelled.x),
                    exported.predict_uint8(labelled.x), f"{len(labelled.x)} images of {os.fspath(check)}")
        x = np.random.default_rng(0).random((8, *opened.shape), dtype=np.float32)
        return exported.runtime, opened.model.predict_on_batch(x), exported.predict(x), "8 seeded random inputs"

    runtime, reference, probabilities, source = write_export(opened.model, format, out, metadata, quantize,
                                                             calibration_x, check=run_it_there)
    label = runtime + (f" {quantize}" if quantize else " float32")
    if named:  # each output against Keras's output of that name; the largest difference of all
        difference = max(float(np.max(np.abs(probabilities[k] - np.asarray(reference[k])))) for k in probabilities)
    else:
        reference = np.asarray(reference)
        difference = float(np.max(np.abs(probabilities - reference))) if len(reference) else 0.0
    warnings = []
    if not np.isfinite(difference):  # NaN compares as neither more nor less than the tolerance
        warnings.append("Keras or the export gives NaN or infinity on these inputs, so the two could not be "
                        "compared; the model's weights may hold NaN (a training that diverged)")
    elif quantize is None and difference > FLOAT32_TOLERANCE:
        warnings.append(f"the float32 export differs from Keras by {difference:.2e} (more than "
                        f"{FLOAT32_TOLERANCE:g}); please report this model")
    accuracies = (None, None)
    if labelled is not None:
        accuracies = tuple(float(np.mean(np.argmax(p, axis=1) == labelled.y)) for p in (reference, probabilities))
        loss = round(100 * (accuracies[0] - accuracies[1]), 6)
        if quantize == "int8" and loss > INT8_MAX_LOSS_POINTS:
            warnings.append(f"int8 lost {loss:.2f} points of accuracy against float32 (more than "
                            f"{INT8_MAX_LOSS_POINTS:g}); use float16, or calibrate with more photos like these")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.is_dir() else out.stat().st_size
    return ExportResult(out, runtime, label, size, source, difference, *accuracies, tuple(warnings),
                        tuple(metadata.get("outputs", ())))


def diff(a, b, overrides: Iterable[str] = (), overrides_a: Iterable[str] = (), overrides_b: Iterable[str] = (),
         max_memory: int | None = None):
    """Specs `a` and `b` (files or dicts) compared fully resolved: a `plan.compare.Comparison` with
    `.fields` (what differs), `.parts` (per-part params and MACs) and `.as_json()` (what `diff --json`
    prints). `overrides` applies to both sides, `overrides_a` / `overrides_b` to one."""
    from archbuilder.api_inputs import overrides_argument
    from archbuilder.plan import compare

    overrides = overrides_argument(overrides)
    checked, problems = [], []
    for side, spec, own in (("a", a, overrides_argument(overrides_a)), ("b", b, overrides_argument(overrides_b))):
        try:  # both sides are checked, so that two bad files are reported at once
            checked.append(load_spec(spec, (*overrides, *own), max_memory))
        except SpecError as error:
            problems.extend(_on_side(error.problems, own, side))
    if problems:  # a problem of the overrides both sides share is said once
        raise SpecError(list({str(problem): problem for problem in problems}.values()))
    return compare.compare(*checked)


def _on_side(problems, own: tuple[str, ...], side: str) -> list:
    """`problems` with those located at one of side `side`'s own overrides said as `--set-a` /
    `--set-b`, which one gave them (`<--set classes=0>` named neither the option nor the side)."""
    from dataclasses import replace

    from archbuilder.errors import abbreviated

    labels = {f"<--set {written(text)}>": f"<--set-{side} {written(text)}>" for text in own for written in (abbreviated, shown)}
    return [replace(problem, location=replace(problem.location, file=labels[problem.location.file]))
            if problem.location.file in labels else problem for problem in problems]


def plot(spec, out: str | os.PathLike | None = None, level: str = "blocks", overrides: Iterable[str] = (),
         max_memory: int | None = None) -> Path:
    """Draw `spec` with Graphviz into `out` (.png or .svg; default build/<name>-<level>.png): one box
    per block, or (`level="layers"`) Keras's plot_model of every layer. Returns the file written."""
    from archbuilder import diagrams
    from archbuilder.output_paths import check_output_file

    if out is not None:
        path_argument("out", out)
        diagrams.output_format(out)
        check_output_file(out)
    checked = spec if _is_checked(spec) else load_spec(spec, overrides, max_memory)
    if out is None:
        out = check_output_file(Path("build") / f"{checked.spec.name}-{level}.png")
    diagrams.require_graphviz()  # before building anything: a missing `dot` costs no wait
    return diagrams.render(checked, out, level)


@dataclass(frozen=True)
class _Opened:
    model: Any  # keras.Model
    class_names: tuple[str, ...]
    shape: tuple[int, int, int]
    label: str  # the file's path, as reports name the model


# Class names of the models `load_model` returned, read from their files (the model object does not
# carry them); weak, so a model dropped by the user is not kept alive here.
_LOADED_CLASS_NAMES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _opened(model, spec, overrides, strict: bool, max_memory: int | None) -> _Opened:
    """A model file's path, or a model object (from `load_model`, `build`, or Keras), ready to run."""
    from archbuilder.api_inputs import flag_argument, max_memory_argument, overrides_argument
    from archbuilder.keras.model_files import check_one_output, model_classes, model_input_shape, named_output_shapes

    _check_given_paths(spec=spec)
    flag_argument("strict", strict)
    overrides, max_memory = overrides_argument(overrides), max_memory_argument(max_memory)

    if isinstance(model, (str, os.PathLike)):
        import sys

        from archbuilder.keras.model_files import open_model_file

        path_argument("model", model)
        loaded = open_model_file(model, spec, overrides, strict, max_memory=max_memory,
                                 on_report=lambda text: print(text, file=sys.stderr, flush=True))
        check_one_output(loaded, shown(model))
        names = model_classes(loaded, model)
        _LOADED_CLASS_NAMES[loaded] = names
        return _Opened(loaded, names, model_input_shape(loaded, model), shown(model))
    from archbuilder.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    if not isinstance(model, keras.Model):
        raise UserError(f"model: expected a model file's path or a keras.Model (received: {type(model).__name__})")
    if spec is not None or overrides or strict or max_memory is not None:
        raise UserError("", Remedy("{spec}, {overrides}, {strict} and {max_memory} apply to a model file; "
                                   "this model is already built"))
    label = f"<model {model.name}>"
    check_one_output(model, label)
    names = _LOADED_CLASS_NAMES.get(model) or (() if named_output_shapes(model) is not None else
                                                tuple(str(i) for i in range(model.output_shape[-1])))
    return _Opened(model, names, model_input_shape(model, label), label)


def _class_list(classes) -> tuple[str, ...] | None:
    """`classes` as given: a list of class names (a text would be read letter by letter)."""
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes):
        raise UserError(f"classes: expected a list of class names, e.g. ['0', '1'] (received: {classes!r:.60})")
    if not classes:  # as `--classes ''` is: an empty list names no class, and was taken as every class
        raise UserError("classes: an empty list names no class; leave it out (None) for every class")
    return tuple(classes)


def _check_given_paths(**paths) -> None:
    """`path_argument` for each optional path argument given (None: left out)."""
    for argument, value in paths.items():
        if value is not None:
            path_argument(argument, value)


def _image_paths(inputs) -> list[Path]:
    """The image files named, a folder standing for the image files directly inside it."""
    from archbuilder.file_kinds import file_kind, is_image

    arguments = [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs
    try:
        arguments = list(arguments)
    except TypeError:
        raise UserError(f"inputs: expected image paths or a uint8 array (received: {type(inputs).__name__})") from None
    if not arguments:
        raise UserError("inputs: no image given")
    paths: list[Path] = []
    for argument in arguments:
        path_argument("inputs", argument)
        argument = Path(argument)
        if argument.is_dir():
            inside = sorted(p for p in argument.iterdir() if p.is_file() and not p.name.startswith(".") and is_image(p))
            if not inside:
                raise UserError(f"{shown(argument)}: is a folder with no image files in it")
            paths.extend(inside)
        elif not argument.is_file():
            kind = file_kind(argument)  # /dev/null, a pipe: never read (a pipe would wait for ever)
            raise UserError(f"{shown(argument)}: " + (f"not an image file ({kind})" if kind else "no such image file"))
        else:
            paths.append(argument)
    return paths


def _image_array(x, shape: tuple[int, int, int]):
    """uint8 images at the model's input size, (N, H, W, C); one image (H, W, C) becomes a batch of one."""
    import numpy as np

    if x.dtype != np.uint8:
        raise UserError(f"inputs: images must be uint8 (0 to 255), as decoded from files (received dtype {x.dtype}); "
                        "training's x / 255 is applied here")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape):
        raise UserError(f"inputs: images of shape {tuple(x.shape)}; the model takes (N, {', '.join(map(str, shape))}): "
                        "resize them first, or give image files, which are resized as in training")
    return x


def load_weights(model, path: str | os.PathLike, strict: bool = False) -> str:
    """Read the weights file `path` into `model` (from `build`): a Keras 2 `.h5` by layer name, a
    Keras 3 `.keras` / `.weights.h5` by structure. Returns the report of what matched; with
    `strict`, any missing, extra or misshapen layer is an error and nothing is loaded."""
    from archbuilder.api_inputs import flag_argument
    from archbuilder.keras.weights import load_weights_file

    path_argument("path", path)
    flag_argument("strict", strict)
    return load_weights_file(model, path, strict=strict).format()


def save(model, path: str | os.PathLike) -> Path:
    """Write `model` to `path`, atomically: `.keras` (naming only Keras's own objects, so plain Keras
    loads it with safe mode on) or `.h5` (Keras's legacy HDF5; what Keras 2 cannot rebuild from it
    is said on stderr). Returns the path."""
    import sys

    from archbuilder.file_kinds import is_h5, is_keras
    from archbuilder.output_paths import check_output_file

    path_argument("path", path)
    path = Path(path)
    if not (is_h5(path) or is_keras(path)):
        raise UserError(f"{shown(path)}: a model file ends in .keras or .h5 (received: {path.name})")
    check_output_file(path)
    if is_h5(path):
        from archbuilder.keras.weights_h5 import keras2_note, save_h5

        written = save_h5(model, path)
        if note := keras2_note(model, written):
            print(note, file=sys.stderr, flush=True)
        return written
    from archbuilder.atomic import atomic_path
    from archbuilder.keras.initializers import make_portable

    make_portable(model)  # the file names only Keras's own objects: plain Keras loads it
    with atomic_path(path, suffix=".keras") as tmp:  # Keras accepts only the lower-case suffix
        model.save(tmp)
    return path


def pack_data(folder: str | os.PathLike, out: str | os.PathLike, *, size: int = 64, channels: int = 3,
              split: str = "train", holdout_photographers: float | None = None, seed: int = 0,
              classes: Iterable[str] | None = None) -> dict:
    """Write `folder` (one subfolder per class) to the HDF5 file `out` in the SIGNS layout the
    notebook reads (`train_set_x` (N, size, size, channels) uint8, `train_set_y`, `list_classes`);
    all images as `split`, or whole photographers held out as `test_set_*`. Returns what was
    stored: {"shapes": {"train_set_x": (N, size, size, channels), ...}, "class_names": [...]}."""
    from archbuilder.api_inputs import choice_argument, count_argument, number_argument, whole_number_argument
    from archbuilder.output_paths import check_cache_outside
    from archbuilder.runtime import import_tensorflow_quietly
    from archbuilder.spec.training import MAX_SEED

    path_argument("folder", folder)
    path_argument("out", out)
    size = count_argument("size", size)
    channels = choice_argument("channels", channels, (1, 3))
    if channels is None:
        raise UserError("channels: expected 1 (grayscale) or 3 (RGB) (received: None)")
    choice_argument("split", split, ("train", "test"))
    number_argument("holdout_photographers", holdout_photographers, 0.0, 1.0)
    seed = whole_number_argument("seed", seed, 0, MAX_SEED)  # as training.seed
    classes = _class_list(classes)
    _check_pack_file(out, folder)
    _check_class_folder(folder)
    check_cache_outside(folder)
    import_tensorflow_quietly()
    from archbuilder.data.hdf5 import write_signs_h5
    from archbuilder.data.sources import training_data

    loaded = training_data(os.fspath(folder), None, (size, size, channels), holdout_photographers=holdout_photographers,
                           seed=seed, classes=classes, memory=_PackMemory())
    splits = {"train": loaded.train, "test": loaded.test} if loaded.test is not None else {split: loaded.train}
    write_signs_h5(os.fspath(out), splits)
    return {"shapes": {f"{name}_set_x": tuple(images.x.shape) for name, images in splits.items()},
            "class_names": list(loaded.train.class_names)}


def _check_pack_file(out, folder) -> None:
    """An HDF5 pack goes to a new .h5 file, or replaces an HDF5 file: never one of the photos it
    packs (a photo named as OUT was overwritten), nor another kind of file."""
    import h5py

    from archbuilder.file_kinds import is_h5
    from archbuilder.output_paths import check_outside, check_output_file

    if not is_h5(out):
        raise UserError(f"{shown(out)}: an HDF5 pack is written to a file ending in .h5 (received: {Path(out).name})")
    check_output_file(out)
    check_outside(out, folder)
    if os.path.isfile(out) and not h5py.is_hdf5(out):
        raise UserError(f"{shown(out)}: exists and is not an HDF5 file; it is left as it is (name a new file)")


def _check_class_folder(folder) -> None:
    """A pack's input is a class folder: training_data also reads packs, which a pack of a pack
    would take whole, past the memory check (an .h5 at --size 20000 ran out of memory)."""
    from archbuilder.data.records import is_records
    from archbuilder.file_kinds import is_h5

    if is_h5(folder) or is_records(folder):
        kind = "an HDF5 pack" if is_h5(folder) else "a record pack"
        raise UserError(f"{shown(folder)}: is {kind}; a pack is made of a class folder (one subfolder per class)")


class _PackMemory:
    """A pack holds every image decoded at its size while it is written, once: refused above the
    memory limit when the folder is listed, before anything is decoded (`--size 100000` asked NumPy
    for 671 GiB). In place of training's MemoryBudget, which counts a training run's copies."""

    def choose(self, choice: str, count: int, shape: tuple[int, int, int], origin: str) -> str:
        from archbuilder.plan.size_guard import LIMIT_VARIABLE, format_bytes, memory_limit

        need, limit = count * math.prod(shape), memory_limit()
        if need > limit:
            raise UserError(f"{shown(origin)}: {count} images at {'x'.join(map(str, shape))} hold an estimated "
                            f"{format_bytes(need)} in memory while packed, more than the limit of {format_bytes(limit)}; "
                            f"give a smaller size, or raise the limit with {LIMIT_VARIABLE}")
        return "memory"


def pack_records(folder: str | os.PathLike, out: str | os.PathLike, *, shard_size: int = 1024,
                 holdout_photographers: float | None = None, classes: Iterable[str] | None = None) -> dict:
    """Write `folder` (one subfolder per class) to the folder `out` as TFRecord shards of the encoded
    images and their labels, with an index (data/records.py), which train, evaluate and test= read
    as they read the class folder. A pack cut short continues where it stopped when called again.
    Returns the index: {"images": N, "class_names": [...], "shards": [...], ...}."""
    from archbuilder.api_inputs import count_argument
    from archbuilder.runtime import import_tensorflow_quietly

    path_argument("folder", folder)
    path_argument("out", out)
    if holdout_photographers:
        raise UserError("", Remedy("{holdout_photographers} applies to HDF5 packs (pack_data); record files hold "
                                   "every image of the folder"))
    shard_size = count_argument("shard_size", shard_size)  # a NumPy integer becomes an int
    from archbuilder.output_paths import check_cache_outside, check_outside

    check_outside(out, folder)
    check_cache_outside(folder)
    import_tensorflow_quietly()
    from archbuilder.data.folder import scan_image_folder
    from archbuilder.data.records import pack_records as write_records
    from archbuilder.data.sources import select_classes

    folder, classes = os.fspath(folder), _class_list(classes)
    keep = select_classes(scan_image_folder(folder).class_names, classes, folder) if classes else None
    return write_records(folder, os.fspath(out), shard_size, keep)
