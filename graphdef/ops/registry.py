"""The op registry: one frozen record per op, registered once, where the op is defined.

Rule signatures, shared by every op:

    forward(*inputs, **attrs) -> out
    backward: one rule per input, vjp_i(g, out, *inputs, **attrs) -> ∂L/∂input_i (None: not differentiable)
    shape(*input_shapes, **attrs) -> output shape
    save (optional): save(*inputs, **attrs) -> (out, saved), a forward that also keeps what the
        backward rules need (a fused loss keeps its softmax); the rules then get `saved` as `out`

Each vjp_i is a vector-Jacobian product: given g = ∂L/∂out it returns ∂L/∂input_i, and
runs only when input i needs a gradient (a matmul feeding from data skips one product).
It may return a gradient of the broadcast shape; the interpreter sums it back to the
input's shape. Shapes are tuples whose dimensions may be None (unknown); a whole shape
of None means the rank is unknown too. A shape rule raises ShapeError on a mismatch.

Attributes are the forward function's keyword-only parameters: their names are the YAML
keys, their annotations (or default's type) the accepted types, their defaults the defaults.
"""
from __future__ import annotations

import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Callable

REQUIRED = inspect.Parameter.empty
REAL, POSITIVE, PROBABILITY = (-2.0, 2.0), (0.5, 2.0), (0.05, 1.0)


class ShapeError(ValueError):
    """Static shapes that cannot work together."""


@dataclass(frozen=True)
class Attr:
    name: str
    type: object  # an annotation: int, float, bool, str, list[int], unions of these, or None for any
    default: object = REQUIRED

    def accepts(self, value) -> bool:
        return _accepts(self.type, value)

    def type_name(self) -> str:
        return _type_name(self.type)


@dataclass(frozen=True)
class Op:
    name: str
    forward: Callable
    backward: tuple  # one vector-Jacobian rule per input, None where there is no gradient
    shape: Callable
    doc: str
    args: tuple[str, ...]  # names of the positional inputs
    attrs: dict[str, Attr] = field(default_factory=dict)
    examples: tuple = ()  # ((input shapes...), {attrs}) pairs used by the generated gradient tests
    domain: tuple = ()  # (low, high) per input for test samples; REAL when missing
    save: Callable | None = None  # forward returning (out, what the backward rules get as `out`)

    def __repr__(self):
        return f"<op {self.signature()}>"

    def bind(self, given: dict) -> dict:
        """Keyword arguments for the rules: defaults filled in, YAML lists as tuples (what numpy takes)."""
        attrs = {a.name: a.default for a in self.attrs.values() if a.default is not REQUIRED}
        attrs.update({k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
        return attrs

    def saved(self, out, *inputs, **attrs):
        """What the backward rules get as `out`: the output itself, unless the op saves more."""
        return out if self.save is None else self.save(*inputs, **attrs)[1]

    @property
    def arity(self) -> int:
        return len(self.args)

    def signature(self) -> str:
        attrs = [f"{a.name}: {a.type_name()}" + ("" if a.default is REQUIRED else f" = {_default(a.default)}")
                 for a in self.attrs.values()]
        return f"{self.name}({', '.join(list(self.args) + attrs)})"


OPS: dict[str, Op] = {}


def ex(*shapes, **attrs) -> tuple:
    """One gradient-test example: the input shapes, then attributes."""
    return (shapes, attrs)


def broadcast_shape(*shapes, **attrs):
    """numpy broadcasting on static shapes with unknown (None) dimensions; the default shape rule."""
    if any(s is None for s in shapes):
        return None
    out = []
    for dims in zip(*(((1,) * (max(map(len, shapes)) - len(s)) + tuple(s)) for s in shapes)):
        known = {d for d in dims if d not in (1, None)}
        if len(known) > 1:
            raise ShapeError(f"shapes {' and '.join(show_shape(s) for s in shapes)} do not broadcast")
        out.append(known.pop() if known else (None if None in dims else 1))
    return tuple(out)


def unbroadcast(g, shape: tuple):
    """Sum a gradient of a broadcast result back to the shape of the input it flows to."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if g.shape[lead:] == shape:  # only leading axes were added (a bias, a shared scalar): the common case
        return g.sum(axis=0) if lead == 1 else g.sum(axis=tuple(range(lead)))
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1)
    return g.sum(axis=axes).reshape(shape)


def register_op(name: str, forward: Callable | None = None, backward=None, *,
                shape: Callable | None = None, doc: str | None = None, examples=(), domain=(),
                save: Callable | None = None, replace: bool = False):
    """Register an op; usable as a call or, without `forward`, as a decorator of it.

    `backward` is a tuple of one rule per input (a single rule for a one-input op).
    `shape` defaults to broadcasting the inputs (right for elementwise ops).
    `examples` and `domain` feed the gradient tests generated from this registry.
    `save`: see the module docstring; only the gradient-computing plans call it.
    """
    if forward is None:
        return lambda f: register_op(name, f, backward, shape=shape, doc=doc, examples=examples,
                                     domain=domain, save=save, replace=replace)
    if name in OPS and not replace:
        raise ValueError(f"op '{name}' is already registered (pass replace=True to override it)")
    args, attrs = _signature(forward)
    backward = (backward,) if callable(backward) else tuple(backward or (None,) * len(args))
    if len(backward) != len(args):
        raise ValueError(f"op '{name}': {len(args)} inputs but {len(backward)} backward rules")
    doc = (doc or inspect.getdoc(forward) or "").strip()
    OPS[name] = Op(name, forward, backward, shape or broadcast_shape, doc.splitlines()[0] if doc else "",
                   args, attrs, tuple(examples), tuple(domain), save)
    return forward


def _signature(forward: Callable) -> tuple[tuple[str, ...], dict[str, Attr]]:
    hints = typing.get_type_hints(forward)
    args, attrs = [], {}
    for p in inspect.signature(forward).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(p.name)
        elif p.kind is p.KEYWORD_ONLY:
            default_type = None if p.default in (REQUIRED, None) else type(p.default)
            attrs[p.name] = Attr(p.name, hints.get(p.name, default_type), p.default)
        else:
            raise ValueError(f"op forward {forward.__name__}: *args/**kwargs are not supported")
    return tuple(args), attrs


def _accepts(tp, value) -> bool:
    if tp is None:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(t, value) for t in typing.get_args(tp))
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (None,)
        return isinstance(value, (list, tuple)) and all(_accepts(item, v) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _type_name(tp) -> str:
    if tp is None:
        return "any"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(t) for t in typing.get_args(tp))
    if typing.get_origin(tp) in (list, tuple):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _default(value) -> str:
    return "e" if value == math.e else repr(value)


def show_shape(shape) -> str:
    """A static shape as written in YAML: [2, null]; 'any' when even the rank is unknown."""
    return "any" if shape is None else "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"
