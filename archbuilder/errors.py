"""Errors that reach the user as a clean message and exit code 2, never a traceback."""

from __future__ import annotations

import os
from dataclasses import dataclass


INTERRUPTED_EXIT_CODE = 130  # Ctrl-C: the shell's convention, 128 + SIGINT


class UserError(Exception):
    """Bad input from the user: a file, an option, a value. The CLI prints it and exits 2."""

    exit_code = 2


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

    def __str__(self) -> str:
        # One problem, one line: control characters from the file (a key holding "\r" or "\x85",
        # which str.splitlines and terminals treat as line breaks or escapes) are shown escaped.
        return f"{self.location}: {self.path or '<document>'}: {self.message}".translate(_ESCAPES)


_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))} | {
    ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029",
}


def shown(path) -> str:
    """A path as the user should see it: bytes that are not UTF-8 (which reach Python as
    surrogates, PEP 383) shown as `\\xff` escapes, so printing it never fails."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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
