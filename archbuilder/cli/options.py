"""Options shared by several commands."""

from __future__ import annotations

import click

overrides_option = click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE",
    help="Override a spec field, e.g. --set input.shape=[224,224,3] or --set stages.2.repeats=23. "
    "VALUE is YAML. Repeatable; validated like the file.",
)

spec_argument = click.argument("spec", type=click.Path(dir_okay=True, path_type=str))
