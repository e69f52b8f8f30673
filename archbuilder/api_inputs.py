"""The Python API's arguments, checked before any real work: what a caller passes is refused with
archbuilder's own errors (never TypeError, AttributeError or RecursionError), and a dict is held to
the bounds a spec file is (spec/source.py: 1 MiB, 20,000 values, 32 levels) before it is written
out as YAML, so a dict of a million values or a 50 MB name is refused as fast as such a file.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from typing import Any

from archbuilder.errors import Location, Problem, Remedy, SpecError, UserError, shown
from archbuilder.spec.source import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, format_path

DICT_NAME = "<dict>"  # where problems of a dict spec are located (plan/validate.load_checked_data)
# Python refuses to turn an int of more than 4300 digits into text (sys.int_info), which writing
# the dict as YAML does; any number in a spec is far smaller, and the schema says so for smaller ones.
MAX_INT_DIGITS = 4000


def path_argument(argument: str, value: Any) -> None:
    """`value` is a path (str or os.PathLike) that a file could have."""
    if not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{argument}: expected a path (received: {type(value).__name__})")
    if "\0" in os.fsdecode(value):  # no file name holds one; the system calls raise ValueError
        raise UserError(f"{argument}: '{shown(value)}' holds a NUL character, which no file name can")
    if not os.fspath(value):  # Path("") is Path("."): the working folder, read as the data or photos
        raise UserError("", Remedy("{" + argument + "}: the path is empty; name a file or folder ('.' for the working folder)"))


def spec_argument(spec: Any) -> str | os.PathLike | dict:
    """A path (str, bytes, os.PathLike) or a plain dict, checked; anything else is a UserError."""
    if isinstance(spec, Mapping):
        check_plain_data(spec)
        return dict(spec)
    if isinstance(spec, bytes):
        spec = os.fsdecode(spec)
    if isinstance(spec, (str, os.PathLike)):
        path_argument("spec", spec)
        return spec
    raise UserError(f"spec: expected a spec file's path or a dict holding a spec (received: {_kind(spec)})")


def overrides_argument(overrides: Any) -> tuple[str, ...]:
    """`--set`-style overrides: an iterable of "PATH=VALUE" strings. One string is one override
    (never read character by character)."""
    if overrides is None:
        return ()
    if isinstance(overrides, str):
        return (overrides,)
    if isinstance(overrides, (bytes, Mapping)) or not hasattr(overrides, "__iter__"):
        raise UserError(f"overrides: expected a list of 'PATH=VALUE' strings (received: {_kind(overrides)})")
    result = tuple(overrides)
    for index, item in enumerate(result):
        if not isinstance(item, str):
            raise UserError(f"overrides[{index}]: expected a 'PATH=VALUE' string, e.g. 'classes=10' "
                            f"(received: {_kind(item)})")
    return result


def max_memory_argument(max_memory: Any) -> int | None:
    """Bytes (a positive int), a size such as "32GiB", or None for the default limit."""
    if max_memory is None:
        return None
    if isinstance(max_memory, str):
        from archbuilder.plan.size_guard import parse_size

        return parse_size(max_memory)
    if isinstance(max_memory, bool) or not isinstance(max_memory, numbers.Integral) or max_memory <= 0:
        raise UserError(f"max_memory: expected a positive number of bytes or a size such as '32GiB' "
                        f"(received: {_kind(max_memory)} {max_memory!r:.40})")
    max_memory = int(max_memory)  # NumPy's integers too, as the counts take them
    from archbuilder.plan.size_guard import MAX_SIZE

    if max_memory > MAX_SIZE:  # as parse_size refuses "1e400": a typo, not a machine
        raise UserError(f"max_memory: a number of {len(str(max_memory))} digits is larger than any machine's "
                        "memory (more than 2**80 bytes, 1 YiB); use e.g. '64GiB'")
    return max_memory


def choice_argument(name: str, value: Any, choices: tuple) -> Any:
    """`value` if it is one of `choices` (None passes: the default)."""
    if value is not None and (isinstance(value, bool) or value not in choices):
        raise UserError(f"{name}: expected one of {', '.join(map(repr, choices))} (received: {_kind(value)} {value!r:.40})")
    return value


def flag_argument(name: str, value: Any) -> bool:
    """True or False itself: a string such as "no" is truthy, and would mean yes."""
    if not isinstance(value, bool):
        raise UserError(f"{name}: expected True or False (received: {_kind(value)} {value!r:.40})")
    return value


def count_argument(name: str, value: Any) -> int:
    """A whole number from 1 to MAX_COUNT (a batch size, an image size; NumPy's integers too)."""
    from archbuilder.spec.training import MAX_COUNT

    return whole_number_argument(name, value, 1, MAX_COUNT)


def whole_number_argument(name: str, value: Any, low: int, high: int | None = None) -> int:
    """A whole number from `low` up to `high` (both inclusive; NumPy's integers too), as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            low <= value and (high is None or value <= high)):
        bounds = f"{low} or more" if high is None else f"from {low} to {high}"
        raise UserError(f"{name}: expected a whole number, {bounds} (received: {_kind(value)} {value!r:.40})")
    return int(value)


def number_argument(name: str, value: Any, low: float, high: float | None = None) -> float | None:
    """A real number from `low` (inclusive) up to `high` (exclusive), or None for the default (NaN
    is refused: no comparison holds for it)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            low <= value and (high is None or value < high)):
        bounds = f"at least {low:g}" if high is None else f"from {low:g} up to {high:g}"
        raise UserError(f"{name}: expected a number {bounds} (received: {_kind(value)} {value!r:.40})")
    return value


def check_plain_data(data: Mapping) -> None:
    """Refuse a dict deeper, larger or with more values than a spec file may be; without recursion,
    so a dict nested 100,000 deep or one that contains itself gets the file's own message."""
    count, size = 0, 0
    stack: list[tuple[Any, tuple, int]] = [(data, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:  # a dict containing itself is infinitely deep: it ends here too
            _refuse(path, f"nesting is too deep (limit {MAX_DEPTH})")
        if isinstance(value, (Mapping, list, tuple)):
            if count + len(value) > MAX_VALUES:  # before copying a million items
                _refuse(path, f"document has more than {MAX_VALUES} values; refusing to parse it")
            items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
        else:
            size += _text_size(value, path)
            items = []
        for key, item in items:
            size += _text_size(key, path) + 2  # "key: " or "- ", roughly; only the order of size matters
            stack.append((item, path + (key,), depth + 1))
        if size > MAX_FILE_BYTES:
            _refuse(path, f"document is larger than {MAX_FILE_BYTES} bytes written as YAML; refusing to parse it")


def _text_size(value: Any, path: tuple) -> int:
    if type(value) is str:
        return len(value)
    if type(value) is int:
        digits = value.bit_length() * 0.30103 + 1  # log10(2): digits of the number, within one
        if digits > MAX_INT_DIGITS:
            _refuse(path, f"a number of more than {MAX_INT_DIGITS} digits is beyond any real size")
        return int(digits) + 1
    if value is None or type(value) in (bool, float):
        return 8
    # NumPy's numbers, enums, subclasses, sets, objects: YAML would refuse them, not saying where.
    convert = next((name for kind, name in ((bool, "bool"), (numbers.Integral, "int"), (numbers.Real, "float"),
                                            (str, "str")) if isinstance(value, kind)), None)
    _refuse(path, f"not plain data: a {type(value).__module__}.{type(value).__qualname__} (a spec holds text, "
                  "numbers, true/false, null, lists and dicts)" + (f"; convert it with {convert}()" if convert else ""))
    return 0


def _refuse(path: tuple, message: str) -> None:
    shown_path = format_path(path)[:200]  # a path of keys as long as the limits allow stays readable
    raise SpecError([Problem(Location(DICT_NAME, 1, 1), shown_path, message)])


def _kind(value: Any) -> str:
    return type(value).__name__
