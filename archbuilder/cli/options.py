"""Options shared by several commands."""

from __future__ import annotations

import click

from archbuilder.errors import UserError

overrides_option = click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE",
    help="Override a spec field, e.g. --set input.shape=[224,224,3] or --set stages.2.repeats=23. "
    "VALUE is YAML. Repeatable; validated like the file.",
)



class PathOption(click.Path):
    """click.Path that refuses an empty path, which pathlib reads as "." (the working folder):
    `--calibration ""` calibrated on whatever images lay under it, `build --out ""` wrote there."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            self.fail("the path is empty; name a file or folder ('.' for the working folder)", param, ctx)
        return super().convert(value, param, ctx)


spec_argument = click.argument("spec", type=PathOption(dir_okay=True, path_type=str))


class NumberRange(click.FloatRange):
    """click's FloatRange without "nan": no comparison holds for it, so FloatRange lets it through,
    and the API then refused it in its own words (`holdout_photographers:`, `worker_timeout:`).
    `words` says the range (e.g. "between 0 and 1")."""

    def __init__(self, words: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.words = words

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if number != number:  # NaN
            self.fail(f"{value!r} is not a number {self.words}.", param, ctx)
        return number


FRACTION = NumberRange("between 0 and 1", 0, 1, min_open=True, max_open=True)


def _parse_memory(_ctx, _param, value: str | None) -> int | None:
    from archbuilder.plan.size_guard import parse_size

    return None if value is None else parse_size(value)


max_memory_option = click.option(
    "--max-memory", "max_memory", metavar="SIZE", callback=_parse_memory,
    help="Refuse specs whose estimated memory exceeds SIZE (e.g. 32GiB). "
    "Default: $ARCHBUILDER_MAX_MEMORY or 16GiB.",
)


def model_spec_options(function):
    """--spec/--set/--strict/--max-memory: read a Keras 2 .h5 MODEL by layer name into the spec's model."""
    function = click.option("--strict", is_flag=True,
                            help="With an .h5 MODEL: any missing, extra or misshapen layer is an error.")(function)
    function = overrides_option(function)
    function = max_memory_option(function)
    return click.option("--spec", "spec", type=PathOption(path_type=str), default=None,
                        help="The architecture of a Keras 2 .h5 MODEL (whole model or weights).")(function)


def _parse_classes(_ctx, param, value: str | None) -> tuple[str, ...] | None:
    """'0, 1,2' -> ('0', '1', '2'); an empty list is refused rather than read as "all classes"."""
    if value is None:
        return None
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise UserError(f"--classes names no class (received: {value!r}); leave the option out to use every class")
    return names


def classes_option(help_text: str):
    """--classes A,B,...: the one parser of class lists."""
    return click.option("--classes", metavar="A,B,...", callback=_parse_classes, help=help_text)
