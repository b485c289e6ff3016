"""A loaded, validated model: its NetworkX graph, its values, and the three gradient methods."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from . import compile as interpreter, paths
from ..format import serialize
from ..errors import GraphDefError, Problem, did_you_mean
from .compile import Step, StepError
from ..ops.registry import show_shape
from ..pause_gc import without_gc

METHODS = ("reverse", "paths", "numeric")
NUMERIC_EPS = 1e-6


@dataclass(frozen=True)
class Trace:
    of: str
    wrt: list
    values: dict  # vertex -> value
    grads: dict  # vertex on a path from wrt to of -> ∂of/∂vertex
    steps: tuple  # the backward plan's steps
    wanted: frozenset  # the vertices on those paths


class Model:
    """A computation graph loaded from YAML.

    `graph` is a networkx.MultiDiGraph: one vertex per input, parameter, constant, literal
    and node (attribute `kind`), one edge per use keyed by argument position, so a node
    using a value twice has two edges. `parameters` maps names to arrays (training updates them).
    """

    def __init__(self, graph: nx.MultiDiGraph, doc: dict, source=None):
        self.graph, self.doc, self.source = graph, doc, source
        self.name = doc["name"]
        self.description = doc.get("description", "")
        self.dtype = np.dtype(doc.get("dtype", "float64"))
        self.outputs = list(doc["outputs"])
        self.loss = doc.get("loss")
        self.inputs = {n: v["shape"] for n, v in self._vertices("input")}
        self.parameters = {n: v["value"] for n, v in self._vertices("parameter")}
        self.constants = {n: v["value"] for n, v in self._vertices("constant", "literal")}
        order = topological_order(graph)
        self.steps = tuple(Step(n, graph.nodes[n]["op"], graph.nodes[n]["args"], graph.nodes[n]["attrs"])
                           for n in order if graph.nodes[n]["kind"] == "node")
        self._plans = {}
        self._scalars = frozenset(n for n, v in self._vertices("parameter", "constant", "literal") if v["shape"] == ())
        shapes = dict(graph.nodes(data="shape"))
        self._shapes = shapes if all(s is not None and None not in s for s in shapes.values()) else None
        # every value a float64 scalar: plans may run on Python floats (interpreter.FloatMath)
        self._floats = self.dtype == np.float64 and self._shapes is not None and not any(shapes.values())

    def save(self, directory) -> Path:
        """Write model.yaml and weights.npz into `directory` (atomically); returns the model.yaml path."""
        return serialize.save(self, directory)

    def __repr__(self):
        return f"<graphdef.Model '{self.name}': {len(self.graph)} vertices, outputs {self.outputs}>"

    def _vertices(self, *kinds):
        return [(n, v) for n, v in self.graph.nodes(data=True) if v["kind"] in kinds]

    # -- running ------------------------------------------------------------------

    def forward(self, inputs: dict, params: dict | None = None, outputs=None) -> dict:
        """Every vertex's value (numpy arrays) for the given inputs (and parameter overrides).

        With `outputs`, only what those vertices need is computed, and only their inputs are required.
        """
        needed = None if outputs is None else [n for n in self.inputs if n in self.ancestors(outputs)]
        return _arrays(self.run_unchecked(self._feed(inputs, params, needed), outputs))

    def ancestors(self, names) -> set:
        """The vertices that `names` depend on, themselves included."""
        return set(names).union(*(nx.ancestors(self.graph, n) for n in names))

    def gradients(self, inputs: dict, of: str | None = None, wrt=None, method: str = "reverse") -> dict:
        """∂of/∂w for each w in wrt (default: every input and parameter).

        `of` defaults to the loss, else the single output; for a non-scalar `of` this is
        the gradient of its sum. method: reverse (backpropagation), paths (the sum over
        paths of edge-derivative products; scalar graphs) or numeric (central differences).
        """
        if method != "reverse":
            return self.value_and_gradients(inputs, of, wrt, method)[1]
        of, wrt = self.resolve(of, wrt)
        return _arrays(self._backprop(self._feed(inputs), of, wrt, (), (of,))[1])

    def value_and_gradients(self, inputs: dict, of: str | None = None, wrt=None, method: str = "reverse"):
        """(every vertex's value, gradients) in one forward pass; see `gradients`."""
        of, wrt = self.resolve(of, wrt)
        if method not in METHODS:
            raise GraphDefError(Problem(f"unknown gradient method '{method}'", hint=f"use one of: {', '.join(METHODS)}"))
        env = self._feed(inputs)
        if method == "numeric":
            return _arrays(self.run_unchecked(dict(env))), self._numeric(env, of, wrt)
        if method == "paths":
            values = self.run_unchecked(dict(env))
            steps, wanted = self.backward_plan(of, tuple(wrt))
            return _arrays(values), paths.path_gradients(self.graph, steps, values, of, wrt, wanted)
        values, grads = self.backprop(env, of, wrt)
        return _arrays(values), _arrays(grads)

    def trace(self, inputs: dict, of: str | None = None, wrt=None) -> "Trace":
        """One forward and one backward pass, keeping ∂of/∂v for every vertex v on the way (to explain or draw)."""
        of, wrt = self.resolve(of, wrt)
        steps, wanted = self.backward_plan(of, tuple(wrt))
        values, grads = self.backprop(self._feed(inputs), of, wrt, keep=wanted)
        return Trace(of, wrt, _arrays(values), _arrays(grads), steps, wanted)

    def run_unchecked(self, env: dict, outputs=None) -> dict:
        """Forward over an environment already holding the inputs, parameters and constants (no checks)."""
        computed = self._run(lambda floats: self._forward_plan(tuple(outputs or ()), floats), env,
                             self._floats and self._exact(env))
        return {**env, **computed}

    def _forward_plan(self, outputs: tuple, floats: bool) -> interpreter.Compiled:
        key = ("forward", outputs, floats)
        plan = self._plans.get(key)
        if plan is None:
            with without_gc():
                plan = self._plans[key] = interpreter.compile_forward(self._forward_steps(outputs), self._scalars,
                                                                      floats)
        return plan

    def backprop(self, env: dict, of: str, wrt, keep=(), outputs=None) -> tuple[dict, dict]:
        """(values, ∂of/∂w for w in wrt) by reverse mode, on an unchecked environment (see run_unchecked).

        `keep` names further vertices whose gradients to return; `outputs` limits the forward
        pass to what they (and `of`) need, and the values returned to theirs (the others are
        freed as soon as they have been used: less memory on big batches).
        """
        computed, grads = self._backprop(env, of, wrt, keep, outputs)
        return {**env, **computed}, grads

    def _backprop(self, env: dict, of: str, wrt, keep, outputs) -> tuple[dict, dict]:
        exact = self._exact(env)
        return self._run(lambda floats: self.compiled_backprop(of, wrt, keep, outputs, exact, floats), env, exact)

    def compiled_backprop(self, of: str, wrt, keep=(), outputs=None, exact: bool = False,
                          floats: bool = False) -> interpreter.Compiled:
        """The generated forward-and-backward function for these arguments, made once and cached.

        `exact`: every input has exactly its declared shape (no batch), so all shapes are static.
        `floats`: every value is a scalar, computed on Python floats.
        """
        key = ("backprop", of, tuple(wrt), frozenset(keep), tuple(outputs or ()), exact, floats)
        plan = self._plans.get(key)
        if plan is None:
            steps, wanted = self.backward_plan(of, tuple(wrt))
            forward = self._forward_steps(tuple(outputs) + (of,)) if outputs else self.steps
            returned = None if not outputs else {*outputs, of}
            with without_gc():
                plan = self._plans[key] = interpreter.compile_backprop(
                    forward, steps, of, wrt, wanted, keep, self._scalars, self._shapes if exact else None, returned,
                    floats)
        return plan

    def _exact(self, env: dict) -> bool:
        """Whether every input in env has exactly its declared shape (then every value has its static shape)."""
        if self._shapes is None:
            return False
        for name, shape in self.inputs.items():
            if name in env and env[name].shape != shape:
                return False
        return True

    def _forward_steps(self, outputs: tuple) -> tuple:
        """The steps that computing `outputs` needs (all steps when none are named)."""
        if not outputs:
            return self.steps
        needed = self.ancestors(outputs)
        return tuple(s for s in self.steps if s.name in needed)

    def _run(self, plan, env: dict, exact: bool):
        """plan(floats)(env), on Python floats when every value is a scalar, else (or on a fault) on numpy values."""
        if exact and self._floats:
            try:
                return plan(True)(env)
            except StepError as e:  # numpy gives inf or NaN here, or the rule needs numpy values
                if not isinstance(e.cause, (ArithmeticError, ValueError)):
                    self._floats = False
        try:
            return plan(False)(env)
        except StepError as e:
            raise GraphDefError(self.problem(e.step.name, f"node '{e.step.name}' ({e.step.op.name}) failed: {e}",
                                             "check the shapes and values of its inputs")) from None

    def backward_plan(self, of: str, wrt: tuple):
        """(steps, vertices) on some path from a wrt vertex to `of`: all that backward needs to visit."""
        if ("backward", of, wrt) not in self._plans:
            ancestors = nx.ancestors(self.graph, of) | {of}
            wanted = frozenset(_reachable(self.graph, [w for w in wrt if w in ancestors]) & ancestors)
            self._plans[("backward", of, wrt)] = tuple(s for s in self.steps if s.name in wanted), wanted
        return self._plans[("backward", of, wrt)]

    def _numeric(self, env: dict, of: str, wrt) -> dict:
        env = {k: np.array(v, dtype=np.float64) for k, v in env.items()}
        total = lambda: float(np.sum(self.run_unchecked(dict(env))[of]))  # noqa: E731
        grads = {}
        for w in wrt:
            x, g = env[w], np.zeros_like(env[w])
            for i in np.ndindex(x.shape):
                x[i] += NUMERIC_EPS
                up = total()
                x[i] -= 2 * NUMERIC_EPS
                down = total()
                x[i] += NUMERIC_EPS
                g[i] = (up - down) / (2 * NUMERIC_EPS)
            grads[w] = g.astype(self.dtype)
        return grads

    def check_numerics(self, values: dict, grads: dict | None = None, of: str | None = None) -> None:
        """Raise at the first vertex (in run order) whose value is NaN or infinite, naming its op and the
        ranges of its inputs; then likewise for gradients, in backward order."""
        for step in self.steps:
            value = values.get(step.name)
            if value is not None and not np.all(np.isfinite(value)):
                ranges = ", ".join(f"{a} in {_range(values[a])}" for a in step.args)
                raise GraphDefError(self.problem(step.name, f"node '{step.name}' ({step.op.name}) produced "
                                                 f"{_kind_of(value)} from {ranges}", NUMERIC_HINTS.get(
                                                     step.op.name, "check the ranges of its inputs")))
        for name, g in (grads or {}).items():
            if not np.all(np.isfinite(g)):
                raise GraphDefError(self.problem(name, f"the gradient ∂{of}/∂{name} is {_kind_of(g)}",
                                                 "a rule divided by zero or overflowed on the way back"))

    # -- checking what the caller asked for -------------------------------------------

    def _feed(self, inputs: dict, params: dict | None = None, needed=None) -> dict:
        """The starting environment: constants, parameters and validated inputs (all, or those needed)."""
        if not isinstance(inputs, dict):
            raise GraphDefError("inputs must be a mapping: name -> value")
        problems = [Problem(f"unknown input '{n}'", hint=did_you_mean(n, self.inputs)
                            or f"the model's inputs: {', '.join(self.inputs) or 'none'}")
                    for n in inputs if n not in self.inputs]
        env = {**self.constants, **self.parameters, **(params or {})}
        for name, shape in self.inputs.items():
            if needed is not None and name not in needed and name not in inputs:
                continue
            if name not in inputs:
                problems.append(self.problem(name, f"missing input '{name}'", f"give a value for '{name}'"))
                continue
            value, problem = self._array(name, inputs[name], shape)
            env[name] = value
            if problem:
                problems.append(problem)
        if problems:
            raise GraphDefError(problems)
        return env

    def _array(self, name: str, raw, shape):
        try:  # a number becomes a numpy scalar: arithmetic on it is much faster than on a 0-d array
            if type(raw) in (float, int):
                value = self.dtype.type(raw)
            elif type(raw) is not self.dtype.type:
                value = np.asarray(raw, dtype=self.dtype)
                value = value[()] if value.ndim == 0 else value
            else:
                value = raw
        except (ValueError, TypeError):
            return None, self.problem(name, f"input '{name}' is not numeric: {str(raw)[:40]!r}",
                                      "give a number or a (nested) list of numbers")
        if not (math.isfinite(value) if value.ndim == 0 else np.isfinite(value).all()):
            return None, self.problem(name, f"input '{name}' contains NaN or infinity", "clean the data")
        if shape is not None and value.shape != shape and not _fits(value.shape, shape):
            return None, self.problem(name, f"input '{name}' has shape {list(value.shape)}, expected "
                                      f"{show_shape(shape)}", "an extra leading batch dimension is also accepted")
        return value, None

    def resolve(self, of: str | None = None, wrt=None) -> tuple[str, list]:
        """(vertex to differentiate, vertices to differentiate by): checked, with the defaults applied."""
        return self._target(of), self._wrt(wrt)

    def _target(self, of: str | None) -> str:
        if of is None:
            if self.loss is None and len(self.outputs) != 1:
                raise GraphDefError(Problem(f"the model has {len(self.outputs)} outputs and no loss",
                                            hint="say which vertex to differentiate with of=NAME"))
            of = self.loss or self.outputs[0]
        if of not in self.graph or self.graph.nodes[of]["kind"] == "literal":
            raise GraphDefError(Problem(f"no vertex named '{of}'", hint=did_you_mean(of, self.graph)))
        return of

    def _wrt(self, wrt) -> list:
        if wrt is None:
            return [*self.inputs, *self.parameters]
        wrt = [wrt] if isinstance(wrt, str) else list(wrt)
        leaves = [*self.inputs, *self.parameters, *(n for n, _ in self._vertices("constant"))]
        bad = [w for w in wrt if w not in leaves]
        if bad:
            raise GraphDefError([Problem(f"cannot differentiate with respect to '{w}'",
                                         hint=did_you_mean(w, leaves) or "use an input, parameter or constant")
                                 for w in bad])
        return wrt

    def problem(self, vertex: str, message: str, hint: str | None = None) -> Problem:
        """A Problem located where `vertex` is declared in the model file."""
        section = {"input": "inputs", "parameter": "parameters", "constant": "constants", "node": "nodes"}
        kind = self.graph.nodes[vertex]["kind"] if vertex in self.graph else None
        return self.locate((section[kind], vertex) if kind in section else (), message, hint)

    def locate(self, path: tuple, message: str, hint: str | None = None) -> Problem:
        """A Problem at `path` in the model file (unlocated for a model built from data)."""
        return self.source.problem(path, message, hint) if self.source else Problem(message, hint=hint)


def topological_order(graph) -> list:
    """Vertices in an order where each comes after its inputs, as close to the file's order as possible."""
    position = {n: i for i, n in enumerate(graph)}
    if all(position[u] < position[v] for u, v in graph.edges()):
        return list(graph)  # written in order already: the common case, checked in one sweep
    return list(nx.lexicographical_topological_sort(graph, key=position.get))


def _reachable(graph, sources) -> set:
    """Every vertex reachable from any of `sources` (themselves included), in one sweep."""
    seen, stack = set(sources), list(sources)
    while stack:
        for v in graph.successors(stack.pop()):
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


NUMERIC_HINTS = {
    "log": "log of zero gives -inf and of a negative number NaN: keep its input positive",
    "div": "division by zero: keep the divisor away from 0",
    "reciprocal": "1/0 is infinite: keep the input away from 0",
    "exp": "exp overflows above ~709 (float64) or ~88 (float32): scale the input down",
    "pow": "a negative base with a fractional exponent, or an overflow",
    "sqrt": "square root of a negative number",
    "cross_entropy": "log of a zero probability: use softmax_cross_entropy on logits instead",
}


def _range(value) -> str:
    value = np.asarray(value)
    return f"[{np.nanmin(value):.4g}, {np.nanmax(value):.4g}]" if value.size and not np.all(np.isnan(value)) else "[nan]"


def _kind_of(value) -> str:
    value = np.asarray(value)
    return "NaN" if np.any(np.isnan(value)) else "infinity"


def _arrays(env: dict) -> dict:
    return {k: np.asarray(v) for k, v in env.items()}


def _fits(actual: tuple, declared: tuple) -> bool:
    """Whether an array's shape matches a declared one, allowing one extra leading batch dimension."""
    if actual == declared:
        return True
    if len(actual) == len(declared) + 1:
        actual = actual[1:]
    return len(actual) == len(declared) and all(d is None or d == a for a, d in zip(actual, declared))
