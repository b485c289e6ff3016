"""The op registry: one frozen record per op, registered once, where the op is defined.

Rule signatures, shared by every op:

    forward(*inputs, **attrs) -> out
    backward: one rule per input, vjp_i(g, out, *inputs, **attrs) -> ∂L/∂input_i (None: not differentiable)
    jvp: one rule per input, jvp_i(t, out, *inputs, **attrs) -> the tangent of out that a tangent t of
        input i makes (forward mode: J_i·t, of out's shape or broadcasting to it); `out` as the backward
        rules get it. Or one word for the whole op: LINEAR (linear in all inputs together: concat,
        reshape; J_i·t = forward with t in place i and zeros elsewhere) or MULTILINEAR (linear in each
        input while the others are held: matmul, conv, gather's values; J_i·t = forward with t in
        place i). Default for elementwise ops: DIAGONAL, their Jacobians are diagonal, so J·t is the
        backward rule with t for g
    shape(*input_shapes, **attrs) -> output shape
    batch(shapes, batched, **attrs) -> Lift: how the op runs on a batch (see ops/batching.py);
        None: the engine runs it once per sample, which is always right and slow
    save (optional): save(*inputs, **attrs) -> (out, saved), a forward that also keeps what the
        backward rules need (a fused loss keeps its softmax); the rules then get `saved` as `out`
    dtype(*input_dtypes, **attrs) -> the output's dtype ("float64", "int64", "bool"...); raises
        DTypeError when an input has the wrong kind. Default: every input a float (FLOATS)
    torch (optional): the op in PyTorch, an expression string ("x, y: torch.add(x, y)") that sees
        the attributes by name and `torch`, `F` (torch.nn.functional): the tests' oracle
    outputs (optional): outputs(**attrs) -> how many outputs the op has; the forward then takes
        the keyword `output` (which one to compute), set by the loader on each output's vertex
    update (optional, ops with state): update(*inputs, **attrs) -> new values of the inputs at
        positions `state` (running statistics), applied after each training step; `torch_update`, the
        same as a PyTorch expression (like `torch`), for the torch backend

Keyword-only parameters named `training` (bool: the model's mode) and `rng` (the run's seeded
numpy Generator) are not attributes: the engine passes them to ops that declare them.

A rule is a Python callable, or a string holding one Python expression (an `Expr`): the
parameters of a forward string are written before a colon (`"x, y: x + y"`), a backward
string sees `g`, `out`, the inputs and the attributes by name (`"g * y"`). Strings are
callable like lambdas and are also inlined by the compiler into the plans it generates,
which saves a Python call per rule on small graphs.

Each vjp_i is a vector-Jacobian product: given g = ∂L/∂out it returns ∂L/∂input_i, and
runs only when input i needs a gradient (a matmul feeding from data skips one product).
It may return a gradient of the broadcast shape; the engine sums it back to the input's
shape. Shapes are tuples whose dimensions may be None (unknown); a whole shape of None
means the rank is unknown too. A shape rule raises ShapeError (or ValueError) on a mismatch.

Attributes are the forward function's keyword-only parameters: their names are the YAML
keys, their annotations (or default's type) the accepted types, their defaults the defaults.
"""
from __future__ import annotations

import builtins
import inspect
import io
import keyword
import math
import sys
import tokenize
import types
import typing
from dataclasses import dataclass, field
from typing import Callable

REQUIRED = inspect.Parameter.empty
REAL, POSITIVE, PROBABILITY = (-2.0, 2.0), (0.5, 2.0), (0.05, 1.0)


CONTEXT = ("training", "rng")  # keyword parameters the engine fills in, never written in a model file


class ShapeError(ValueError):
    """Static shapes that cannot work together."""


class DTypeError(ValueError):
    """An input of the wrong kind (a float where indices are needed, say)."""


@dataclass(frozen=True)
class Integers:
    """A test domain for an integer (or boolean) input: values drawn from [low, high)."""
    low: int
    high: int
    dtype: str = "int64"


CONDITION = Integers(0, 2, "bool")


@dataclass(frozen=True)
class Attr:
    name: str
    type: object  # an annotation: int, float, bool, str, list[int], unions of these, or None for any
    default: object = REQUIRED
    check: str | None = None  # functions: a condition on the call's attributes (an attribute expression)
    description: str = ""

    def accepts(self, value) -> bool:
        return accepts(self.type, value)

    def type_name(self) -> str:
        return type_name(self.type)


@dataclass(frozen=True, eq=False)
class Expr:
    """A rule written as one Python expression: callable as a function, and inlinable as text."""

    params: tuple[str, ...]  # positional parameters, then keyword-only ones
    positional: int
    text: str
    scope: dict = field(repr=False)  # the globals of the module that wrote it, read when a plan is made
    function: Callable = field(repr=False)
    references: tuple = field(default=(), repr=False)  # (start, end, name) of each name the text reads

    @classmethod
    def make(cls, params: list[str], positional: int, text: str, scope: dict, name: str,
             function: Callable | None = None) -> "Expr":
        if function is None:
            args = ", ".join(params[:positional] + (["*"] + params[positional:] if params[positional:] else []))
            function = eval(compile(f"lambda {args}: ({text})", f"<op {name}>", "eval"), scope)  # our source only
        return cls(tuple(params), positional, text, scope, function, tuple(_references(text)))

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def resolve(self, name: str):
        """The value a free name has where the expression was written (its module, else builtins)."""
        return self.scope[name] if name in self.scope else getattr(builtins, name)

    def free_names(self) -> list[str]:
        """Names the expression reads from its module (or builtins): bound by the compiler when inlining."""
        return list(dict.fromkeys(name for _, _, name in self.references if name not in self.params))

    def filled(self, names: dict) -> str:
        """The expression's text with each name in `names` (parameters and free names) replaced."""
        out, end = [], 0
        for start, stop, name in self.references:
            out += [self.text[end:start], names.get(name, name)]
            end = stop
        text = "".join(out) + self.text[end:]
        return text if text.isidentifier() else f"({text})"


def _references(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every name the expression reads: not keywords, attributes (`.T`), call keywords (`axis=`)."""
    lines = text.splitlines(keepends=True)
    offset = [0]
    for line in lines:
        offset.append(offset[-1] + len(line))
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER)]
    found = []
    for i, t in enumerate(tokens):
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        if t.type == tokenize.NAME and not keyword.iskeyword(t.string) and after != "=" \
                and (i == 0 or tokens[i - 1].string != "."):
            start = offset[t.start[0] - 1] + t.start[1]
            found.append((start, start + len(t.string), t.string))
    return found


@dataclass(frozen=True)
class Op:
    name: str
    forward: Callable
    backward: tuple  # one vector-Jacobian rule per input, None where there is no gradient
    shape: Callable
    doc: str
    args: tuple[str, ...]  # names of the positional inputs
    attrs: dict[str, Attr] = field(default_factory=dict)
    batch: Callable | None = None  # the batching rule; None: run once per sample
    examples: tuple = ()  # ((input shapes...), {attrs}) pairs used by the generated tests
    domain: tuple = ()  # (low, high) per input for test samples; REAL when missing
    save: Callable | None = None  # forward returning (out, what the backward rules get as `out`)
    fault: str = "check the ranges of its inputs"  # what to do when it makes NaN or infinity
    onnx: Callable | None = None  # onnx(emitter, input names, output name, attrs): writes the ONNX nodes
    dtype: Callable = None  # the dtype rule (see the module docstring)
    torch: str | None = None  # the op in PyTorch, as an expression string
    outputs: Callable | None = None  # several outputs: how many, given the attributes
    update: Callable | None = None  # training-mode update of the state inputs
    torch_update: str | None = None  # the update in PyTorch, as an expression string
    state: tuple = ()  # positions of the inputs that are state (running statistics)
    context: tuple = ()  # which of CONTEXT the rules take
    jvp: tuple = ()  # one Jacobian-vector rule per input (forward mode), None where there is no tangent
    scope: dict = field(default=None, repr=False, compare=False)  # the module that registered it

    def __repr__(self):
        return f"<op {self.signature()}>"

    @property
    def elementwise(self) -> bool:
        """Output shaped like the broadcast inputs, each element from the same elements of the inputs."""
        from .batching import elementwise
        return self.batch is elementwise

    @property
    def broadcasts(self) -> bool:
        """Whether the inputs broadcast together, so a rule may return a gradient of the broadcast shape
        (an op without a batching rule is not known not to)."""
        from .batching import BROADCASTING
        return self.batch is None or self.batch in BROADCASTING

    def bind(self, given: dict) -> dict:
        """Keyword arguments for the rules: defaults filled in, YAML lists as tuples (what numpy takes)."""
        attrs = {a.name: a.default for a in self.attrs.values() if a.default is not REQUIRED}
        attrs.update({k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
        return attrs

    def torch_function(self) -> Callable:
        """The op's PyTorch expression as a function of (inputs, attributes): imports torch."""
        return _torch_lambda(self, self.torch, "")

    def torch_update_function(self) -> Callable | None:
        """The state update's PyTorch expression as a function of (inputs, attributes), if the op has one."""
        return _torch_lambda(self, self.torch_update, " update") if self.torch_update else None

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
LINEAR, MULTILINEAR, DIAGONAL = "linear", "multilinear", "diagonal"  # jvp rules derived from the forward or backward
_TORCH_FUNCTIONS: dict[str, Callable] = {}


def _torch_lambda(op: Op, text: str, what: str) -> Callable:
    """A PyTorch expression ("x, y: torch.add(x, y)") as a function that also takes the op's attributes and
    context by keyword, seeing `torch` and `F` (torch.nn.functional); made once per op."""
    key = op.name + what
    if key not in _TORCH_FUNCTIONS:
        import torch
        head, _, body = text.partition(":")
        params = [p.strip() for p in head.split(",") if p.strip()]
        scope = {**op.scope, "torch": torch, "F": torch.nn.functional}
        keywords = [*op.attrs, *op.context, *(["output"] if op.outputs else [])]
        args = ", ".join(params + (["*", *keywords] if keywords else []) + ["**_"])
        _TORCH_FUNCTIONS[key] = eval(compile(f"lambda {args}: ({body.strip()})", f"<torch {key}>", "eval"), scope)
    return _TORCH_FUNCTIONS[key]


def FLOATS(*dtypes, **attrs) -> str:
    """The default dtype rule: every input a float; the output too."""
    for i, d in enumerate(dtypes):
        if not d.startswith("float"):
            raise DTypeError(f"input {i + 1} holds {d} values; this op computes on floats")
    return dtypes[0] if dtypes else "float64"


def SAME(*dtypes, **attrs) -> str:
    """Ops that move values without computing on them (reshape, concat...): any dtype, the same for all."""
    if len(set(dtypes)) > 1:
        raise DTypeError(f"inputs hold different dtypes ({', '.join(dtypes)}); they must agree")
    return dtypes[0]


def indexed_by(*positions, rest: Callable = SAME) -> Callable:
    """A dtype rule where the inputs at `positions` are integers (indices, class labels) and the
    others follow `rest`."""
    def rule(*dtypes, **attrs):
        for i in positions:
            if i < len(dtypes) and dtypes[i] != "int64":
                raise DTypeError(f"input {i + 1} must hold integers (int64), not {dtypes[i]}: declare "
                                 "`dtype: int64` where it comes from")
        return rest(*(d for i, d in enumerate(dtypes) if i not in positions), **attrs)
    return rule


def condition_first(*dtypes, **attrs) -> str:
    """where(condition, x, y): a bool condition, x and y of one dtype."""
    if dtypes[0] != "bool":
        raise DTypeError(f"the condition must hold booleans, not {dtypes[0]}: make it with a comparison, "
                         "or declare `dtype: bool`")
    return SAME(*dtypes[1:])


def ex(*shapes, **attrs) -> tuple:
    """One test example: the input shapes, then attributes."""
    return (shapes, attrs)


def positive(**values) -> None:
    """Refuse, when the model loads, settings that only make sense above 0 (eps, beta, a kernel size)."""
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")


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


def register_op(name: str, forward: Callable | str | None = None, backward=None, *,
                shape: Callable | None = None, batch: Callable | None = None, doc: str | None = None,
                examples=(), domain=(), save: Callable | None = None, fault: str | None = None,
                onnx: Callable | None = None, dtype: Callable | None = None, torch: str | None = None,
                outputs: Callable | None = None, update: Callable | None = None, state: tuple = (),
                torch_update: str | None = None, jvp=None, replace: bool = False, scope: dict | None = None):
    """Register an op; usable as a call or, without `forward`, as a decorator of it.

    `backward` is a tuple of one rule per input (a single rule for a one-input op); rules
    and `forward` may be expression strings (see the module docstring), read in `scope`
    (default: the caller's module). `shape` defaults to broadcasting the inputs. `batch`
    says how the op runs on a batch (default: once per sample). `examples` and `domain`
    feed the tests generated from this registry; `fault` is the advice given when the op
    produces NaN or infinity; `onnx` writes its ONNX nodes; `dtype`, `torch`, `outputs`,
    `update`, `torch_update`, `state` and `jvp` are described in the module docstring.
    """
    scope = scope if scope is not None else sys._getframe(1).f_globals
    options = dict(shape=shape, batch=batch, doc=doc, examples=examples, domain=domain, save=save, fault=fault,
                   onnx=onnx, dtype=dtype, torch=torch, outputs=outputs, update=update, state=state,
                   torch_update=torch_update, jvp=jvp, replace=replace, scope=scope)
    if forward is None:
        return lambda f: register_op(name, f, backward, **options)
    if name in OPS and not replace:
        raise ValueError(f"op '{name}' is already registered (pass replace=True to override it)")
    if isinstance(forward, str):
        forward = _forward_expr(forward, scope, name)
    args, attrs, context = _signature(forward)
    if outputs is not None:
        attrs.pop("output", None)  # set by the loader, one vertex per output
    backward = (backward,) if callable(backward) or isinstance(backward, str) else tuple(backward or (None,) * len(args))
    if len(backward) != len(args):
        raise ValueError(f"op '{name}': {len(args)} inputs but {len(backward)} backward rules")
    backward = tuple(Expr.make(["g", "out", *args, *attrs, *context, *(["output"] if outputs else [])],
                               2 + len(args), rule, scope, f"{name} vjp{i}")
                     if isinstance(rule, str) else rule for i, rule in enumerate(backward))
    from .batching import elementwise  # batching.py imports this module: read when ops register
    if jvp is None and batch is elementwise:
        jvp = DIAGONAL
    keywords = [*attrs, *context, *(["output"] if outputs else [])]
    doc = (doc or inspect.getdoc(forward if not isinstance(forward, Expr) else None) or "").strip()
    OPS[name] = Op(name, forward, backward, shape or broadcast_shape, doc.splitlines()[0] if doc else "",
                   args, attrs, batch, tuple(examples), tuple(domain), save,
                   fault or "check the ranges of its inputs", onnx, dtype or FLOATS, torch, outputs, update,
                   torch_update, tuple(state), context,
                   _tangent_rules(name, jvp, forward, backward, args, keywords, scope), scope)
    _TORCH_FUNCTIONS.pop(name, None)
    _TORCH_FUNCTIONS.pop(name + " update", None)
    return forward


def _tangent_rules(name: str, jvp, forward, backward: tuple, args: tuple, keywords: list, scope: dict) -> tuple:
    """One forward-mode rule per input (None where none is given), from the op's `jvp` argument."""
    if jvp in (LINEAR, MULTILINEAR):
        return tuple(rule and _linear_tangent(forward, i, jvp == LINEAR) for i, rule in enumerate(backward))
    if jvp == DIAGONAL:
        return tuple(rule and _diagonal_tangent(rule) for rule in backward)
    jvp = (jvp,) if callable(jvp) or isinstance(jvp, str) else tuple(jvp or (None,) * len(args))
    if len(jvp) != len(args):
        raise ValueError(f"op '{name}': {len(args)} inputs but {len(jvp)} jvp rules")
    if "t" in args and any(isinstance(rule, str) for rule in jvp):
        raise ValueError(f"op '{name}': an input named 't' hides the tangent `t` of its jvp expressions; "
                         "write those rules as functions")
    return tuple(Expr.make(["t", "out", *args, *keywords], 2 + len(args), rule, scope, f"{name} jvp{i}")
                 if isinstance(rule, str) else rule for i, rule in enumerate(jvp))


def _linear_tangent(forward: Callable, i: int, jointly: bool) -> Callable:
    """J_i·t of an op linear in its inputs: its forward on t in place i (the other inputs zeroed when the
    op is linear in all of them together, held when it is linear in each alone)."""
    def rule(t, out, *inputs, **attrs):
        import numpy as np
        held = [np.zeros_like(x) if jointly else x for x in inputs]
        return forward(*held[:i], t, *held[i + 1:], **attrs)
    rule.__name__ = rule.__qualname__ = f"linear_jvp{i}"
    return rule


def _diagonal_tangent(vjp: Callable) -> Callable:
    """J·t of an elementwise op: its Jacobian is diagonal, hence symmetric, so J·t is the vjp rule with t for g."""
    def rule(t, out, *inputs, **attrs):
        return vjp(t, out, *inputs, **attrs)
    rule.__name__ = rule.__qualname__ = "diagonal_jvp"
    return rule


def _forward_expr(text: str, scope: dict, name: str) -> Expr:
    """'x, y: x + y' or 'x, *, base=math.e: ...' as an Expr; defaults are evaluated in scope."""
    head, _, body = text.partition(":")
    positional, _, keywords = head.partition("*")
    params = [p.strip() for p in positional.split(",") if p.strip()]
    kw = [p.strip() for p in keywords.split(",") if p.strip()]
    function = None
    if kw:  # keyword defaults: the callable is made with them, so its signature carries the attributes
        args = ", ".join(params + ["*"] + kw)
        function = eval(compile(f"lambda {args}: ({body.strip()})", f"<op {name}>", "eval"), scope)
    return Expr.make(params + [k.split("=")[0].strip() for k in kw], len(params), body.strip(), scope, name, function)


def _signature(forward: Callable) -> tuple[tuple[str, ...], dict[str, Attr], tuple[str, ...]]:
    function = forward.function if isinstance(forward, Expr) else forward
    hints = typing.get_type_hints(function)
    args, attrs, context = [], {}, []
    for p in inspect.signature(function).parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(p.name)
        elif p.kind is p.KEYWORD_ONLY and p.name in CONTEXT:
            context.append(p.name)
        elif p.kind is p.KEYWORD_ONLY:
            default_type = None if p.default in (REQUIRED, None) else type(p.default)
            attrs[p.name] = Attr(p.name, hints.get(p.name, default_type), p.default)
        else:
            raise ValueError(f"op forward {function.__name__}: *args/**kwargs are not supported")
    return tuple(args), attrs, tuple(context)


def bind_attrs(what: str, declared: dict[str, Attr], given: dict, usage: str) -> tuple[dict, list]:
    """The attributes of a call (of an op or a function, `what`), checked against their declarations.

    Returns the values with defaults filled in, and the problems as (key or None, message, hint).
    """
    from ..errors import did_you_mean
    values, problems = {}, []
    for key, value in given.items():
        attr = declared.get(key)
        if attr is None:
            problems.append((key, f"{what} has no attribute '{key}'",
                             did_you_mean(key, declared) or f"its attributes: {', '.join(declared) or 'none'}"))
        elif not attr.accepts(value):
            problems.append((key, f"attribute '{key}' of {what} must be {attr.type_name()}, got {value!r}",
                             f"usage: {usage}"))
        else:
            values[key] = value
    for attr in declared.values():
        if attr.name not in given and attr.default is REQUIRED:
            problems.append((None, f"{what} needs attribute '{attr.name}' ({attr.type_name()})", f"usage: {usage}"))
        elif attr.name not in given:
            values[attr.name] = attr.default
    return values, problems


def accepts(tp, value) -> bool:
    """Whether a value from a YAML file fits an attribute type (annotation)."""
    if tp is None:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(t, value) for t in typing.get_args(tp))
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (None,)
        return isinstance(value, (list, tuple)) and all(accepts(item, v) for v in value)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tp is int:  # within int64: what numpy, ONNX and PyTorch take
        return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
    return isinstance(value, tp)


def type_name(tp) -> str:
    """An attribute type in the words a function's `attributes:` declares it with: int, ints, string, ..."""
    if tp is None:
        return "any"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(type_name(t) for t in typing.get_args(tp))
    if typing.get_origin(tp) in (list, tuple):
        return f"{type_name(typing.get_args(tp)[0])}s"
    return {type(None): "null", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _default(value) -> str:
    return "e" if value == math.e else repr(value)


def show_shape(shape) -> str:
    """A static shape as written in YAML: [2, null]; 'any' when even the rank is unknown."""
    return "any" if shape is None else "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"
