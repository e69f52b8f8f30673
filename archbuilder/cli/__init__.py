"""The `archbuilder` command line: a click group whose commands live one per module.

Commands import TensorFlow only inside their bodies, so `validate`, `info` and `schema` stay
instant. Every `UserError` becomes its message on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

import click

from archbuilder.errors import INTERRUPTED_EXIT_CODE, OutputFailed, UserError
from archbuilder.runtime import configure_tensorflow_environment

# One module per command under archbuilder/cli/; each defines a click command named `command`.
COMMAND_MODULES = ("build", "validate", "info", "diff", "schema", "plot", "train", "evaluate", "predict", "export", "data")


class _Group(click.Group):
    """Imports a command's module only when that command runs (or --help lists them all):
    `validate` of many files is dominated by start-up, and most commands' modules are not needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in COMMAND_MODULES:
            self.add_command(importlib.import_module(f"archbuilder.cli.{name}").command, name)
        return self.commands.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as error:  # "did you mean" needs every name
            raise click.exceptions.NoSuchCommand(error.command_name, possibilities=COMMAND_MODULES, ctx=ctx) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            from archbuilder.cli.remedies import error_text

            click.echo(error_text(error), err=True)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:  # Ctrl-C in any command exits as `train` does
            click.echo("\ninterrupted", err=True)
            ctx.exit(INTERRUPTED_EXIT_CODE)


def _terminated(signum, frame) -> None:
    """SIGTERM (what a job scheduler sends, `kill`) ends a command as Ctrl-C does: its `finally`
    blocks run, so a half-written output's temporary is removed (it was left behind), and the exit
    code is the shell's 128 + 15."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it at once
    print("\nterminated", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


class _Stdout:
    """sys.stdout whose failed writes are told apart from every other OSError (a file the command
    reads, say, or train's run folder): they raise OutputFailed, which the command line says in one
    line; a closed pipe (`| head -1`, errno EPIPE) click ends quietly, exit 1, as before."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)

    @staticmethod
    def _guarded(call, *args):
        try:
            return call(*args)
        except OSError as error:
            raise OutputFailed(error.errno, error.strerror) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="archbuilder")
def main() -> None:
    """Define networks in YAML, validate them, build them into Keras models, train them."""
    configure_tensorflow_environment()


def run() -> None:
    """Entry point for `python cli.py` (the group's callback sets TensorFlow's environment)."""
    from archbuilder.native_lines import enable

    enable()  # this process's descriptor 2 is ours: native false alarms may be filtered from it (native_lines.py)
    if sys.stdout is not None:  # None where it was closed (`>&-`): print then writes nowhere, as before
        sys.stdout = _Stdout(sys.stdout)
    signal.signal(signal.SIGTERM, _terminated)  # train's own handler takes over while it trains
    try:
        code = main(standalone_mode=True)
    except OutputFailed as error:  # `info > /dev/full`, a full disk under a redirect; --help too
        sys.stdout = open(os.devnull, "w")  # nothing more to write there, at exit either
        print(f"cannot write the output to standard output ({error.strerror or error})", file=sys.stderr, flush=True)
        code = 2
    sys.exit(code)
