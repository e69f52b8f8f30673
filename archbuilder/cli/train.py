"""`train SPEC --data ...`: train a spec on images, writing a resumable run folder."""

from __future__ import annotations

import click

from archbuilder.spec.training import MAX_COUNT
from archbuilder.cli.options import FRACTION, NumberRange, PathOption, classes_option, max_memory_option, overrides_option
from archbuilder.errors import UserError
from archbuilder.training.distribute import DEFAULT_WORKER_TIMEOUT


@click.command("train")
@click.argument("spec", required=False, type=PathOption(dir_okay=False, path_type=str))
@click.option("--data", help="Training images: a folder with one subfolder per class, or a SIGNS .h5 file.")
@click.option("--test", help="Test images (folder or .h5). Default: test_set_* of an .h5 --data, if any.")
@click.option("--holdout-photographers", type=FRACTION,
              metavar="FRACTION",
              help="Hold whole photographers of a sign-language-digits folder out as the test set "
              "(e.g. 0.15; seeded by training.seed).")
@classes_option("Use only these classes of the data, e.g. 0,1,2,3,4,5.")
@click.option("--epochs", type=click.IntRange(1, MAX_COUNT), help="Shorthand for --set training.epochs=N.")
@click.option("--batch-size", type=click.IntRange(1, MAX_COUNT), help="Shorthand for --set training.batch_size=N.")
@overrides_option
@click.option("--out", metavar="RUN_DIR", help="Run folder (default: runs/<name>-<time>). Must not hold files.")
@click.option("--resume", metavar="RUN_DIR", help="Continue a run from its last finished epoch.")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave out image files that cannot be read or decoded, with a warning naming each "
              "(default: stop, naming them).")
@click.option("--cache", type=click.Choice(["auto", "memory", "disk", "none"]),
              help="Where decoded images of a folder live: memory (decoded once, held), disk (decoded once "
              "into a cache folder, streamed from it), none (streamed from the files, decoded every epoch), "
              "auto (memory when holding them, counted as 4 copies, fits in a quarter of this machine's memory "
              "and under the limit, else none; the default). Every choice gives the same batches.")
@click.option("--quiet", is_flag=True, help="No progress bar (with stdout not a terminal: no per-epoch lines).")
@max_memory_option
@click.option("--distribute", type=click.Choice(["none", "mirrored", "multi-worker", "auto"]),
              help="Where to train (default: the spec's training.distribute, auto): mirrored = this "
              "machine's GPUs (or --devices logical CPUs); multi-worker = the machines TF_CONFIG names.")
@click.option("--devices", type=click.IntRange(1, MAX_COUNT), metavar="N",
              help="Replicas per worker: the first N GPUs of this machine (mirrored: without GPUs, the CPU "
              "split into N logical devices; multi-worker without GPUs: one per worker, more is refused). "
              "--resume keeps the run's own.")
@click.option("--worker-timeout", type=NumberRange("of at least 1", min=1), default=DEFAULT_WORKER_TIMEOUT, show_default=True, metavar="SECONDS",
              help="multi-worker: a worker that makes no progress for this long (a peer never came, a "
              "collective hangs) is ended by its watchdog; rerun with --resume.")
@click.option("--h5", "save_h5", is_flag=True, help="Also write the best model as RUN_DIR/best.h5 (Keras's HDF5 format).")
def command(spec, data, test, holdout_photographers, classes, epochs, batch_size, overrides, out, resume,
            skip_bad_images, cache, quiet, max_memory, distribute, devices, worker_timeout, save_h5):
    """Train SPEC on labelled images; write the best model, a checkpoint per epoch, curves and metrics.

    \b
    python cli.py train architectures/resnet50.yaml --data images/ --holdout-photographers 0.15
    python cli.py train --resume runs/ResNet50-20260101-120000

    Ctrl-C stops after the current batch, keeping the last finished epoch (exit code 130; SIGTERM
    too, exit code 143; on any worker of a multi-worker run, every worker stops);
    --resume continues from there, even after the process was killed.
    """
    from archbuilder import api
    from archbuilder.cli.remedies import on_command_line
    from archbuilder.errors import INTERRUPTED_EXIT_CODE

    if resume:
        given = [name for name, value in (("SPEC", spec), ("--epochs", epochs), ("--batch-size", batch_size),
                 ("--set", overrides), ("--out", out), ("--classes", classes),
                 ("--holdout-photographers", holdout_photographers)) if value]
        if given:
            raise UserError(f"--resume continues a run with its own settings; drop {', '.join(given)}")
    elif not spec:
        raise UserError("train needs a SPEC file (or --resume RUN_DIR)")
    elif not data:
        raise UserError("train needs --data: a folder with one subfolder per class, or a SIGNS .h5 file")
    result = api.train(
        spec, data, test, epochs, out, overrides, resume=resume, batch_size=batch_size,
        holdout_photographers=holdout_photographers, classes=classes, skip_bad_images=skip_bad_images, cache=cache,
        max_memory=max_memory, distribute=distribute, devices=devices, worker_timeout=worker_timeout,
        save_h5=save_h5, verbose=0 if quiet else None, remedy_words=on_command_line,
    )
    if result.writer:
        click.echo(f"run folder: {result.path}")
    else:
        click.echo("stopped; the chief keeps the run folder" if result.interrupted else "done; the chief wrote the run folder")
    if result.interrupted:  # 128 + the signal, the shell's convention: 130 for Ctrl-C, 143 for SIGTERM
        raise SystemExit(128 + result.stop_signal if result.stop_signal else INTERRUPTED_EXIT_CODE)
