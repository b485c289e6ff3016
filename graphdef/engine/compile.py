"""Compiled plans: the reference interpreter's loops unrolled into one Python function.

The forward and backward visitors walk the nodes once (forward in order, backward in
reverse) and write one line per rule they apply, with the batching of each node decided
when the plan is made (engine/lift.py). The lines are compiled into a function once per
plan; running a model then costs one Python call per rule, with no graph or name lookups.
The backward lines accumulate ∂of/∂vertex with `+` where a vertex feeds several others,
so every product is computed once; a value is deleted right after the last line reading
it, known from the reads each line records.

A rule written as an expression string (ops/registry.py Expr) is inlined: its text with
the slots in place of its parameters. Only identifiers made here, repr()'d vertex names
and the rule texts of registered ops go into the generated source; attribute values are
passed in as objects, so nothing from a model file is ever evaluated as code. The source
is registered with linecache, so a traceback shows the generated line, and a failing line
is mapped back to its node.
"""
from __future__ import annotations

import functools
import itertools
import linecache
import math
import warnings
import weakref

import numpy as np

from ..ops import Expr, broadcast_shape, unbroadcast
from .lift import PER_SAMPLE, StepError, attrs_of, lift_of, per_sample_forward, per_sample_vjp

CAUGHT = (ValueError, TypeError, ArithmeticError, IndexError, AttributeError)
GENERATED = "graphdef.engine.generated"  # the module name warnings see for generated code
BATCH = "B"  # the batch size in static shapes: the same for every batched value of a call
_serial = itertools.count()

# A fault (log 0, an overflow) gives inf or NaN, which Model.check_numerics reports at the
# vertex that made it; numpy's RuntimeWarnings about it are silenced, for graphdef's own code
# only. (An np.errstate block would do the same, but makes every ufunc call in it ~0.3 µs slower.)
warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"graphdef\b")


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
    """Generated Python for a plan: callable, printable (`.source`), failures mapped to nodes."""

    def __init__(self, name: str, lines: list, steps: list, namespace: dict):
        self.source = "\n".join(lines) + "\n"
        self.filename = f"<graphdef {name} {next(_serial)}>"
        self.steps = steps  # the node each line belongs to (None for bookkeeping lines)
        linecache.cache[self.filename] = (len(self.source), None, self.source.splitlines(True), self.filename)
        exec(compile(self.source, self.filename, "exec"), namespace)
        self.function = namespace[name]

    def __call__(self, env: dict):
        try:
            return self.function(env)
        except CAUGHT as e:
            tb, lineno = e.__traceback__, None
            while tb is not None:
                if tb.tb_frame.f_code.co_filename == self.filename:
                    lineno = tb.tb_lineno
                tb = tb.tb_next
            step = self.steps[lineno - 1] if lineno else None
            if step is None:
                raise
            raise StepError(step, e, f"{self.filename} line {lineno}: {self.source.splitlines()[lineno - 1].strip()}") \
                from e


def seed(value, scale=1):
    """∂of/∂of: `scale` shaped like `of`; a numpy scalar for one (ones_like would make a slower 0-d array)."""
    if isinstance(value, np.generic):
        return value.dtype.type(scale)
    return np.full_like(value, scale) if scale != 1 else np.ones_like(value)


class _Writer:
    """Lines of one generated function, each with the node it belongs to and the slots it reads."""

    def __init__(self, name: str, graph, batched: frozenset, floats: bool = False, context=None):
        self.name, self.graph, self.batched, self.floats = name, graph, batched, floats
        self.context = context or {}
        self.lines, self.steps, self.reads = [f"def {name}(env):"], [None], [()]
        self.namespace = {"__name__": GENERATED, "seed": seed, "zeros_like": np.zeros_like,
                          "unbroadcast": unbroadcast, "expand_dims": np.expand_dims, "squeeze": np.squeeze,
                          "reshape": np.reshape, "per_sample_forward": per_sample_forward,
                          "per_sample_vjp": per_sample_vjp}
        self.slots, self.bound, self.lifts, self.calls = {}, {}, {}, {}
        self.probes = _PROBED[graph] if graph in _PROBED else _PROBED.setdefault(graph, probed_shapes(graph))

    def slot(self, vertex: str, prefix: str = "v") -> str:
        return self.slots.setdefault((prefix, vertex), f"{prefix}{len(self.slots)}")

    def bind(self, value, hint: str) -> str:
        """A name for an object the generated code uses (`np_3`, `axis_5`), one per distinct object."""
        if self.floats and value is np:
            value = FLOAT_MATH
        try:
            key = (hint, type(value), value) if isinstance(value, (int, float, str, tuple, type(None))) else id(value)
            hash(key)
        except TypeError:
            key = id(value)
        if key not in self.bound:
            self.bound[key] = name = f"{hint.strip('_')}_{len(self.namespace)}"
            self.namespace[name] = value
        return self.bound[key]

    def attrs(self, step, lift) -> dict:
        return attrs_of(step, lift, self.context)

    def lift(self, step):
        if step.name not in self.lifts:
            self.lifts[step.name] = lift_of(self.graph, step, self.batched)
        return self.lifts[step.name]

    def call(self, rule, params: list[str], attrs: dict, hint: str) -> tuple[str, list[int]]:
        """The rule applied to these argument texts: inlined when it is an expression, else a call;
        and which of the arguments it reads (an inlined rule may leave some unused: `out` often).

        Made once per rule and attribute values, as a format string: big graphs repeat a few."""
        try:
            key = (id(rule), len(params), hint, tuple((k, type(v), v) for k, v in attrs.items()))
            hash(key)
        except TypeError:
            key = (id(rule), len(params), hint, id(attrs))
        made = self.calls.get(key)
        if made is None:
            marks = [f"\0{i}\0" for i in range(len(params))]
            text, used = self._call(rule, marks, attrs, hint)
            parts = text.replace("{", "{{").replace("}", "}}").split("\0")
            made = self.calls[key] = ("".join(f"{{{p}}}" if i % 2 else p for i, p in enumerate(parts)), used)
        return made[0].format(*params), made[1]

    def _call(self, rule, params: list[str], attrs: dict, hint: str) -> tuple[str, list[int]]:
        names = {k: self.bind(v, k) for k, v in attrs.items()}
        if isinstance(rule, Expr) and len(params) == rule.positional:
            fill = dict(zip(rule.params, params)) | names
            for free in rule.free_names():
                if free not in fill:
                    fill[free] = self.bind(rule.resolve(free), free)
            read = {name for _, _, name in rule.references}
            return rule.filled(fill), [i for i, p in enumerate(rule.params[:len(params)]) if p in read]
        text = f"{self.bind(rule, hint)}({', '.join([*params, *(f'{k}={v}' for k, v in names.items())])})"
        return text, list(range(len(params)))

    def line(self, text: str, step=None, reads=()):
        self.lines.append(f"    {text}")
        self.steps.append(step)
        self.reads.append(tuple(reads))

    def release(self, kept: set) -> None:
        """Delete each value slot not in `kept` right after the last line that reads it."""
        last = {}  # value slots (v…, and r… saved for backward); gradients (g…) are deleted where passed on
        for i, reads in enumerate(self.reads):
            for slot in reads:
                if slot[0] in "vr":
                    last[slot] = i
        dying = {}
        for slot, i in last.items():
            if slot not in kept:
                dying.setdefault(i, []).append(slot)
        lines, steps, reads = [], [], []
        for i, (text, step, read) in enumerate(zip(self.lines, self.steps, self.reads)):
            lines.append(text)
            steps.append(step)
            reads.append(read)
            if i in dying:
                lines.append(f"    del {', '.join(dying[i])}")
                steps.append(None)
                reads.append(())
        self.lines, self.steps, self.reads = lines, steps, reads

    def compiled(self) -> Compiled:
        return Compiled(self.name, self.lines, self.steps, self.namespace)


# -- forward -------------------------------------------------------------------------------

def _leaves(graph, steps) -> list:
    made = {s.name for s in steps}
    return list(dict.fromkeys(a for s in steps for a in s.inputs if a not in made))


def _forward_lines(w: _Writer, steps, saving=frozenset()) -> None:
    """Leaves read from env, then one line per node; a node in `saving` also keeps what its op saves (slot r…)."""
    for name in _leaves(w.graph, steps):  # 0-d parameters and constants as numpy scalars: faster arithmetic
        vertex = w.graph.vertices[name]
        scalar = vertex.kind != "input" and vertex.shape == ()
        w.line(f"{w.slot(name)} = " + (f"float(env[{name!r}])" if w.floats else f"env[{name!r}]"
                                       + ("[()]" if scalar else "")))
    for step in steps:
        _forward_line(w, step, step.name in saving)


def _forward_line(w: _Writer, step, saving: bool) -> None:
    lift, args = w.lift(step), [w.slot(a) for a in step.inputs]
    out = w.slot(step.name)
    if lift is PER_SAMPLE:
        flags = tuple(a in w.batched for a in step.inputs)
        made = (f"{out} = per_sample_forward({w.bind(step.op, step.op.name)}, {flags}, "
                f"{w.bind(w.attrs(step, lift), 'attrs')}, {', '.join(args)})")
        return w.line(f"{made}  # {_comment(step.name)}", step, args)
    attrs = w.attrs(step, lift)
    lifted = _lifted_args(w, args, lift)
    if saving:
        text, used = w.call(step.op.save, lifted, attrs, step.op.name + "_save")
        made = f"{out}, {w.slot(step.name, 'r')} = {text}"
    else:
        text, used = w.call(step.op.forward, lifted, attrs, step.op.name)
        made = f"{out} = {text}"
    w.line(f"{made}  # {_comment(step.name)}", step, [args[i] for i in used])
    if lift is not None and lift.squeeze:
        w.line(f"{out} = squeeze({out}, {lift.squeeze})", step, [out])


def _lifted_args(w: _Writer, args: list, lift) -> list:
    if lift is None:
        return args
    return [f"expand_dims({a}, {axes})" if axes else a for a, axes in zip(args, lift.expand)]


def _comment(name: str) -> str:
    return repr(name)[1:-1].replace("\n", " ")


def _returned(w: _Writer, names) -> str:
    return "{" + ", ".join(f"{n!r}: {w.slot(n)}" for n in names) + "}"


def compile_forward(graph, steps, batched=frozenset(), floats: bool = False, context=None) -> Compiled:
    """forward(env) -> {vertex: value} for every step, given env holding their leaves.

    `batched`: the vertices carrying the batch axis. `floats`: every value is a scalar;
    compute on Python floats (see FloatMath). `context`: the mode and generator, for the ops
    that take them.
    """
    w = _Writer("forward", graph, batched, floats, context)
    _forward_lines(w, steps)
    w.line(f"return {_returned(w, [s.name for s in steps])}")
    return w.compiled()


# -- backward ------------------------------------------------------------------------------

def compile_backprop(graph, steps, backward_steps, of: str, wrt, wanted, keep=(), batched=frozenset(),
                     returned=None, floats: bool = False, mean: bool = False, context=None) -> Compiled:
    """backprop(env) -> (values of the steps, ∂of/∂v for v in wrt and keep that of depends on), one pass each way.

    `backward_steps` and `wanted` are the steps and vertices on a path from wrt to `of`.
    The seed is ones: for a non-scalar `of`, the gradient of its sum (with `mean`, of its
    mean). With `returned` (vertex names), only those values are returned, and every other
    one is freed as soon as nothing reads it. `batched`, `floats` as in compile_forward.
    """
    w = _Writer("backprop", graph, batched, floats, context)
    w.of = of
    saving = {s.name for s in backward_steps if s.op.save is not None and w.lift(s) is not PER_SAMPLE}
    _forward_lines(w, steps, saving)
    keep = set(wrt) | set(keep)
    has = {of} if of in wanted else set()  # else no gradient reaches `of` (an integer output): zeros throughout
    if of in wanted and of not in {s.name for s in steps} | set(_leaves(w.graph, steps)):  # `of` is a leaf itself
        w.line(f"{w.slot(of)} = " + (f"float(env[{of!r}])" if floats else f"env[{of!r}]"))
    scale = f", 1 / len({w.slot(of)})" if mean and of in batched else ""  # the mean over samples
    if has:
        w.line(f"{w.slot(of, 'g')} = " + ("1.0" if floats else f"seed({w.slot(of)}{scale})"), reads=[w.slot(of)])
    for step in reversed(backward_steps):
        for k, (arg, rule) in enumerate(zip(step.inputs, step.op.backward)):
            if arg in wanted and rule is not None:
                _backward_lines(w, step, k, arg, arg in has, saving)
                has.add(arg)
        if step.name not in keep and not floats:  # a float is too small to be worth freeing
            w.line(f"del {w.slot(step.name, 'g')}")
    zero = "0.0" if floats else "zeros_like(env[{!r}])"  # for a wrt vertex that `of` does not depend on
    grads = {n: w.slot(n, "g") if n in has else zero.format(n)
             for n in dict.fromkeys([*wrt, *sorted(keep, key=str)]) if n in has or n in wrt}
    values = [s.name for s in steps if returned is None or s.name in returned]
    w.line(f"return {_returned(w, values)}, {{{', '.join(f'{n!r}: {g}' for n, g in grads.items())}}}",
           reads=[w.slot(n) for n in values])
    if returned is not None and not floats:
        w.release({w.slot(n) for n in values})
    return w.compiled()


def _backward_lines(w: _Writer, step, k: int, arg: str, accumulate: bool, saving) -> None:
    """∂of/∂arg (+)= the vjp of input k of step, summed back to arg's shape where it may differ."""
    lift, g = w.lift(step), w.slot(step.name, "g")
    args = [w.slot(a) for a in step.inputs]
    out = w.slot(step.name, "r" if step.name in saving else "v")
    of, name, arg_name = _comment(w.of), _comment(step.name), _comment(arg)
    comment = f"  # ∂{of}/∂{arg_name} += ∂{name}/∂{arg_name}·∂{of}/∂{name}"
    slots = [g, out, *args]
    if lift is PER_SAMPLE:
        flags = tuple(a in w.batched for a in step.inputs)
        vjp = (f"per_sample_vjp({w.bind(step.op, step.op.name)}, {k}, {flags}, "
               f"{w.bind(w.attrs(step, lift), 'attrs')}, {g}, {out}, {', '.join(args)})")
        return _accumulate(w, step, arg, vjp, accumulate, comment, slots)
    attrs = w.attrs(step, lift)
    if lift is not None and lift.squeeze:
        g = f"expand_dims({g}, {lift.squeeze})"
        out = out if step.name in saving else f"expand_dims({out}, {lift.squeeze})"
    vjp, used = w.call(step.op.backward[k], [g, out, *_lifted_args(w, args, lift)], attrs, f"{step.op.name}_vjp{k}")
    reads = [slots[i] for i in used]
    expand = lift.expand[k] if lift is not None else ()
    if not _same_shape(w, step, k, lift):
        target, target_reads = _shape_of(w, arg, expand)
        w.line(f"t = {vjp}{comment}", step, reads)
        w.line(f"if t.shape != {target}: t = unbroadcast(t, {target})", step, target_reads)
        vjp, comment, reads = "t", "", []
    if expand:
        vjp = f"squeeze({vjp}, {expand})"  # undo the axes the lift inserted
    _accumulate(w, step, arg, vjp, accumulate, comment, reads)


def _shape_of(w: _Writer, arg: str, expand: tuple) -> tuple[str, list]:
    """A vertex's (lifted) shape as code: a literal when static, else read from its value (which that keeps alive)."""
    static = _static(w, arg)
    if static is not None and BATCH not in static and all(static == _static(w, arg, p) for p in _probes(w)):
        return repr(_expand_static(static, expand)), []
    x = w.slot(arg)
    return (f"{x}.shape" if not expand else f"expand_dims({x}, {expand}).shape"), [x]


def _accumulate(w: _Writer, step, arg: str, vjp: str, accumulate: bool, comment: str, reads) -> None:
    g = w.slot(arg, "g")
    w.line((f"{g} = {g} + {vjp}" if accumulate else f"{g} = {vjp}") + comment, step, reads)


def _same_shape(w: _Writer, step, k: int, lift) -> bool:
    """Whether rule k surely returns its input's (lifted) shape, so no sum back is needed.

    A rule returns its input's shape, or, for an op whose inputs broadcast together, the
    broadcast shape: decided here from static shapes when they are known.
    """
    if lift is PER_SAMPLE or not step.op.broadcasts:
        return True
    if step.op.elementwise and len(step.inputs) == 1:
        return True
    return all(_same_in_probe(w, step, k, lift, probe) for probe in _probes(w))


def _probes(w: _Writer) -> range:
    return range(len(w.probes) or 1)


def _same_in_probe(w: _Writer, step, k: int, lift, probe: int) -> bool:
    shapes = [_static(w, a, probe) for a in step.inputs]
    if None in shapes:
        return False
    if lift is not None:
        shapes = [_expand_static(s, axes) for s, axes in zip(shapes, lift.expand)]
    try:
        return shapes[k] == broadcast_shape(*shapes)
    except ValueError:
        return False


def _static(w: _Writer, name: str, probe: int = 0):
    """A vertex's full shape under this plan's batching (BATCH first when batched), with free sizes as
    they were probed (see probed_shapes), or None where a size is not known before running."""
    shape = w.probes[probe].get(name) if w.probes else w.graph.vertices[name].shape
    if shape is None or None in shape:
        return None
    return (BATCH, *shape) if name in w.batched else tuple(shape)


_PROBED = weakref.WeakKeyDictionary()  # graph -> probed_shapes(graph): graphs never change


def _primes(start: int, count: int) -> list:
    found, n = [], start
    while len(found) < count:
        n += 1
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            found.append(n)
    return found


@functools.lru_cache(maxsize=None)
def _probe_sizes(count: int) -> tuple:
    """Sizes standing for `count` free sizes in each probe: small ones (a size of 1 broadcasts, slices
    clamp), even and odd; and large odd primes and twice large primes (beyond the constants a model
    holds), between which no free size is a multiple or a fixed offset of another."""
    return (tuple(range(1, count + 1)), tuple(range(2, 2 * count + 2, 2)), tuple(range(3, 2 * count + 3, 2)),
            tuple(_primes(10**9, count)), tuple(2 * p for p in _primes(7 * 10**8, count)))  # made once per count


def probed_shapes(graph) -> tuple:
    """Every vertex's shape computed by the ops' shape rules in several probes, each free (null) input
    size standing for a distinct made-up number, different in each probe; () when no input has a
    free size.

    A size equal in every probe is static; one that differs derives from free sizes, and two such
    sizes that are equal in every probe are taken to be the same whatever the sizes at run time.
    This decides at compile time which gradients need summing back to their input's shape, for
    models written with a free batch size (`[null, 64]`) as for those batched by an extra axis.
    """
    free = [v for v in graph.of_kind("input") if v.shape is not None and None in v.shape]
    if not free:
        return ()
    probes = []
    for made_up in _probe_sizes(sum(v.shape.count(None) for v in free)):
        sizes = iter(made_up)
        shapes = {name: v.shape for name, v in graph.vertices.items() if v.kind != "node"}
        for v in free:
            shapes[v.name] = tuple(next(sizes) if d is None else d for d in v.shape)
        for step in graph.steps:
            try:
                shapes[step.name] = step.op.shape(*(shapes[a] for a in step.inputs), **step.attrs)
            except (ValueError, TypeError, IndexError, ArithmeticError, KeyError):
                shapes[step.name] = None
        probes.append(shapes)
    return tuple(probes)


def _expand_static(shape: tuple, axes: tuple) -> tuple:
    out = list(shape)
    rank = len(shape) + len(axes)
    for a in sorted(a % rank for a in axes):
        out.insert(a, 1)
    return tuple(out)
