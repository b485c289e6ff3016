"""From a parsed document to a checked Model: the boundary where everything is validated once.

Checks, all collected before raising: the schema; names defined twice; unknown ops;
undefined references; arity; attributes; outputs and loss; cycles; static shapes.
After this the interpreter trusts the graph.
"""
from __future__ import annotations

import hashlib
import io
import math
import zipfile
from pathlib import Path
from types import MappingProxyType

import networkx as nx
import numpy as np

from . import schema
from ..errors import GraphDefError, Problem, did_you_mean
from .functions import expand
from .initializers import initialize
from ..engine.graph import Graph, Vertex, topological_order
from ..engine.model import Model
from ..ops import OPS
from ..ops.registry import bind_attrs, show_shape
from ..pause_gc import without_gc
from .source import LIMITS, Limits, Source, parse, read_file

DTYPES = ("float32", "float64")
SECTIONS = {"inputs": "input", "parameters": "parameter", "constants": "constant", "nodes": "node"}
NODE_KEYS = ("op", "inputs", "description")


def load(path, *, seed: int | None = None, dtype: str | None = None, allow_outside_weights: bool = False,
         limits: Limits = LIMITS) -> Model:
    """Load and validate a model file.

    Parameters with an `init` are drawn with `seed` (default: the model's training.seed, else 0).
    A trained model's weights file must sit in the model's folder (or below it) unless
    `allow_outside_weights` is set: a shared model file cannot make graphdef read elsewhere.
    `dtype` (float32, float64) overrides the model's. `limits` bounds what a file may ask
    for (size, values, nesting, vertices).
    """
    with without_gc():
        return build(read_file(path, limits), seed=seed, dtype=dtype, allow_outside_weights=allow_outside_weights,
                     limits=limits)


def loads(text: str, *, seed: int | None = None, dtype: str | None = None, file: str | None = None,
          allow_outside_weights: bool = False, limits: Limits = LIMITS) -> Model:
    """Load and validate a model from YAML text (weights files are then relative to the working folder)."""
    with without_gc():
        return build(parse(text, file, limits), seed=seed, dtype=dtype, allow_outside_weights=allow_outside_weights,
                     limits=limits)


def from_document(doc: dict, *, file: str | None = None, **options) -> Model:
    """Load and validate a model from its document (parsed YAML, or built in Python: ONNX import, resume).

    `file` names where relative paths (weights, includes) start from; the options are load's.
    """
    with without_gc():
        return build(Source(doc, file), **options)


def build(source: Source, *, seed: int | None = None, dtype: str | None = None, allow_outside_weights: bool = False,
          limits: Limits = LIMITS) -> Model:
    problems = schema.check(source)
    if problems:
        raise GraphDefError(problems)
    if dtype is not None:
        if dtype not in DTYPES:
            raise GraphDefError(Problem(f"unknown dtype '{dtype}'", hint=f"use one of: {', '.join(DTYPES)}"))
        source = Source({**source.data, "dtype": dtype}, source.file, source.positions)
    if seed is None:
        seed = (source.data.get("training") or {}).get("seed", 0)
    expanded = expand(source)
    size = sum(len(expanded.data.get(k) or {}) for k in SECTIONS)
    if size > limits.max_vertices:
        raise GraphDefError(Problem(f"the model has {size:,} vertices, more than {limits.max_vertices:,}", source.file,
                                    hint=limits.exceeded("max_vertices")))
    declared = sum(math.prod(p.get("shape") or []) for p in (expanded.data.get("parameters") or {}).values()
                   if isinstance(p.get("shape"), list) and all(isinstance(d, int) for d in p["shape"]))
    if declared > limits.max_parameter_values:
        raise GraphDefError(Problem(f"the parameters hold {declared:,} values, more than {limits.max_parameter_values:,}",
                                    source.file, hint=limits.exceeded("max_parameter_values")))
    return _Loader(expanded, seed, allow_outside_weights).model(source.data)


class _Loader:
    def __init__(self, source: Source, seed: int, allow_outside_weights: bool):
        self.source, self.doc = source, source.data
        self.dtype = np.dtype(self.doc.get("dtype", "float64"))
        self.rng = np.random.default_rng(seed)
        self.graph = nx.MultiDiGraph()
        self.problems = []
        self.weights = _Weights(source, allow_outside_weights) if "weights" in self.doc else None

    def error(self, path: tuple, message: str, hint: str | None = None):
        self.problems.append(self.source.problem(path, message, hint))

    def model(self, doc: dict) -> Model:
        """The checked Model; `doc` is the document as written (before function calls were expanded)."""
        self._declare()
        self._connect()
        self._check_targets()
        self._check_cycles()
        if not self.problems:
            self._infer_shapes()
        if self.problems:
            raise GraphDefError(sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0)))
        return Model(self._frozen(), doc, self.source)

    def _frozen(self) -> Graph:
        """The checked graph as records: nothing after the loader changes it."""
        return Graph(Vertex(n, v["kind"], v.get("shape"), v.get("op"), v.get("args", ()),
                            MappingProxyType(v.get("attrs", {})), v.get("value"), self.dtype.name,
                            *v["position"][:2], v.get("call"), v.get("init"))
                     for n, v in self.graph.nodes(data=True))

    # -- vertices -------------------------------------------------------------

    def _declare(self):
        for section, kind in SECTIONS.items():
            for name, spec in (self.doc.get(section) or {}).items():
                if name in self.graph:
                    first = self.graph.nodes[name]
                    self.error((section, name), f"'{name}' is already defined as {first['kind']} "
                               f"(line {first['position'][0]})", "give each input, parameter, constant and node its "
                               "own name")
                    continue
                position = self.source.positions.get((section, name), (None, None))
                self.graph.add_node(name, kind=kind, position=position, call=self.source.members.get(name),
                                    **getattr(self, f"_{kind}")(name, spec))

    def _input(self, name, spec):
        shape = spec.get("shape")
        return {"shape": None if shape is None else tuple(shape)}

    def _parameter(self, name, spec):
        path = ("parameters", name)
        if "weights" in spec:
            value = self._stored(path, spec)
        elif "value" in spec:
            value = self._array(path + ("value",), spec["value"], finite=True)
            if value is not None and "shape" in spec and list(value.shape) != spec["shape"]:
                self.error(path + ("shape",), f"value has shape {list(value.shape)} but shape says {spec['shape']}",
                           "make them agree, or drop shape")
        else:
            try:
                value = initialize(spec["init"], spec["shape"], self.rng).astype(self.dtype)
            except TypeError:
                value = None
                self.error(path + ("init",), "initializer setting does not apply to this initializer",
                           "normal takes mean, std; uniform takes low, high; constant takes value; others none")
            return {"value": value, "shape": None if value is None else value.shape, "init": spec["init"]}
        return {"value": value, "shape": None if value is None else value.shape}

    def _stored(self, path, spec):
        if self.weights is None:
            self.error(path + ("weights",), "the parameter refers to a weights file, but the model names none",
                       "add `weights: {file: weights.npz}` at the top level")
            return None
        try:
            value = self.weights.array(spec["weights"])
        except GraphDefError as e:
            self.problems += e.errors
            return None
        if value is None:
            self.error(path + ("weights",), f"array '{spec['weights']}' is missing from {self.weights.path.name}",
                       "the weights file does not belong to this model; save the model again")
        elif list(value.shape) != spec["shape"] or not np.issubdtype(value.dtype, np.floating):
            self.error(path, f"stored array has shape {list(value.shape)} and dtype {value.dtype}, "
                       f"expected shape {spec['shape']} of floats", "the weights file does not match this model")
            value = None
        return None if value is None else value.astype(self.dtype)

    def _constant(self, name, spec):
        value = self._array(("constants", name), spec)
        return {"value": value, "shape": None if value is None else value.shape}

    def _node(self, name, spec):
        return {"op": OPS.get(spec["op"]), "attrs": {}, "args": ()}

    def _array(self, path, literal, finite: bool = False):
        """A literal as an array; NaN is refused (and infinity too where `finite`): a value no model means."""
        try:
            value = np.array(literal, dtype=self.dtype)
        except ValueError:
            self.error(path, "not a rectangular array of numbers", "every row must have the same length")
            return None
        if np.isnan(value).any() or finite and not np.isfinite(value).all():
            self.error(path, f"the value contains {'NaN' if np.isnan(value).any() else 'infinity'}",
                       "write a finite number")
            return None
        return value

    # -- edges and op checks ------------------------------------------------------

    def _connect(self):
        names = [n for n in self.graph if self.graph.nodes[n]["kind"] != "literal"]
        for name, spec in (self.doc.get("nodes") or {}).items():
            path = ("nodes", name)
            if self.graph.nodes[name].get("kind") != "node":
                continue  # a duplicate name, already reported
            args = []
            for i, ref in enumerate(spec["inputs"]):
                if not isinstance(ref, str):
                    ref = self._literal(name, i, ref)
                elif ref not in self.graph:
                    self.error(path + ("inputs", i), f"undefined reference '{ref}'",
                               did_you_mean(ref, names) or "define it under inputs, parameters, constants or nodes")
                    continue
                self.graph.add_edge(ref, name, key=i, arg=i)
                args.append(ref)
            self.graph.nodes[name]["args"] = tuple(args)
            op = self._op(path, spec)
            if op is not None:
                self.graph.nodes[name]["attrs"] = self._attrs(path, op, spec)

    def _literal(self, node: str, i: int, value) -> str:
        name = f"{node}[{i}]"
        position = self.source.positions.get(("nodes", node, "inputs", i), (None, None))
        self.graph.add_node(name, kind="literal", position=position, call=self.source.members.get(node),
                            value=self._array(("nodes", node, "inputs", i), value), shape=())
        return name

    def _op(self, path, spec):
        op = OPS.get(spec["op"])
        if op is None:
            self.error(path + ("op",), f"unknown op '{spec['op']}'",
                       did_you_mean(spec["op"], OPS) or "run `graphdef ops` to list the ops")
        elif len(spec["inputs"]) != op.arity:
            self.error(path + ("inputs",), f"op '{op.name}' takes {op.arity} input{'s' * (op.arity != 1)} "
                       f"({', '.join(op.args)}), got {len(spec['inputs'])}", f"usage: {op.signature()}")
        return op

    def _attrs(self, path, op, spec) -> dict:
        """The node's attributes, checked, with defaults filled in so every rule sees every one."""
        given = {k: v for k, v in spec.items() if k not in NODE_KEYS}
        values, problems = bind_attrs(f"op '{op.name}'", op.attrs, given, op.signature())
        for key, message, hint in problems:
            self.error(path + ((key,) if key else ()), message, hint)
        return op.bind(values)

    def _check_targets(self):
        for i, name in enumerate(self.doc["outputs"]):
            if name not in self.graph:
                self.error(("outputs", i), f"undefined output '{name}'", did_you_mean(name, self.graph))
        loss = self.doc.get("loss")
        if loss is not None and loss not in self.graph:
            self.error(("loss",), f"undefined loss '{loss}'", did_you_mean(loss, self.graph))

    # -- whole-graph checks ---------------------------------------------------------

    def _check_cycles(self):
        for component in nx.strongly_connected_components(self.graph):
            first = next(iter(component))
            if len(component) > 1 or self.graph.has_edge(first, first):
                cycle = [u for u, *_ in nx.find_cycle(self.graph.subgraph(component))]
                self.error(("nodes", cycle[0], "inputs"), "cycle: " + " -> ".join(cycle + cycle[:1]),
                           "a node cannot depend on itself; break the cycle")

    def _infer_shapes(self):
        for name in topological_order(self.graph):
            v = self.graph.nodes[name]
            if v["kind"] != "node":
                continue
            shapes = [self.graph.nodes[a]["shape"] for a in v["args"]]
            try:
                v["shape"] = v["op"].shape(*shapes, **v["attrs"])
            except (ValueError, TypeError, IndexError) as e:
                v["shape"] = None
                given = ", ".join(f"{a} {show_shape(s)}" for a, s in zip(v["args"], shapes))
                self.error(("nodes", name), f"{e}", f"inputs: {given}")
        loss = self.doc.get("loss")
        if loss is not None and self.graph.nodes[loss]["shape"] not in (None, ()):
            self.error(("loss",), f"loss '{loss}' must be a scalar, its shape is {show_shape(self.graph.nodes[loss]['shape'])}",
                       "reduce it with sum or mean")



class _Weights:
    """The weights file of a trained model: found, confined to the model's folder, hash-checked, read once."""

    def __init__(self, source: Source, allow_outside: bool):
        self.source, self.allow_outside, self.arrays = source, allow_outside, None
        base = Path(source.file).resolve().parent if source.file else Path.cwd()
        self.base, self.path = base, (base / source.data["weights"]["file"]).resolve()

    def fail(self, key, message, hint=None):
        raise GraphDefError(self.source.problem(("weights", key), message, hint))

    def array(self, key: str):
        if self.arrays is None:
            self.arrays = self._read()
        return self.arrays.get(key)

    def _read(self) -> dict:
        if not self.allow_outside and not self.path.is_relative_to(self.base):
            self.fail("file", f"weights file {self.path} is outside the model's folder",
                      "move it beside the model, or allow it explicitly (allow_outside_weights)")
        try:
            blob = self.path.read_bytes()
        except OSError as e:
            self.fail("file", f"cannot read weights file {self.path}: {e.strerror or e}", "check the path")
        expected = self.source.data["weights"].get("sha256")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            self.fail("sha256", f"weights file {self.path.name} does not match its SHA-256",
                      "the file was changed or corrupted; save or train the model again")
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            self.fail("file", f"weights file {self.path.name} is unreadable: {e}", "it is truncated or corrupted")
