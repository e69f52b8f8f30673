"""The command line's words for what an error says to change: the Python API's arguments
(archbuilder.errors.Remedy) said as this command line's flags.

    API:  ...; raise it with max_memory or ARCHBUILDER_MAX_MEMORY
    CLI:  ...; raise it with --max-memory or ARCHBUILDER_MAX_MEMORY
    API:  continue with: archbuilder.train(resume='runs/x')
    CLI:  continue with: python cli.py train --resume runs/x
"""

from __future__ import annotations

from archbuilder.errors import Problem, Remedy, SpecError, UserError

# API arguments whose flag is not --NAME-WITH-DASHES.
FLAGS = {"overrides": "--set"}


def flag(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def _argument(name: str, value) -> str:
    if value is ... or value is True:
        return flag(name)
    if isinstance(value, (list, tuple)):
        return " ".join(f"{flag(name)} {item}" for item in value)
    return f"{flag(name)} {value}"


def _call(command: str, values) -> str:
    return " ".join(["python cli.py", command, *(_argument(name, value) for name, value in values)])


def on_command_line(remedy: Remedy | None) -> str:
    return remedy.said(_argument, _call) if remedy is not None else ""


def problem_text(problem: Problem) -> str:
    return problem.with_remedy(on_command_line(problem.remedy))


def error_text(error: UserError) -> str:
    """What the command line prints for `error`: its message, with any remedy said as flags."""
    if isinstance(error, SpecError):
        return "\n".join(problem_text(problem) for problem in error.problems)
    if error.remedy is None:
        return str(error)
    return error.message + on_command_line(error.remedy)

