"""`plot SPEC`: draw the network as a PNG or SVG, at the level of blocks or of layers."""

from __future__ import annotations

from pathlib import Path

import click

from archbuilder.errors import shown
from archbuilder.cli.options import PathOption, max_memory_option, overrides_option, spec_argument
from archbuilder import api


@click.command("plot")
@spec_argument
@overrides_option
@max_memory_option
@click.option("--out", "out", type=PathOption(dir_okay=False, path_type=Path), default=None,
              help="Diagram file, .png or .svg.  [default: build/<name>-<level>.png]")
@click.option("--level", type=click.Choice(["blocks", "layers"]), default="blocks", show_default=True,
              help="blocks: one box per block with its shortcut; layers: every Keras layer with shapes.")
def command(spec: str, overrides: tuple[str, ...], max_memory: int | None, out: Path | None, level: str) -> None:
    """Draw SPEC with Graphviz: one box per block, or Keras's plot_model of every layer."""
    click.echo(f"Saved {shown(api.plot(spec, out, level, overrides, max_memory))}")
