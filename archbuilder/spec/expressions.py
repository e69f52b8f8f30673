"""Safe arithmetic expressions for sizes and conditions in specs: `filters * 4`,
`max(1, int(in_channels * se_ratio))`, `stride != 1 or in_channels != filters * 4`.

A small closed interpreter over Python's `ast`: the text is parsed (never compiled or run) and
only the node types below are walked; any other node is refused. Names come only from the
namespace given; the functions are a fixed table. No attribute access, no calls of values, no
comprehensions or lambdas, so nothing in a spec can reach Python objects. Numbers are bounded
(`MAX_MAGNITUDE`), so `10 ** 10 ** 10` or `2 ** 4000` is an error in microseconds, not a hang.
Imports no TensorFlow.
"""

from __future__ import annotations

import ast
import math
import operator
from functools import lru_cache
from typing import Any, Mapping

MAX_LENGTH = 500  # characters of one expression; the longest shipped one has ~100
MAX_NODES = 200  # AST nodes of one expression
MAX_DEPTH = 30  # nesting of one expression
MAX_MAGNITUDE = 2**53  # beyond any real size, and the largest integer a float holds exactly


class ExpressionError(ValueError):
    """An expression that cannot be parsed or evaluated; the message says why."""


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The MobileNet/EfficientNet channel rule: round to a multiple of `divisor`, never down by
    more than 10%. make_divisible(32 * 0.35, 8) == 16, make_divisible(24 * 1.4, 8) == 32."""
    if divisor <= 0:
        raise ExpressionError(f"make_divisible needs a divisor ≥ 1 (received {divisor})")
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def _int(value: Any) -> int:
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError(f"int() of {value}")
    return int(value)


def _round(value: Any, digits: Any = None) -> Any:
    return round(value) if digits is None else round(value, digits)


FUNCTIONS = {
    "min": min, "max": max, "int": _int, "float": float, "round": _round,
    "ceil": math.ceil, "floor": math.floor, "abs": abs, "make_divisible": make_divisible,
}
_ARITY = {"min": (2, 20), "max": (2, 20), "int": (1, 1), "float": (1, 1), "round": (1, 2), "ceil": (1, 1),
          "floor": (1, 1), "abs": (1, 1), "make_divisible": (1, 3)}

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


@lru_cache(maxsize=4096)
def parse(text: str) -> ast.expr:
    """The checked syntax tree of `text`; raises ExpressionError for anything outside the grammar."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError("empty expression")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as error:
        raise ExpressionError(f"syntax error in expression '{text}' ({error.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError(f"expression '{text}' is nested too deeply") from None
    _check(tree, text)
    return tree


@lru_cache(maxsize=4096)
def names(text: str) -> frozenset[str]:
    """The free names an expression uses (function names excluded)."""
    tree = parse(text)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return frozenset(node.id for node in ast.walk(tree)
                     if isinstance(node, ast.Name) and id(node) not in called and node.id not in _BOOLEANS)


def evaluate(text: str, namespace: Mapping[str, Any]) -> Any:
    """The value of `text` with the names in `namespace`; raises ExpressionError."""
    function = _compiled(text)
    try:
        return function(namespace)
    except ExpressionError:
        raise
    except ZeroDivisionError:
        raise ExpressionError("division by zero") from None
    except (OverflowError, MemoryError):
        raise ExpressionError(f"a value exceeds {MAX_MAGNITUDE:,}") from None
    except (TypeError, ValueError, IndexError, KeyError) as error:
        raise ExpressionError(str(error)) from None


@lru_cache(maxsize=4096)
def _compiled(text: str):
    """The checked tree as nested Python closures (built once per text): evaluating a closure
    tree is ~5x faster than walking the tree, and expansion evaluates the same few texts often."""
    return _Compiler().build(parse(text))


def evaluate_explained(text: str, namespace: Mapping[str, Any]) -> Any:
    """`evaluate`, with an error message that quotes the expression and the values it used:
    `'filters // groups': division by zero (with filters=64, groups=0)`."""
    try:
        return evaluate(text, namespace)
    except ExpressionError as error:
        raise ExpressionError(f"'{text}': {error}{used_values(text, namespace)}") from None


def used_values(text: str, namespace: Mapping[str, Any]) -> str:
    """` (with a=1, b=2)`: the values of the names `text` uses, for error messages."""
    try:
        used = sorted(n for n in names(text) if n in namespace)
    except ExpressionError:
        return ""
    return f" (with {', '.join(f'{n}={_short(namespace[n])}' for n in used)})" if used else ""


def _check(tree: ast.AST, text: str) -> None:
    count = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES or depth > MAX_DEPTH:
            raise ExpressionError(f"expression '{text}' is too complex (more than {MAX_NODES} parts or {MAX_DEPTH} levels)")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise ExpressionError(f"unknown function '{called}'; functions: {', '.join(sorted(FUNCTIONS))}")
            if node.keywords and node.func.id != "make_divisible":
                raise ExpressionError(f"{node.func.id}() takes no keyword arguments")
            if any(k.arg not in ("divisor", "min_value") for k in node.keywords):
                raise ExpressionError("make_divisible's keyword arguments are divisor and min_value")
            low, high = _ARITY[node.func.id]
            given = len(node.args) + len(node.keywords)
            if not low <= given <= high or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"{node.func.id}() takes {low}" + (f" to {high}" if high != low else "") +
                                      f" arguments, got {given}")
            children = [*node.args, *(k.value for k in node.keywords)]
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str)) or isinstance(node.value, complex):
                raise ExpressionError(f"constant {node.value!r} is not allowed")
            children = []
        elif isinstance(node, ast.Name):
            children = []
        elif isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript)):
            if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
                raise ExpressionError(f"operator '{ast.unparse(node)}' is not allowed")
            if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                raise ExpressionError(f"operator in '{ast.unparse(node)}' is not allowed")
            if isinstance(node, ast.Compare) and any(type(op) not in _COMPARE for op in node.ops):
                raise ExpressionError("only the comparisons == != < <= > >= are allowed")
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
                raise ExpressionError("slices are not allowed; index one item, e.g. widths[2]")
            children = list(ast.iter_child_nodes(node))
            children = [c for c in children if not isinstance(c, (ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context))]
        else:
            raise ExpressionError(f"'{ast.unparse(node)}' is not allowed in an expression "
                                  "(numbers, names, + - * / // % **, comparisons, and/or/not, if/else, [index] and "
                                  f"the functions {', '.join(sorted(FUNCTIONS))})")
        stack.extend((child, depth + 1) for child in children)


def _bounded(value: Any) -> Any:
    if isinstance(value, (bool, str, list, tuple)):
        return value
    if isinstance(value, float) and math.isnan(value):
        raise ExpressionError("the result is not a number (nan)")
    if abs(value) > MAX_MAGNITUDE:
        raise ExpressionError(f"a value exceeds {MAX_MAGNITUDE:,} ({_short(value)})")
    return value


def _number(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple)):
        raise ExpressionError(f"{what} needs numbers (received {value!r})")
    return value


_BOOLEANS = {"True": True, "true": True, "False": False, "false": False}


class _Compiler:
    """Turns a checked tree into closures `f(namespace) -> value`; every result is bounded."""

    def build(self, node: ast.expr):
        return getattr(self, "_" + type(node).__name__)(node)

    def _Constant(self, node: ast.Constant):
        value = _bounded(node.value)
        return lambda ns: value

    def _Name(self, node: ast.Name):
        name = node.id
        if name in _BOOLEANS:
            value = _BOOLEANS[name]
            return lambda ns: value

        def lookup(ns):
            try:
                return ns[name]
            except KeyError:
                import difflib

                known = sorted(k for k in ns if not k.startswith("_"))
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise ExpressionError(f"undefined name '{name}'; {hint}names: {', '.join(known)}") from None

        return lookup

    def _BinOp(self, node: ast.BinOp):
        left, right = self.build(node.left), self.build(node.right)
        op, symbol, power = _BINARY[type(node.op)], _SYMBOL[type(node.op)], isinstance(node.op, ast.Pow)

        def binary(ns):
            a, b = _number(left(ns), f"'{symbol}'"), _number(right(ns), f"'{symbol}'")
            if power:
                # Bound before computing: 2 ** 10 ** 10 must not try to build the number.
                if abs(a) > 1 and abs(b) * math.log2(abs(a)) > 54:
                    raise ExpressionError(f"a value exceeds {MAX_MAGNITUDE:,} ({_short(a)} ** {_short(b)})")
                if a == 0 and b < 0:
                    raise ZeroDivisionError
            result = op(a, b)
            if isinstance(result, complex):
                raise ExpressionError(f"{_short(a)} ** {_short(b)} is not a real number")
            return _bounded(result)

        return binary

    def _UnaryOp(self, node: ast.UnaryOp):
        operand = self.build(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda ns: not operand(ns)
        if isinstance(node.op, ast.USub):
            return lambda ns: -_number(operand(ns), "unary minus")
        return lambda ns: +_number(operand(ns), "unary plus")

    def _BoolOp(self, node: ast.BoolOp):
        values = [self.build(v) for v in node.values]
        is_and = isinstance(node.op, ast.And)

        def boolean(ns):
            value = None
            for item in values:
                value = item(ns)
                if (not value) if is_and else value:
                    return value
            return value

        return boolean

    def _Compare(self, node: ast.Compare):
        first = self.build(node.left)
        rest = [(type(op), _COMPARE[type(op)], self.build(c)) for op, c in zip(node.ops, node.comparators)]

        def compare(ns):
            left = first(ns)
            for kind, op, right_function in rest:
                right = right_function(ns)
                if kind not in (ast.Eq, ast.NotEq) and (isinstance(left, str) != isinstance(right, str)
                                                        or isinstance(left, (list, tuple))):
                    raise ExpressionError(f"cannot order {left!r} and {right!r}")
                if not op(left, right):
                    return False
                left = right
            return True

        return compare

    def _IfExp(self, node: ast.IfExp):
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
        return lambda ns: body(ns) if test(ns) else orelse(ns)

    def _Subscript(self, node: ast.Subscript):
        container, key = self.build(node.value), self.build(node.slice)

        def subscript(ns):
            value, index = container(ns), key(ns)
            if not isinstance(value, (list, tuple)):
                raise ExpressionError(f"only list parameters can be indexed (received {value!r})")
            if isinstance(index, bool) or not isinstance(index, int):
                raise ExpressionError(f"a list index must be an integer (received {index!r})")
            if not -len(value) <= index < len(value):
                raise ExpressionError(f"index {index} is out of range: the list has {len(value)} items")
            return _bounded(value[index])

        return subscript

    def _Call(self, node: ast.Call):
        name = node.func.id
        function = FUNCTIONS[name]
        args = [self.build(a) for a in node.args]
        kwargs = [(k.arg, self.build(k.value)) for k in node.keywords]

        def call(ns):
            positional = [_number(a(ns), f"{name}()") for a in args]
            keywords = {k: _number(v(ns), f"{name}()") for k, v in kwargs}
            return _bounded(function(*positional, **keywords))

        return call


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."
