"""Attribute expressions: `sizes[step + 1]`, `heads * width`, `a if step == times - 1 else b`.

Inside a function body (or a `repeat` node), a string whose every name is an attribute in
scope stands for its value, computed here. It is a small language, evaluated by walking
the syntax tree, never by Python's eval: numbers, strings, lists, arithmetic on numbers
(`+ - * / // % **`), comparisons, `and`/`or`/`not`, `x if c else y`, indexing and slicing,
len/min/max, and a list repeated (`[0.0] * hidden`: an initial state). A model file cannot
run code, and cannot ask for a huge value.
"""
from __future__ import annotations

import ast
import functools
import math
import operator

MAX_LENGTH = 200  # characters: an attribute expression is a short formula
MAX_NUMBER = 2 ** 53  # every value an integer arithmetic may produce stays a sane size
MAX_ITEMS = 1_000_000  # a repeated list

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod, ast.Div: operator.truediv, ast.Pow: operator.pow}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_CALLS = {"len": len, "min": min, "max": max}


class ExpressionError(ValueError):
    """An attribute expression that cannot be computed."""


def names(text: str) -> frozenset | None:
    """The names an expression reads (None: the string is not an expression, just text)."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        return None
    return _names(text)


@functools.lru_cache(maxsize=4096)
def _names(text: str) -> frozenset | None:
    """names() of a string, parsed once: a function called a thousand times has the same strings every time."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    return frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)) - set(_CALLS)


def substitute(value, scope: dict):
    """`value` with each string that is an expression over `scope`'s names replaced by its value
    (lists element by element); other strings (op names, initializers) are left as they are."""
    if isinstance(value, list):
        return [substitute(v, scope) for v in value]
    if isinstance(value, str) and value in scope:
        return scope[value]
    read = names(value)
    if read and read <= set(scope) and value.strip() not in _CALLS:
        return evaluate(value, scope)
    return value


def evaluate(text: str, scope: dict):
    """The value of an attribute expression whose names are in scope."""
    try:
        return _value(ast.parse(text.strip(), mode="eval").body, scope)
    except ExpressionError as e:
        raise ExpressionError(f"cannot compute '{text}': {e}") from None
    except (TypeError, IndexError, KeyError, ArithmeticError, ValueError, RecursionError) as e:
        raise ExpressionError(f"cannot compute '{text}': {e}") from None


def _value(node, scope: dict):
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in scope:
            raise ExpressionError(f"unknown name '{node.id}'")
        return scope[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, scope) for e in node.elts]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left, scope), _value(node.right, scope)
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int):
            if not 0 <= items(left) * right <= MAX_ITEMS:
                raise ExpressionError(f"a list of {items(left) * right:,} numbers is too long (at most {MAX_ITEMS:,})")
            return left * right
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right)):
            raise ExpressionError("arithmetic is on numbers only")
        if isinstance(node.op, ast.Pow) and abs(left) > 1 and abs(right) * math.log2(abs(left)) > 53:
            raise ExpressionError(f"{left} ** {right} is too large")  # checked before it is computed
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ExpressionError(f"{left} ** {right} is not a real number")
        return _bounded(result)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        operand = _value(node.operand, scope)
        return (not operand) if isinstance(node.op, ast.Not) else -operand
    if isinstance(node, ast.BoolOp):
        values = [_value(v, scope) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _value(node.left, scope)
        for op, right in zip(node.ops, node.comparators):
            right = _value(right, scope)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _value(node.body if _value(node.test, scope) else node.orelse, scope)
    if isinstance(node, ast.Subscript):
        return _value(node.value, scope)[_index(node.slice, scope)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS \
            and not node.keywords:
        return _CALLS[node.func.id](*[_value(a, scope) for a in node.args])
    raise ExpressionError(f"'{ast.unparse(node)}' is not allowed in an attribute expression")


def items(value, seen=None) -> int:
    """How many numbers (or strings) a possibly nested list holds, each shared sublist counted where it
    appears: "[[0.0] * n] * n" holds n² of them, counted in n steps."""
    if not isinstance(value, list):
        return 1
    seen = {} if seen is None else seen
    if id(value) not in seen:
        seen[id(value)] = sum(items(v, seen) for v in value)
    return seen[id(value)]


def _index(node, scope: dict):
    if isinstance(node, ast.Slice):
        return slice(*(None if part is None else _value(part, scope) for part in (node.lower, node.upper, node.step)))
    index = _value(node, scope)
    if not isinstance(index, int) or isinstance(index, bool):
        raise ExpressionError("an index must be an integer")
    return index


def _bounded(number):
    if abs(number) > MAX_NUMBER:
        raise ExpressionError(f"{number:.3g} is too large")
    return number
