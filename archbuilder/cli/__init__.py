"""The `archbuilder` command line: a click group whose commands live one per module.

Commands import TensorFlow only inside their bodies, so `validate`, `info` and `schema` stay
instant. Every `UserError` becomes its message on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import click

from archbuilder.errors import INTERRUPTED_EXIT_CODE, UserError
from archbuilder.runtime import configure_tensorflow_environment

# One module per command under archbuilder/cli/; each defines a click command named `command`.
COMMAND_MODULES = ("build", "validate", "info", "diff", "schema", "plot", "train", "evaluate", "predict", "export", "data")


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            click.echo(str(error), err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:  # Ctrl-C in any command exits as `train` does
            click.echo("\ninterrupted", err=True)
            ctx.exit(INTERRUPTED_EXIT_CODE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archbuilder")
def main() -> None:
    """Define networks in YAML, validate them, build them into Keras models, train them."""
    configure_tensorflow_environment()


for _name in COMMAND_MODULES:
    main.add_command(importlib.import_module(f"archbuilder.cli.{_name}").command)


def run() -> None:
    """Entry point for `python cli.py` (the group's callback sets TensorFlow's environment)."""
    sys.exit(main(standalone_mode=True))
