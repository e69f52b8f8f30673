"""Faults, really done: SIGKILL mid-run and mid-checkpoint, a corrupt checkpoint, a full disk
(RLIMIT_FSIZE), bad images in the data folder, and model files that are unsafe or broken.

Kills and the full disk run `python cli.py train` as real processes; the rest run the CLI in this
process on real files. The tiny spec on 30 photos keeps each training process to a few seconds.
"""

from __future__ import annotations

import csv
import json
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from train_support import REPO, TINY_SPEC, cli_env, image_folder, invoke, run_cli_in_process

EPOCHS = 6
STEPS = 2  # 30 images, batch 16


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return image_folder(tmp_path_factory.mktemp("photos") / "images", per_class=10)


def _start(args, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "cli.py"), *map(str, args), "--quiet"],
        cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen,
    )


def _train(run, photos, *options) -> subprocess.Popen:
    return _start(["train", TINY_SPEC, "--data", photos, "--epochs", EPOCHS, "--out", run, *options])


def _epochs_done(run: Path) -> int:
    try:
        return json.loads((run / "state.json").read_text())["epochs_done"]
    except FileNotFoundError:
        return 0


def _kill_when(process: subprocess.Popen, ready, timeout: float = 180) -> None:
    """SIGKILL `process` as soon as `ready()` holds (polled about every millisecond)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"the run ended before the kill: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the moment to kill never came")
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _checkpoint_being_written(run: Path):
    """A temporary checkpoint exists: model.save is writing it (atomic_path names it .epoch-N.keras.*.tmp.keras)."""
    folder = run / "checkpoints"
    return lambda: folder.is_dir() and any(p.name.startswith(".epoch-") for p in folder.iterdir())


def _temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp" in path.name


def assert_every_file_complete(run: Path) -> None:
    """Each file in the run folder (temporaries aside) parses completely as what its name says."""
    for path in sorted(run.rglob("*")):
        if path.is_dir() or _temporary(path):
            continue
        data = path.read_bytes()
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None, path
                assert {"config.json", "model.weights.h5"} <= set(archive.namelist()), path
        elif path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(data.decode().splitlines()))
            assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1)), path
        elif path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"), path
        elif path.suffix in (".yaml", ".txt"):
            assert data.endswith(b"\n"), path
        elif path.name == ".lock":  # left by a killed writer: the kernel dropped its flock (run_lock.py)
            assert data == b"" or data.startswith(b"pid "), path
        else:
            pytest.fail(f"unexpected file in the run folder: {path}")
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").exists() else None
    if state and state["checkpoint"]:
        assert (run / "checkpoints" / state["checkpoint"]).exists(), "state.json names a missing checkpoint"


def _resume(run, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "train", "--resume", str(run), "--quiet"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300, **popen,
    )


def _assert_finished(run: Path) -> None:
    with open(run / "history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == list(range(1, EPOCHS + 1))
    assert _epochs_done(run) == EPOCHS
    assert [p.name for p in run.rglob("*") if _temporary(p)] == []
    assert_every_file_complete(run)


def _kill_and_resume(run: Path, photos: Path, moments) -> str:
    """Kill a run at each moment in turn (each a function of the run folder), resuming after each;
    the last resume's stderr. The last resume, which nothing kills, runs in this process (a
    TensorFlow start saved)."""
    process = _train(run, photos)
    for number, moment in enumerate(moments):
        if number:
            process = _start(["train", "--resume", run])
        _kill_when(process, moment(run))
        assert_every_file_complete(run)
    result = run_cli_in_process("train", "--resume", run, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    _assert_finished(run)
    return result.stderr


def _after_epoch_then_random(rng: random.Random, fewest: int = 0):
    """A random moment: after a random number of finished epochs (0: during start-up), plus up to 0.3 s."""
    def moment(run):
        epochs, extra = rng.randrange(fewest, EPOCHS - 1), rng.uniform(0, 0.3)
        reached = []

        def ready():
            if not reached and _epochs_done(run) >= epochs:
                reached.append(time.monotonic())
            return bool(reached) and time.monotonic() - reached[0] >= extra
        return ready
    return moment


def test_sigkill_at_a_random_moment_then_during_a_checkpoint_write_then_resume(tmp_path, photos):
    import keras

    rng = random.Random(4)
    run = tmp_path / "run"
    stderr = _kill_and_resume(run, photos, [_after_epoch_then_random(rng, fewest=1), _checkpoint_being_written])
    assert f"resuming {run} after epoch " in stderr
    # The optimizer went on rather than starting over: Adam's step count is every epoch's steps
    # (30 photos in batches of 16: 2 an epoch), its moments restored with it from the checkpoints.
    state = json.loads((run / "state.json").read_text())
    model = keras.saving.load_model(run / "checkpoints" / state["checkpoint"])
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == EPOCHS * 2


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_sigkill_at_many_random_moments_then_resume(tmp_path, photos, seed):
    rng = random.Random(seed)
    moments = [_checkpoint_being_written] + [_after_epoch_then_random(rng) for _ in range(5)]
    _kill_and_resume(tmp_path / "run", photos, moments)


@pytest.mark.slow
def test_killed_before_the_first_epoch_resumes_from_the_start(tmp_path, photos):
    run = tmp_path / "run"
    process = _train(run, photos)
    _kill_when(process, lambda: (run / "run.json").exists())
    assert _epochs_done(run) == 0
    result = _resume(run)
    assert result.returncode == 0, result.stderr
    _assert_finished(run)


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, photos):
    """A run killed after its first finished epoch (of EPOCHS); tests work on copies of it.

    Its layers use archbuilder's own initializer, as the notebook's ResNets do: resuming failed to
    load such checkpoints ("Functional could not be deserialized") until it loaded them as every
    other model file is loaded, with archbuilder's Keras objects registered.
    """
    run = tmp_path_factory.mktemp("interrupted") / "run"
    process = _train(run, photos, "--set", "defaults.kernel_initializer={type: glorot_uniform_tf1, seed: 0}")
    _kill_when(process, lambda: _epochs_done(run) >= 1)
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    for stray in [p for p in target.rglob("*") if _temporary(p)]:
        stray.unlink()
    return target


def test_corrupt_latest_checkpoint_stops_naming_the_file(tmp_path, interrupted_run):
    run = _copy(interrupted_run, tmp_path)
    state = json.loads((run / "state.json").read_text())
    checkpoint = run / "checkpoints" / state["checkpoint"]
    data = bytearray(checkpoint.read_bytes())
    checkpoint.write_bytes(bytes(data[: len(data) // 2]))  # a torn write, as a disk that lied about fsync leaves
    result = run_cli_in_process("train", "--resume", run, "--quiet")
    assert result.returncode == 2, result.stderr
    assert str(checkpoint) in result.stderr and "Traceback" not in result.stderr
    assert json.loads((run / "state.json").read_text()) == state  # nothing was rewritten


def test_full_disk_is_a_clear_error_and_the_previous_checkpoint_survives(tmp_path, interrupted_run):
    run = _copy(interrupted_run, tmp_path)
    state = json.loads((run / "state.json").read_text())
    checkpoint = run / "checkpoints" / state["checkpoint"]
    before = checkpoint.read_bytes()

    with zipfile.ZipFile(checkpoint) as archive:
        weights = archive.getinfo("model.weights.h5").file_size
    # Loading the checkpoint extracts its weights (without psutil, Keras writes them beside it);
    # saving the next one writes the whole archive, a few KB more. A limit in between lets the
    # run load and then fails its next checkpoint write, as a full disk would.
    limit = (weights + len(before)) // 2

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = _resume(run, preexec_fn=small_disk)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "File too large" in result.stderr and f"keeps epoch {state['epochs_done']}" in result.stderr
    assert checkpoint.read_bytes() == before
    assert json.loads((run / "state.json").read_text())["epochs_done"] == state["epochs_done"]
    assert [p.name for p in run.rglob("*") if _temporary(p)] == []
    assert_every_file_complete(run)
    result = run_cli_in_process("train", "--resume", run, "--quiet")  # space again: it continues from the checkpoint
    assert result.returncode == 0, result.stderr
    _assert_finished(run)


def _bad_images(photos: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "images"
    shutil.copytree(photos, data, symlinks=True)
    corrupt = data / "1" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)  # a JPEG header, then noise
    unreadable = data / "2" / "gone.png"
    unreadable.symlink_to(tmp_path / "deleted-meanwhile.png")  # listed, but reading fails
    return data, corrupt, unreadable


def test_bad_images_are_named_or_skipped_with_a_warning_when_asked(tmp_path, photos):
    data, corrupt, unreadable = _bad_images(photos, tmp_path)
    result = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2
    assert f"{corrupt}: not a readable image" in result.output and f"{unreadable}: not a readable image" in result.output
    assert not (tmp_path / "run").exists()

    result = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--quiet",
                    "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert f"warning: skipping {corrupt}: not a readable image" in result.output
    assert f"warning: skipping {unreadable}: not a readable image" in result.output
    assert "training tiny on 30 images" in result.output  # 32 listed, 2 skipped


def test_hostile_file_names_and_a_symlink_loop_are_one_line_each_and_skip_only_themselves(tmp_path, photos):
    # A symlink loop made the listing raise OSError (a traceback, exit 1); a name with a newline or a
    # terminal escape split the message or drove the terminal; and skipping matched files by shown
    # name, so a good file shown like a bad one ("a\\nb" beside "a<newline>b") was dropped too.
    data = tmp_path / "images"
    shutil.copytree(photos, data, symlinks=True)
    (data / "0" / "loop-a.jpg").symlink_to(data / "0" / "loop-b.jpg")
    (data / "0" / "loop-b.jpg").symlink_to(data / "0" / "loop-a.jpg")
    (data / "1" / "new\nline.jpg").write_bytes(b"not an image")
    (data / "1" / "esc\x1b[2J.png").write_bytes(b"")
    good = next(p for p in sorted((data / "1").iterdir()) if p.suffix.lower() == ".jpg" and "line" not in p.name)
    (data / "1" / "new\\nline.jpg").symlink_to(good.resolve())  # a good file, shown as the bad one is
    result = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert [line for line in lines if "not a readable image" in line] == lines and len(lines) == 4, lines
    assert f"{data}/1/new\\nline.jpg: not a readable image" in result.output
    assert f"{data}/1/esc\\x1b[2J.png: not a readable image" in result.output
    assert "\x1b" not in result.output and not (tmp_path / "run").exists()

    result = invoke("train", TINY_SPEC, "--data", data, "--epochs", "1", "--out", tmp_path / "run", "--quiet",
                    "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert result.output.count("warning: skipping") == 4
    assert "training tiny on 31 images" in result.output  # 30 photos and the good look-alike; 4 skipped


def _lambda_checkpoint(path: Path, marker: Path) -> None:
    import keras

    def leave_marker(x, marker=str(marker)):
        open(marker, "w").close()
        return x

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(leave_marker)(inputs)))
    keras.Model(inputs, outputs).save(path)
    marker.unlink()  # building the model ran the function once, symbolically


def test_a_checkpoint_carrying_a_lambda_is_refused_never_run(tmp_path, interrupted_run, photos):
    run = _copy(interrupted_run, tmp_path)
    checkpoint = run / "checkpoints" / json.loads((run / "state.json").read_text())["checkpoint"]
    marker = tmp_path / "lambda-ran"
    _lambda_checkpoint(checkpoint, marker)
    result = run_cli_in_process("train", "--resume", run, "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(checkpoint) in result.stderr and "Lambda" in result.stderr
    assert not marker.exists()
    result = invoke("evaluate", checkpoint, "--data", photos)
    assert result.exit_code == 2 and "contains a Lambda layer" in result.output
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["garbled_weights", "truncated_h5"])
def test_corrupt_model_files_are_clear_errors(tmp_path, interrupted_run, photos, damage):
    with zipfile.ZipFile(interrupted_run / "best.keras") as archive:
        entries = {item.filename: archive.read(item) for item in archive.infolist()}
    if damage == "garbled_weights":
        # A well-formed zip whose weights are garbage: only loading can tell.
        path = tmp_path / "garbled.keras"
        weights = entries["model.weights.h5"]
        entries["model.weights.h5"] = weights[:512] + bytes(b ^ 0xFF for b in weights[512:])
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
        result = invoke("evaluate", path, "--data", photos)
        assert result.exit_code == 2 and f"{path}: not a loadable Keras model" in result.output, result.output
    else:
        path = tmp_path / "cut.h5"
        path.write_bytes(entries["model.weights.h5"][:4096])
        result = invoke("build", TINY_SPEC, "--weights", path, "--out", tmp_path / "out")
        assert result.exit_code == 2, result.output
        assert str(path) in result.output and not (tmp_path / "out").exists()


def test_resume_with_the_data_moved_says_so_and_records_it(tmp_path, interrupted_run, photos):
    # `--resume RUN --data OTHER` trained on OTHER without a word, while run.json still named the
    # first folder (a later --resume, or a reader of the run, would look there).
    run = _copy(interrupted_run, tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(photos, moved)
    resumed = run_cli_in_process("train", "--resume", run, "--data", moved, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming with data {moved} (the run started with {photos}; the classes are the same)" in resumed.stderr
    assert json.loads((run / "run.json").read_text())["data"] == str(moved)


def test_resuming_a_finished_run_whose_best_model_was_deleted_names_the_file(tmp_path, photos):
    # It said "cannot write the run folder: No such file or directory ... make room and continue
    # with --resume", which failed the same way every time.
    run = tmp_path / "run"
    finished = run_cli_in_process("train", TINY_SPEC, "--data", photos, "--epochs", "1", "--out", run, "--quiet")
    assert finished.returncode == 0, finished.stderr
    (run / "best.keras").unlink()
    resumed = run_cli_in_process("train", "--resume", run, "--quiet")
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr
    assert resumed.stderr.strip().splitlines()[-1] == (
        f"{run}/best.keras: no such model file; it held the run's best epoch (1), which the evaluation and "
        "metrics.json are of: restore it")


def test_resume_says_when_the_data_no_longer_holds_the_images_the_run_started_with(tmp_path, interrupted_run, photos):
    # A photo removed (or added) between the runs changed every later batch without a word.
    run = _copy(interrupted_run, tmp_path)
    fewer = tmp_path / "fewer"
    shutil.copytree(photos, fewer)
    sorted((fewer / "1").iterdir())[0].unlink()
    started = json.loads((run / "run.json").read_text())["images"]
    assert started == {"training": 30}
    resumed = run_cli_in_process("train", "--resume", run, "--data", fewer, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert ("note: the data now gives 29 training images; the run started with 30 training images: the batches "
            "from here differ from those the run would have seen") in resumed.stderr


def test_sigterm_while_build_writes_removes_its_temporary(tmp_path):
    # SIGTERM killed build/export/data pack at once: the output's temporary beside it stayed for
    # good. Now it ends a command as Ctrl-C does: `finally` blocks run, exit 128 + 15. Sent as soon
    # as the temporary appears (ResNet-50's 94 MB .keras takes a second or more to write).
    out = tmp_path / "out"
    out.mkdir()
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "build", str(REPO / "architectures" / "resnet50.yaml"),
                                "--out", str(out)], cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while process.poll() is None and not any(".tmp" in p.name for p in out.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.005)
    if process.poll() is not None:
        pytest.fail(f"build ended (rc {process.returncode}) before its temporary was seen: {process.stderr.read()}")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM
    assert process.stderr.read().strip().splitlines()[-1] == "terminated"
    assert list(out.iterdir()) == []


def test_a_record_pack_continued_after_sigkill_removes_the_temporary_it_left(tmp_path):
    photos = image_folder(tmp_path / "images", per_class=2)
    out = tmp_path / "records"
    assert invoke("data", "pack", photos, out, "--format", "tfrecord", "--shard-size", "2").exit_code == 0
    index = (out / "index.json").read_text()
    (out / "index.json").unlink()  # as a pack killed before its end leaves it, with a shard half-written:
    stale = out / ".records-00002-of-00003.tfrecord.x1y2z3.tmp.tfrecord"
    stale.write_bytes(b"\0" * 1000)
    assert invoke("data", "pack", photos, out, "--format", "tfrecord", "--shard-size", "2").exit_code == 0
    assert not stale.exists() and (out / "index.json").read_text() == index
