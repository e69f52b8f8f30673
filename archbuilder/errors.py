"""Errors that reach the user as a clean message and exit code 2, never a traceback."""

from __future__ import annotations

import os
from dataclasses import dataclass


INTERRUPTED_EXIT_CODE = 130  # Ctrl-C: the shell's convention, 128 + SIGINT


class OutputFailed(OSError):
    """Standard output could not be written (`> /dev/full`): raised by the command line's guarded
    sys.stdout (cli/__init__.py), so that no `except OSError` takes it for a file of its own."""


@dataclass(frozen=True)
class Remedy:
    """What to change to get past an error, in the Python API's words: `raise it with max_memory`,
    `continue with archbuilder.train(resume='runs/x')`. Errors below the command line say what to
    change this way, and the command line says the same with its flags (archbuilder/cli/remedies.py).

    `text` names each API argument in braces (`{max_memory}`), and `{call}` stands for a call of
    `archbuilder.CALL` with `values` (name, value pairs; those also give `{name}` its value)."""

    text: str
    values: tuple[tuple[str, object], ...] = ()
    call: str = ""

    def said(self, argument, call) -> str:
        """`text` with each `{name}` said by `argument(name, value)` (value `...` where none is
        given) and `{call}` by `call(function, values)`."""
        values = dict(self.values)
        remedy = self

        class Words(dict):
            def __missing__(self, name):
                return call(remedy.call, remedy.values) if name == "call" else argument(name, values.get(name, ...))

        return self.text.format_map(Words())

    def in_python(self) -> str:
        def call(function, values):
            return f"archbuilder.{function}({', '.join(_python_argument(n, v) for n, v in values)})"

        return self.said(_python_argument, call)


def _python_argument(name: str, value) -> str:
    return name if value is ... else f"{name}={value!r}"


def literal(value) -> str:
    """`repr(value)` for a Remedy's text, its braces kept as they are (not read as argument names)."""
    return repr(value).replace("{", "{{").replace("}", "}}")


class UserError(Exception):
    """Bad input from the user: a file, an option, a value. The CLI prints it and exits 2.

    `message` says what is wrong; `remedy`, where there is one, what to change (the Python API
    shows it as arguments, the command line as flags)."""

    exit_code = 2

    def __init__(self, message: str = "", remedy: Remedy | None = None):
        self.message, self.remedy = message, remedy
        super().__init__(message + remedy.in_python() if remedy else message)


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file and a 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, reported as `file:line:col: path: message (received: ...)`."""

    location: Location
    path: str
    message: str
    remedy: Remedy | None = None  # what to change, shown after the message (see Remedy)

    def __str__(self) -> str:
        return self.with_remedy(self.remedy.in_python() if self.remedy else "")

    def with_remedy(self, remedy_text: str) -> str:
        """The problem's line, the remedy said as `remedy_text` (the API's words, or the CLI's)."""
        # One problem, one line: control characters from the file (a key holding "\r" or "\x85",
        # which str.splitlines and terminals treat as line breaks or escapes) are shown escaped.
        location = Location(abbreviated(self.location.file), self.location.line, self.location.column)
        return f"{location}: {abbreviated(self.path) or '<document>'}: {self.message}{remedy_text}".translate(_ESCAPES)


def abbreviated(text: str, limit: int = 100) -> str:
    """`text`, or its start and length where it is longer than `limit`: a 120 KB key or `--set`
    is named in a message, never echoed whole (a message is read by a person)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... ({len(text):,} characters)"


_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029",
}


def shown(path) -> str:
    """A path as the user should see it: bytes that are not UTF-8 (which reach Python as
    surrogates, PEP 383) shown as `\\xff` escapes, so printing it never fails; and control
    characters and line separators escaped as in a problem's line (`_ESCAPES`: `\\n`, `\\x1b`), so
    that a file named with a newline or a terminal escape leaves a message on its one line and
    cannot drive the terminal. A lone surrogate that no bytes give (`"\\ud800"` from Python code)
    is shown as `\\ud800`."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        raw = os.fspath(path).encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").translate(_ESCAPES)


def quoted_list(names) -> str:
    """"'a'", "'a' and 'b'", "'a', 'b' and 'c'": names in a sentence."""
    quoted = [repr(str(name)) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


class SpecError(UserError):
    """All problems found in a spec, reported together."""

    def __init__(self, problems: list[Problem], *, in_order: bool = False):
        """Problems are listed by file and position, unless `in_order` keeps the given order."""
        self.problems = list(problems) if in_order else sorted(
            problems, key=lambda p: (p.location.file, p.location.line, p.location.column, p.path)
        )
        super().__init__("\n".join(str(p) for p in self.problems))


# What json.loads raises for text it cannot read: bad syntax or bytes (JSONDecodeError and
# UnicodeDecodeError are ValueErrors), a number of more than Python's 4,300 digits (ValueError),
# nesting deeper than the frame limit (RecursionError). A file a user can edit may hold any of them.
NOT_JSON = (ValueError, RecursionError)


def json_reason(error: BaseException) -> str:
    """Why json.loads refused a text (one of NOT_JSON), in the user's words."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if "integer string conversion" in str(error):
        return "a number of more than 4,300 digits"
    return str(error)
