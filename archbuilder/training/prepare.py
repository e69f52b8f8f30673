"""A run to train: a new run folder from a spec, or an existing one to resume.

A new run records how it was started (run.json, spec.yaml, classes.txt) before anything is
trained; resuming reads that record back, so the data, the split and the settings are the run's own.
Every check (spec, training memory, run folder, data, the built model's head) runs before anything
is written; then the writer (the chief of a distributed run) locks the run folder, and
training.loop.train releases it. `--resume` re-checks run.json, state.json and the model it loads.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from archbuilder.data.split import stratified_split
from archbuilder.errors import Remedy, UserError, shown
from archbuilder.keras.model_files import PREPROCESSING
from archbuilder.spec.training import TrainingSpec
from archbuilder.training.head_output import check_one_vector_per_image, plan_output
from archbuilder.training.optimizers import compile_model
from archbuilder.training.run_dir import RunDir
from archbuilder.training.run_state import PreparedRun, RunState


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class RunData:
    """Train / validation / test arrays of one run, as run.json describes them."""

    def __init__(self, run_info: dict, shape: tuple[int, int, int], memory=None):
        """`memory`: a data.cache_choice.MemoryBudget, which the images held are counted against."""
        from archbuilder.data.sources import training_data

        training = TrainingSpec.model_validate(run_info["training"])
        loaded = training_data(
            run_info["data"], run_info["test"], shape,
            holdout_photographers=run_info["holdout_photographers"],
            seed=training.seed, classes=tuple(run_info["classes_filter"]) if run_info["classes_filter"] else None,
            skip_bad_images=run_info.get("skip_bad_images", False),
            cache=run_info.get("cache") or "auto", memory=memory,  # runs before --cache held their images
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


def model_metadata(class_names, shape, spec_name: str) -> dict:
    """What every .keras file of the run carries (archbuilder.json)."""
    return {
        "class_names": list(class_names),
        "input_shape": list(shape),
        "preprocessing": PREPROCESSING,
        "spec_name": spec_name,
    }


def seeded_model(spec, seed: int):
    """The spec's model, its initial weights fixed by training.seed: the same on one device, mirrored
    and multi-worker. Keras gives every initializer without a seed of its own one drawn from
    Python's generator when the layer is made; seeding it (and NumPy's and TensorFlow's, as
    keras.utils.set_random_seed does) makes those draws the seed's."""
    import keras

    from archbuilder.keras.graph import build_model

    keras.utils.set_random_seed(seed)
    return build_model(spec)


def weights_fingerprint(model) -> str:
    """SHA-256 of every weight's bytes, in order: equal on workers that hold equal weights."""
    import hashlib

    import keras
    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value)).tobytes())
    return digest.hexdigest()[:16]


def steps_per_epoch(data: RunData, training: TrainingSpec) -> int:
    from archbuilder.data.pipeline import steps_per_epoch as steps

    return steps(len(data.train), training.batch_size)


def _check_replica_batches(data: RunData, training: TrainingSpec, distribution) -> None:
    from archbuilder.training.distribute import check_last_batches

    counts = {"training": len(data.train)}
    if data.validation is not None:
        counts["validation"] = len(data.validation)
    check_last_batches(counts, training.batch_size, distribution.replicas)


def _dump_spec(spec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False)


def _load_spec(spec_path: str, overrides: tuple[str, ...], max_memory: int | None = None):
    """The checked spec, its memory estimated for training at its batch size and optimizer."""
    from archbuilder.plan.size_guard import memory_limit, optimizer_slots
    from archbuilder.plan.validate import check_memory, load_checked_spec

    checked = load_checked_spec(spec_path, overrides=list(overrides), max_memory=max_memory)
    # A network that is no classifier (a U-Net's map) is refused first, before its training memory.
    check_one_vector_per_image(plan_output(checked.plan), spec_path)
    training = checked.spec.training or TrainingSpec()
    check_memory(checked.plan, checked.document, memory_limit() if max_memory is None else max_memory,
                 batch_size=training.batch_size, training=True,
                 slots=optimizer_slots(training.optimizer, training.momentum))
    return checked


def _memory_budget(checked, training: TrainingSpec, max_memory: int | None):
    """The memory limit less the model's training estimate: what the data may hold."""
    from archbuilder.data.cache_choice import MemoryBudget
    from archbuilder.plan.size_guard import estimate, memory_limit, optimizer_slots

    model = estimate(checked.plan, training.batch_size, True, optimizer_slots(training.optimizer, training.momentum))
    return MemoryBudget(memory_limit() if max_memory is None else max_memory, model.total, training.batch_size)


def _image_counts(data: RunData) -> dict[str, int]:
    """Images in each part of the run's data (training, validation, test)."""
    parts = {"training": data.train, "validation": data.validation, "test": data.test}
    return {name: len(images) for name, images in parts.items() if images is not None}


def _absolute(path: str | None) -> str | None:
    """Data paths are recorded absolute, so `--resume` works from any folder."""
    return os.path.abspath(path) if path else None


def planned_training(request) -> TrainingSpec:
    """The training settings of the run `request` starts or resumes, read without TensorFlow
    (tf.distribute must be set up before TensorFlow runs anything)."""
    if request.resume:
        return TrainingSpec.model_validate(RunDir(request.resume).read_run_info()["training"])
    # The spec and its training memory are checked here already, before tf.distribute starts.
    return _load_spec(request.spec_path, request.overrides, request.max_memory).spec.training or TrainingSpec()


def start_new(request, distribution) -> PreparedRun:
    """`request` is a training.loop.TrainRequest; only the chief of a distributed run checks and
    writes the run folder (the other workers leave nothing behind)."""
    checked = _load_spec(request.spec_path, request.overrides, request.max_memory)
    spec = checked.spec
    training = spec.training or TrainingSpec()
    shape = tuple(spec.input.shape)
    run = RunDir(request.out or f"runs/{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if distribution.is_chief:
        _check_new_run_folder(run)
    run_info = {
        "spec_source": str(request.spec_path),
        "overrides": list(request.overrides),
        "data": _absolute(request.data),
        "test": _absolute(request.test),
        "holdout_photographers": request.holdout_photographers,
        "classes_filter": list(request.classes) if request.classes else None,
        "skip_bad_images": request.skip_bad_images,
        "cache": request.cache or "auto",
        "training": training.model_dump(mode="json"),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # What was asked (auto resolved): --resume continues with the same distribution.
        "distribute": distribution.mode, "devices": request.devices,
    }
    data = RunData(run_info, shape, _memory_budget(checked, training, request.max_memory))
    _check_replica_batches(data, training, distribution)
    classes = len(data.class_names)
    overrides = request.overrides
    if spec.classes != classes:
        had = "sets no classes" if spec.classes is None else f"has {spec.classes} {_plural(spec.classes, 'class', 'classes')}"
        say(
            f"note: the spec {had}; the data has {classes} "
            f"({', '.join(data.class_names)}), so the head was resized to {classes} (classes={classes})"
        )
        overrides = (*overrides, f"classes={classes}")
        checked = _load_spec(request.spec_path, overrides, request.max_memory)
        spec = checked.spec
    run_info["overrides"] = list(overrides)
    run_info["class_names"] = list(data.class_names)
    run_info["images"] = _image_counts(data)  # --resume says if the data changed since
    from archbuilder.training.head_output import check_classifier_output

    with distribution.scope():
        model = seeded_model(spec, training.seed)
        check_classifier_output(model, classes, str(request.spec_path))
        compile_model(model, training, steps_per_epoch(data, training))
    if distribution.is_chief:  # every check passed: only now is anything written
        from archbuilder.atomic import atomic_write_text

        starting = {run.spec.name: _dump_spec(spec), run.classes.name: "\n".join(data.class_names) + "\n"}
        with _locked_unless_failing(run):
            _check_new_run_folder(run, starting)  # another process may have started here meanwhile
            run.remove_temporaries()  # what a start killed before run.json was writing
            # run.json last: a folder without it is a start that never finished (see the check).
            for name, text in starting.items():
                atomic_write_text(run.root / name, text)
            run.write_json(run.run_json, {**run_info, "spec_name": spec.name, "input_shape": list(shape),
                                          "initial_weights": weights_fingerprint(model)})
    return PreparedRun(run, model, data, training, shape, spec.name, RunState())


def _check_new_run_folder(run: RunDir, starting: dict[str, str] | None = None) -> None:
    """A new run needs a writable folder holding nothing (a lock file left by a kill is nothing, nor
    the write probe of another worker's output check, which may start while the chief prepares).

    Nor is a start killed before its last file, run.json: spec.yaml, classes.txt and their
    temporaries, when they hold what this start writes (`starting`: name -> text; before that is
    known, they pass to the check made once it is). The same command then starts the run over,
    and a file of the user's that merely shares a name is never replaced by other content.
    """
    from archbuilder.output_paths import PROBE_PREFIX, check_output_folder
    from archbuilder.training.run_lock import LOCK_NAME

    check_output_folder(run.root)
    if not run.root.exists():
        return
    held = [p for p in run.root.iterdir() if p.name != LOCK_NAME and not p.name.startswith(PROBE_PREFIX)]
    if run.is_run():
        raise UserError(f"{run.root}: already exists and is not empty",
                        Remedy("; use {resume} or another {out}", (("resume", str(run.root)),)))
    if held and not all(_left_by_a_killed_start(run, path, starting) for path in held):
        raise UserError(f"{run.root}: already exists and is not empty", Remedy("; give another {out}"))


def _left_by_a_killed_start(run: RunDir, path: Path, starting: dict[str, str] | None) -> bool:
    names = (run.spec.name, run.classes.name, run.run_json.name)
    if path.is_file() and any(path.name.startswith(f".{name}.") and ".tmp" in path.name for name in names):
        return True  # atomic_path's temporary: never the user's, and never a finished file
    if path.name not in (run.spec.name, run.classes.name) or not path.is_file():
        return False
    try:
        return starting is None or path.read_text(encoding="utf-8") == starting[path.name]
    except (OSError, UnicodeDecodeError):
        return False


def _plural(count: int, one: str, many: str) -> str:
    return one if count == 1 else many


@contextmanager
def _locked_unless_failing(run: RunDir):
    """Take the run folder's lock; give it back if preparing fails (training.loop.train releases it
    once the run is prepared)."""
    run.lock.acquire()
    try:
        yield
    except BaseException:
        run.lock.release()
        raise


def resume(request, distribution) -> PreparedRun:
    """Every worker of a distributed run reads the run folder; only the chief locks and writes it.
    What is read is checked again, as for a new run: run.json, state.json, the spec, the model."""
    run = RunDir(request.resume)
    run_info = run.read_run_info()  # before the lock: a folder that is no run gets no lock file
    if not distribution.is_chief:
        return _resume_checked(run, run_info, request, distribution)
    with _locked_unless_failing(run):
        run.remove_temporaries()  # what a killed process was writing; the files it replaces are intact
        return _resume_checked(run, run_info, request, distribution)


def _resume_checked(run: RunDir, run_info: dict, request, distribution) -> PreparedRun:
    from archbuilder.training.head_output import check_classifier_output

    state = run.read_state()
    state = RunState.from_json(state) if state is not None else None
    moved = {key: _absolute(given) for key, given in (("data", request.data), ("test", request.test))
             if given and _absolute(given) != run_info.get(key)}
    started_on = {key: run_info.get(key) for key in moved}
    run_info.update(moved)  # the data moved, say: the classes are checked below to be the run's
    if request.skip_bad_images:  # images may have gone bad since the run started
        run_info["skip_bad_images"] = True
    if request.cache:  # every choice gives the same batches; only memory and speed differ
        run_info["cache"] = request.cache
    shape = tuple(run_info["input_shape"])
    training = TrainingSpec.model_validate(run_info["training"])
    memory = _memory_budget(_load_spec(str(run.spec), (), request.max_memory), training, request.max_memory)
    data = RunData(run_info, shape, memory)
    counts, started = _image_counts(data), run_info.get("images")
    if isinstance(started, dict) and started != counts:  # files added or removed in the data's folders
        now, then = (", ".join(f"{n} {part}" for part, n in c.items()) + " images" for c in (counts, started))
        say(f"note: the data now gives {now}; the run started with {then}: the batches from here differ "
            "from those the run would have seen")
    for key, path in moved.items():  # said, and kept in run.json: a later --resume reads the same data
        before = shown(started_on[key]) if started_on[key] else "none"
        say(f"resuming with {key} {shown(path)} (the run started with {before}; the classes are the same)")
    if moved and distribution.is_chief:
        run.write_json(run.run_json, {**run.read_run_info(), **moved})
    if state is None:  # killed before its first epoch finished: start again from the run's own spec
        spec = _load_spec(str(run.spec), (), request.max_memory).spec
        with distribution.scope():
            model = seeded_model(spec, training.seed)
            check_classifier_output(model, len(data.class_names), str(run.spec))
            compile_model(model, training, steps_per_epoch(data, training))
        say(f"resuming {run.root} from the start: no epoch had finished")
        return PreparedRun(run, model, data, training, shape, run_info["spec_name"], RunState())
    # As every model file: safe mode, archbuilder's initializers registered, damage named.
    from archbuilder.keras.model_files import open_model_file

    checkpoint = run.checkpoints / state.checkpoint
    with distribution.scope():
        model = open_model_file(checkpoint)
    check_classifier_output(model, len(data.class_names), str(checkpoint))
    say(f"resuming {run.root} after epoch {state.epochs_done} of {training.epochs}")
    return PreparedRun(run, model, data, training, shape, run_info["spec_name"], state)
