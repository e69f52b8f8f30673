"""`data pack FOLDER OUT.h5`: a class folder as the notebook's SIGNS HDF5 layout; `--format tfrecord`:
as sharded record files (data/records.py)."""

from __future__ import annotations

import click

from archbuilder.errors import shown
from archbuilder.cli.options import FRACTION, PathOption, classes_option
from archbuilder.spec.training import MAX_COUNT, MAX_SEED


@click.group("data")
def command() -> None:
    """Dataset utilities."""


@command.command("pack")
@click.argument("folder", type=PathOption(path_type=str))
@click.argument("out", type=PathOption(path_type=str))
@click.option("--format", "kind", type=click.Choice(["h5", "tfrecord"]), default="h5", show_default=True,
              help="h5: the SIGNS layout, decoded at --size; tfrecord: a folder of TFRecord shards of the "
              "encoded images and their labels, with an index, read by train, evaluate and --test as the "
              "class folder is (streamed; any model size).")
@click.option("--shard-size", type=click.IntRange(1, MAX_COUNT), default=1024, show_default=True,
              help="Images per TFRecord shard (--format tfrecord).")
@click.option("--size", type=click.IntRange(1, MAX_COUNT), default=64, show_default=True, help="Height and width of the stored images.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True)
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True,
              help="Store all images as train_set_* or as test_set_*.")
@click.option("--holdout-photographers", type=FRACTION, metavar="FRACTION",
              help="Store whole photographers as test_set_* and the rest as train_set_*.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed of --holdout-photographers.")
@classes_option("Only these classes, e.g. 0,1,2,3,4,5.")
def pack(folder, out, kind, shard_size, size, channels, split, holdout_photographers, seed, classes):
    """Write FOLDER (one subfolder per class) to OUT.h5 in the SIGNS layout the notebook reads:
    train_set_x (N, SIZE, SIZE, 3) uint8, train_set_y (N,) int64, list_classes (K,).
    With --format tfrecord, to the folder OUT as TFRecord shards; a pack cut short continues
    where it stopped when the same command runs again."""
    from archbuilder import api

    if kind == "tfrecord":
        index = api.pack_records(folder, out, shard_size=shard_size, holdout_photographers=holdout_photographers,
                                 classes=classes)
        click.echo(f"wrote {shown(out)}: {index['images']} images of {len(index['class_names'])} classes in "
                   f"{len(index['shards'])} shards")
        return
    packed = api.pack_data(folder, out, size=size, channels=int(channels), split=split,
                           holdout_photographers=holdout_photographers, seed=seed, classes=classes)
    described = ", ".join(f"{name} {shape}" for name, shape in packed["shapes"].items())
    click.echo(f"wrote {shown(out)}: {described}, {len(packed['class_names'])} classes")
