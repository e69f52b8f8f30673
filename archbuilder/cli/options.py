"""Options shared by several commands."""

from __future__ import annotations

import click

overrides_option = click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE",
    help="Override a spec field, e.g. --set input.shape=[224,224,3] or --set stages.2.repeats=23. "
    "VALUE is YAML. Repeatable; validated like the file.",
)

spec_argument = click.argument("spec", type=click.Path(dir_okay=True, path_type=str))


def _parse_memory(_ctx, _param, value: str | None) -> int | None:
    from archbuilder.size_guard import parse_size

    return None if value is None else parse_size(value)


max_memory_option = click.option(
    "--max-memory", "max_memory", metavar="SIZE", callback=_parse_memory,
    help="Refuse specs whose estimated memory exceeds SIZE (e.g. 32GiB). "
    "Default: $ARCHBUILDER_MAX_MEMORY or 16GiB.",
)
