"""The interpreter: a forward and a backward visitor applying the registered op rules.

Each visitor walks the steps once (forward in topological order, backward in reverse)
and writes one line of Python per rule it applies; the lines are compiled into a
function once per plan and cached on the model. Running a model then costs one Python
call per rule, with no graph or name lookups in the hot loop. The backward lines
accumulate ∂of/∂vertex with `+` where a vertex feeds several others, so every product
is computed once; a vertex's gradient is dropped as soon as it has been passed on.

When every value is a scalar (the lecture's networks), a plan can run on Python floats
instead of numpy scalars, several times cheaper per operation; see FloatMath.

A rule written as a one-expression lambda (most are) is inlined: its body, read from
graphdef's own source with `ast`, is written into the line with the slots in place of
its parameters, which saves a Python call per rule on small graphs. Only identifiers
made here, repr()'d vertex names and the bodies of registered rules go into the
generated text; attribute values are passed in as objects, so nothing from a model file
is ever evaluated as code. A failing line is mapped back to its step.
"""
from __future__ import annotations

import ast
import builtins
import functools
import itertools
import linecache
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ..ops import Op, broadcast_shape, unbroadcast

CAUGHT = (ValueError, TypeError, ArithmeticError, IndexError, AttributeError)
_serial = itertools.count()
GENERATED = f"{__name__}.generated"  # the module name warnings see for generated code

# A fault (log 0, an overflow) gives inf or NaN, which Model.check_numerics reports at the
# vertex that made it; numpy's RuntimeWarnings about it are silenced, for graphdef's own code
# only. (An np.errstate block would do the same, but makes every ufunc call in it ~0.3 µs slower.)
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"graphdef\b")


@dataclass(frozen=True)
class Step:
    name: str
    op: Op
    args: tuple[str, ...]
    attrs: dict


class StepError(Exception):
    """An op rule failed at run time; the model turns this into a located GraphDefError."""

    def __init__(self, step: Step, cause: Exception):
        super().__init__(f"{cause}")
        self.step, self.cause = step, cause


class FloatMath:
    """numpy's functions as the rules call them, on Python floats (the others are numpy's own).

    Where numpy would return inf or NaN (log 0, exp 1000, x / 0), Python raises instead: the
    model then runs the numpy plan for that call, so results never depend on the plan.
    """
    exp, log, tanh, sqrt, abs = map(staticmethod, (math.exp, math.log, math.tanh, math.sqrt, abs))

    @staticmethod
    def maximum(x, y):
        return x if x >= y or x != x else float(y)  # NaN propagates, as in numpy; relu's 0 stays a float

    def __getattr__(self, name):
        return getattr(np, name)


FLOAT_MATH = FloatMath()


class Compiled:
    """Generated Python for a plan: callable, printable (`.source`), failures mapped to steps."""

    def __init__(self, name: str, lines: list, steps_by_line: dict, namespace: dict):
        self.source = "\n".join(lines)
        self.filename = f"<graphdef {name} {next(_serial)}>"
        self.steps_by_line = steps_by_line
        exec(compile(self.source, self.filename, "exec"), namespace)
        self.function = namespace[name]

    def __call__(self, env: dict):
        try:
            return self.function(env)
        except CAUGHT as e:
            tb, step = e.__traceback__, None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == self.filename:
                    step = self.steps_by_line.get(tb.tb_lineno)
                tb = tb.tb_next
            if step is None:
                raise
            raise StepError(step, e) from e


def seed(value):
    """∂of/∂of: ones shaped like `of`; a numpy scalar for one (ones_like would make a slower 0-d array)."""
    return value.dtype.type(1) if isinstance(value, np.generic) else np.ones_like(value)


class _Writer:
    """Lines of one generated function, with every rule and attribute bound by name."""

    def __init__(self, name: str, params: str, floats: bool = False):
        self.name, self.lines, self.line_steps, self.floats = name, [f"def {name}({params}):"], [None], floats
        self.namespace = {"__name__": GENERATED, "seed": seed, "zeros_like": np.zeros_like, "unbroadcast": unbroadcast}
        self.slots, self.bound = {}, {}

    def slot(self, vertex: str, prefix: str = "v") -> str:
        return self.slots.setdefault((prefix, vertex), f"{prefix}{len(self.slots)}")

    def bind(self, value, hint: str) -> str:
        """A name for an object the generated code uses (`np_3`, `mul_vjp1_4`, `axis_5`), one per distinct object."""
        if self.floats and value is np:
            value = FLOAT_MATH
        try:
            key = (hint, type(value), value) if isinstance(value, (int, float, str, tuple, type(None))) else id(value)
            hash(key)
        except TypeError:
            key = id(value)
        if key not in self.bound:
            self.bound[key] = name = f"{hint}_{len(self.namespace)}"
            self.namespace[name] = value
        return self.bound[key]

    def call(self, rule, step: Step, hint: str, leading: tuple = ()) -> str:
        """The rule applied to the step's slots: its body inlined when it can be, else a call."""
        positional = [*leading, *(self.slot(a) for a in step.args)]
        attrs = {k: self.bind(v, k) for k, v in step.attrs.items()}
        inlined = _inlined(rule, positional, attrs, self)
        if inlined is not None:
            return inlined
        return f"{self.bind(rule, hint)}({', '.join([*positional, *(f'{k}={v}' for k, v in attrs.items())])})"

    def line(self, text: str, step: Step | None = None):
        self.lines.append(f"    {text}")
        self.line_steps.append(step)

    def release(self, kept: set) -> None:
        """Free each value (slot v…, or r… saved for backward) not in `kept` right after the last line reading it.

        Checks that only need a value's shape read it from `s…`, taken when the value is made,
        so a big intermediate array is not kept alive for its shape alone.
        """
        shaped = set(re.findall(r"\b(v\d+)\.shape\b", "\n".join(self.lines)))
        lines, steps = [], []
        for text, step in zip(self.lines, self.line_steps):
            lines.append(re.sub(r"\bv(\d+)\.shape\b", r"s\1", text) if ".shape" in text else text)
            steps.append(step)
            made = shaped and re.match(r"    (v\d+)(?:, r\d+)? = ", text)
            if made and made.group(1) in shaped:
                lines.append(f"    s{made.group(1)[1:]} = {made.group(1)}.shape")
                steps.append(step)
        self.lines, self.line_steps = lines, steps
        last = {}
        for i, text in enumerate(self.lines):
            for slot in re.findall(r"\b[vr]\d+\b", text.split("  # ")[0]):
                last[slot] = i
        dying = {}  # line -> the slots last read there
        for slot, i in last.items():
            if slot not in kept:
                dying.setdefault(i, []).append(slot)
        lines, steps = [], []
        for i, (text, step) in enumerate(zip(self.lines, self.line_steps)):
            lines.append(text)
            steps.append(step)
            dead = dying.get(i)
            if dead:
                lines.append(f"    del {', '.join(dead)}")
                steps.append(None)
        self.lines, self.line_steps = lines, steps

    def compiled(self) -> Compiled:
        steps_by_line = {i + 1: step for i, step in enumerate(self.line_steps) if step is not None}
        return Compiled(self.name, self.lines, steps_by_line, self.namespace)


@functools.cache
def _template(rule):
    """A one-expression lambda rule as text with numbered holes for its parameters, and the globals it uses; or None."""
    code = getattr(rule, "__code__", None)
    if code is None or code.co_name != "<lambda>" or rule.__closure__ or code.co_flags & 0x0C:  # *args, **kw
        return None
    try:
        tree = ast.parse("".join(linecache.getlines(code.co_filename)))
    except (SyntaxError, ValueError):
        return None
    spans = [(l, c, el, ec) for l, el, c, ec in code.co_positions()
             if l is not None and c is not None and (c, ec) != (0, 0)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda) and node.lineno == code.co_firstlineno and spans and all(
                (node.body.lineno, node.body.col_offset) <= (l, c) and (el, ec) <= (node.body.end_lineno,
                                                                                   node.body.end_col_offset)
                for l, c, el, ec in spans):
            break
    else:
        return None
    if any(isinstance(n, (ast.Lambda, ast.comprehension, ast.NamedExpr)) for n in ast.walk(node.body)):
        return None
    params = [a.arg for a in node.args.args + node.args.kwonlyargs]
    scope = {**vars(builtins), **rule.__globals__}
    free = sorted({n.id for n in ast.walk(node.body) if isinstance(n, ast.Name)} - set(params))
    if not set(free) <= set(scope):
        return None
    holes = {name: f"__hole{i}__" for i, name in enumerate(params + free)}
    text = ast.unparse(_Rename(holes).visit(node.body))
    return len(node.args.args), [a.arg for a in node.args.kwonlyargs], text, {n: scope[n] for n in free}


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict):
        self.names = names

    def visit_Name(self, node):
        return ast.copy_location(ast.Name(self.names[node.id], node.ctx), node) if node.id in self.names else node


def _inlined(rule, positional: list, attrs: dict, w: "_Writer") -> str | None:
    found = _template(rule)
    if found is None:
        return None
    n_args, kwonly, text, free = found
    if n_args != len(positional) or not set(kwonly) <= set(attrs):
        return None
    fills = [*positional, *(attrs[k] for k in kwonly), *(w.bind(v, n.strip("_")) for n, v in free.items())]
    for i, fill in enumerate(fills):
        text = text.replace(f"__hole{i}__", fill)
    return f"({text})"


def _leaves(steps) -> list:
    made = {s.name for s in steps}
    return list(dict.fromkeys(a for s in steps for a in s.args if a not in made))


def _forward_lines(w: _Writer, steps, scalars, saving=frozenset()) -> None:
    """Leaves read from env, then one line per step; a step in `saving` also keeps what its op saves (slot r…)."""
    for name in _leaves(steps):  # 0-d parameters and constants as numpy scalars: much faster arithmetic
        w.line(f"{w.slot(name)} = " + (f"float(env[{name!r}])" if w.floats else f"env[{name!r}]"
                                       + ("[()]" if name in scalars else "")))
    for step in steps:
        if step.name in saving:
            made = f"{w.slot(step.name)}, {w.slot(step.name, 'r')} = {w.call(step.op.save, step, step.op.name)}"
        else:
            made = f"{w.slot(step.name)} = {w.call(step.op.forward, step, step.op.name)}"
        w.line(f"{made}  # {step.name}", step)


def _returned(w: _Writer, names) -> str:
    return "{" + ", ".join(f"{n!r}: {w.slot(n)}" for n in names) + "}"


def compile_forward(steps, scalars=frozenset(), floats: bool = False) -> Compiled:
    """forward(env) -> {vertex: value} for every step, given env holding their leaves (`scalars`: the 0-d ones).

    `floats`: every value is a scalar; compute on Python floats (see FloatMath).
    """
    w = _Writer("forward", "env", floats)
    _forward_lines(w, steps, scalars)
    w.line(f"return {_returned(w, [s.name for s in steps])}")
    return w.compiled()


def compile_backprop(steps, backward_steps, of: str, wrt, wanted, keep=(), scalars=frozenset(),
                     shapes: dict | None = None, returned=None, floats: bool = False) -> Compiled:
    """backprop(env) -> (values of the steps, ∂of/∂v for v in wrt and keep that of depends on), one pass each way.

    `backward_steps` and `wanted` are the steps and vertices on a path from wrt to `of`.
    The seed is ones: for a non-scalar `of`, this is the gradient of its sum. `shapes`, when
    every value is known to have exactly its static shape, lets a gradient skip the check
    for broadcasting where input and output shapes agree. With `returned` (vertex names), only
    those values are returned, and every other one is freed as soon as nothing reads it.
    `floats` as in compile_forward.
    """
    w = _Writer("backprop", "env", floats)
    saving = {s.name for s in backward_steps if s.op.save is not None}
    _forward_lines(w, steps, scalars, saving)
    keep = set(wrt) | set(keep)
    has = {of}
    w.line(f"{w.slot(of, 'g')} = " + ("1.0" if floats else f"seed({w.slot(of)})"))
    for step in reversed(backward_steps):
        for i, (arg, rule) in enumerate(zip(step.args, step.op.backward)):
            if arg not in wanted or rule is None:
                continue
            out = w.slot(step.name, "r" if step.name in saving else "v")
            vjp = w.call(rule, step, f"{step.op.name}_vjp{i}", (w.slot(step.name, "g"), out))
            comment = f"  # ∂{of}/∂{arg} += ∂{step.name}/∂{arg}·∂{of}/∂{step.name}"
            if not _same_shape(step, i) and (shapes is None or shapes[arg] != shapes[step.name]):
                w.line(f"t = {vjp}{comment}", step)
                w.line(f"if t.shape != {w.slot(arg)}.shape: t = unbroadcast(t, {w.slot(arg)}.shape)", step)
                vjp, comment = "t", ""
            g = w.slot(arg, "g")
            w.line((f"{g} = {g} + {vjp}" if arg in has else f"{g} = {vjp}") + comment, step)
            has.add(arg)
        if step.name not in keep and not floats:  # a float is too small to be worth freeing
            w.line(f"del {w.slot(step.name, 'g')}")
    zero = "0.0" if floats else "zeros_like(env[{!r}])"  # for a wrt vertex that `of` does not depend on
    grads = ", ".join(f"{n!r}: {w.slot(n, 'g') if n in has else zero.format(n)}"
                      for n in dict.fromkeys([*wrt, *sorted(keep, key=str)]) if n in has or n in wrt)
    values = [s.name for s in steps if returned is None or s.name in returned]
    w.line(f"return {_returned(w, values)}, {{{grads}}}")
    if returned is not None and not floats:
        w.release({w.slot(n) for n in values})
    return w.compiled()


def _same_shape(step: Step, i: int) -> bool:
    """Whether rule i surely returns its input's shape: one-input elementwise ops (shape rule: broadcasting)."""
    return step.op.shape is broadcast_shape and len(step.args) == 1
