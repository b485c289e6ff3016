"""From a parsed document to a checked Model: the boundary where everything is validated once.

Checks, all collected before raising: the schema; names defined twice; unknown ops;
undefined references; arity; attributes; outputs and loss; cycles; static shapes and sizes.
A vertex with a problem is kept as BROKEN, so the others are still checked in the same round.
After this the interpreter trusts the graph.
"""
from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from types import MappingProxyType

import numpy as np

from . import schema
from ..errors import GraphDefError, Problem, did_you_mean
from .functions import expand
from .initializers import initialize
from ..engine.graph import Graph, Vertex, topological_order
from ..engine.model import Model, training_seed
from ..ops import OPS
from ..ops.registry import DTypeError, bind_attrs, show_shape
from ..pause_gc import without_gc
from .source import BROKEN, LIMITS, MAX_RANK, Limits, Source, parse, read_file, read_regular, too_many_vertices

DTYPES = ("float32", "float64")
SECTIONS = {"inputs": "input", "parameters": "parameter", "state": "state", "constants": "constant", "nodes": "node"}
NODE_KEYS = ("op", "inputs", "description")
INDEPENDENT = ("name", "description", "training")  # top-level keys the graph does not depend on


def load(path, *, seed: int | None = None, dtype: str | None = None, allow_outside: bool = False,
         allow_outside_weights: bool = False, limits: Limits = LIMITS) -> Model:
    """Load and validate a model file.

    Parameters with an `init` are drawn with `seed` (default: the model's training.seed, else 0).
    The files a model names (includes, its weights file) must sit in the model's folder (or below
    it) unless `allow_outside` is set (`allow_outside_weights` is its former name): a shared model
    file cannot make graphdef read elsewhere. `dtype` (float32, float64) overrides the model's.
    `limits` bounds what a file may ask for (size, values, nesting, vertices, tensor sizes).
    A run's checkpoint (RUN_DIR/checkpoints/epoch-0003.npz) loads as the model it holds.
    """
    if Path(path).suffix == ".npz":
        from ..training.checkpoint import load_model
        return load_model(path, seed=seed, dtype=dtype, limits=limits)
    with without_gc():
        return build(read_file(path, limits), seed=seed, dtype=dtype, allow_outside=allow_outside,
                     allow_outside_weights=allow_outside_weights, limits=limits)


def loads(text: str, *, seed: int | None = None, dtype: str | None = None, file: str | None = None,
          allow_outside: bool = False, allow_outside_weights: bool = False, limits: Limits = LIMITS) -> Model:
    """Load and validate a model from YAML text (includes and weights are then relative to the working folder)."""
    with without_gc():
        return build(parse(text, file, limits), seed=seed, dtype=dtype, allow_outside=allow_outside,
                     allow_outside_weights=allow_outside_weights, limits=limits)


def from_document(doc: dict, *, file: str | None = None, **options) -> Model:
    """Load and validate a model from its document (parsed YAML, or built in Python: ONNX import, resume).

    `file` names where relative paths (weights, includes) start from; the options are load's.
    """
    with without_gc():
        return build(Source(doc, file), **options)


def build(source: Source, *, seed: int | None = None, dtype: str | None = None, allow_outside: bool = False,
          allow_outside_weights: bool = False, limits: Limits = LIMITS) -> Model:
    """The checked Model of a parsed document; every limit is checked before the work it bounds."""
    allow_outside = allow_outside or allow_outside_weights
    _check_vertices(source, limits)
    if dtype is not None and dtype not in DTYPES:
        raise GraphDefError(Problem(f"unknown dtype '{dtype}'", hint=f"use one of: {', '.join(DTYPES)}"))
    written, problems = _triaged(source)
    if dtype is not None:
        written = Source({**written.data, "dtype": dtype}, written.file, written.positions)
    expanded, more = expand(written, limits, allow_outside)
    _check_vertices(expanded, limits)
    _check_parameter_values(expanded, limits)
    doc = {**source.data, "dtype": dtype} if dtype is not None else source.data
    seed = training_seed(written.data) if seed is None else seed
    return _Loader(expanded, seed, allow_outside, limits, problems + more).model(doc)


def _triaged(source: Source) -> tuple[Source, list]:
    """The schema's problems, and the document with every vertex they concern set BROKEN so the loader
    checks all the others in the same round. Problems elsewhere (outputs, functions, weights...: what
    the whole graph depends on) are raised at once."""
    found = schema.located(source)
    if not found:
        return source, []
    vertex = lambda path: len(path) >= 2 and path[0] in SECTIONS  # noqa: E731
    known = schema.schema()["properties"]
    if any(not vertex(path) and (not path or path[0] in known and path[0] not in INDEPENDENT) for path, _ in found):
        raise GraphDefError([problem for _, problem in found])
    doc = dict(source.data)
    for section in {path[0] for path, _ in found if vertex(path)}:
        doc[section] = dict(doc[section])
    for path, _ in found:
        if vertex(path):
            doc[path[0]][path[1]] = BROKEN
    return Source(doc, source.file, source.positions), [problem for _, problem in found]


def _check_vertices(source: Source, limits: Limits) -> None:
    """A cheap count, before anything is validated or built (a parsed file was counted while read)."""
    doc = source.data
    if isinstance(doc, dict):
        size = sum(len(doc[k]) for k in SECTIONS if isinstance(doc.get(k), dict))
        if size > limits.max_vertices:
            raise too_many_vertices(size, limits, source.file)


def _check_parameter_values(source: Source, limits: Limits) -> None:
    """The values the parameters and the state declare, counted before any is drawn or read."""
    declared = sum(math.prod(p["shape"]) for section in ("parameters", "state")
                   for p in (source.data.get(section) or {}).values()
                   if isinstance(p, dict) and isinstance(p.get("shape"), list)
                   and all(isinstance(d, int) for d in p["shape"]))
    if declared > limits.max_parameter_values:
        raise GraphDefError(Problem(f"the parameters and state hold {declared:,} values, more than "
                                    f"{limits.max_parameter_values:,}", source.file,
                                    hint=limits.exceeded("max_parameter_values")))


class _Loader:
    def __init__(self, source: Source, seed: int, allow_outside: bool, limits: Limits, problems: list):
        self.source, self.doc, self.limits = source, source.data, limits
        self.dtype = np.dtype(self.doc.get("dtype", "float64"))
        self.float = self.dtype.name  # read once: numpy works the name out on every access
        self.rng = np.random.default_rng(seed)
        self.vertices = {}  # name -> its attributes (kind, shape, op, args...), in the file's order
        self.problems = list(problems)  # found before (schema, calls): their vertices are BROKEN
        self.broken = set()  # vertices with a problem: the others are still checked, these no further
        self.updated = {}  # state vertex -> the node whose op updates it
        self.defaults = {}  # op name -> its attributes bound with every default, shared by the nodes giving none
        self.weights = _Weights(source, allow_outside, limits, self.error) if "weights" in self.doc else None

    def error(self, path: tuple, message: str, hint: str | None = None):
        self.problems.append(self.source.problem(path, message, hint))
        if len(path) > 1 and path[0] in SECTIONS:
            self.broken.add(path[1])

    def model(self, doc: dict) -> Model:
        """The checked Model; `doc` is the document as written (before function calls were expanded)."""
        self._one_vertex_per_output()
        self._declare()
        self._connect()
        self._check_targets()
        order = self._ordered()
        if order is not None:
            self._infer_shapes(order)
        self._check_sizes()
        if self.problems:
            raise GraphDefError(sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0)))
        return Model(self._frozen(order), doc, self.source)

    def _frozen(self, order: list) -> Graph:
        """The checked graph as records: nothing after the loader changes it."""
        return Graph((Vertex(n, v["kind"], v.get("shape"), v.get("op"), v.get("args", ()),
                             MappingProxyType(v.get("attrs", {})), v.get("value"), v.get("dtype") or self.float,
                             *v["position"][:2], v.get("call"), v.get("init"))
                      for n, v in self.vertices.items()), order)

    # -- vertices -------------------------------------------------------------

    def _declare(self):
        for section, kind in SECTIONS.items():
            declare = getattr(self, f"_{kind}")
            for name, spec in (self.doc.get(section) or {}).items():
                if name in self.vertices:
                    first = self.vertices[name]
                    self.error((section, name), f"'{name}' is already defined as {first['kind']} "
                               f"(line {first['position'][0]})", "give each input, parameter, constant and node its "
                               "own name")
                    continue
                position = self.source.positions.get((section, name), (None, None))
                if spec is BROKEN:
                    self.broken.add(name)
                    self.vertices[name] = {"kind": kind, "shape": None, "op": None, "attrs": {}, "args": (),
                                           "position": position}
                    continue
                self.vertices[name] = {"kind": kind, "position": position, "call": self.source.members.get(name),
                                       **declare(name, spec)}

    def _one_vertex_per_output(self):
        """A node of an op with several outputs becomes one vertex per output: NODE computes output 0,
        NODE/1, NODE/2... the others (each with the loader-set attribute `output`)."""
        nodes = self.doc.get("nodes") or {}
        if not any(spec is not BROKEN and getattr(OPS.get(spec["op"]), "outputs", None) for spec in nodes.values()):
            return
        split, positions = {}, dict(self.source.positions)
        calls, members = dict(self.source.calls), dict(self.source.members)
        placed = {}  # node -> its positions, grouped once (a scan per output would be quadratic)
        for path, where in self.source.positions.items():
            if len(path) >= 2 and path[0] == "nodes":
                placed.setdefault(path[1], []).append((path, where))
        for name, spec in nodes.items():
            op = OPS.get(spec["op"]) if spec is not BROKEN else None
            if op is not None and op.outputs and "output" in spec:
                self.error(("nodes", name, "output"), f"op '{op.name}' has no attribute 'output'",
                           f"its outputs are {name}, {name}/1, ...: name the one you need where it is used")
            count = _output_count(op, spec) if op is not None and op.outputs else 0
            if count > self.limits.max_vertices:
                self.error(("nodes", name), f"{op.name} into {count:,} outputs: more vertices than "
                           f"{self.limits.max_vertices:,}", self.limits.exceeded("max_vertices"))
                count = 1
            split[name] = {**spec, "output": 0} if count else spec
            for i in range(1, count):
                if f"{name}/{i}" in nodes:
                    self.error(("nodes", f"{name}/{i}"), f"'{name}/{i}' is defined twice: by the model and as output "
                               f"{i} of '{name}' ({op.name})", "rename the node")
                    continue
                split[f"{name}/{i}"] = {**spec, "output": i}
                positions.update({("nodes", f"{name}/{i}") + path[2:]: where for path, where in placed.get(name, ())})
                for table in (calls, members):  # the call the node came from, for errors and drawings
                    if name in table:
                        table[f"{name}/{i}"] = table[name]
        self.doc = {**self.doc, "nodes": split}
        self.source = Source(self.doc, self.source.file, positions, calls, members)

    def _input(self, name, spec):
        shape = spec.get("shape")
        return {"shape": None if shape is None else tuple(shape), "dtype": self._dtype(spec.get("dtype"))}

    def _dtype(self, declared: str | None) -> str:
        """A declared dtype (float, int64, bool) as numpy names it; float is the model's float type."""
        return self.float if declared in (None, "float") else declared

    def _state(self, name, spec):
        return self._parameter(name, spec, "state")

    def _parameter(self, name, spec, section="parameters"):
        path = (section, name)
        if "weights" in spec:
            value = self._stored(path, spec)
        elif "value" in spec:
            value = self._array(path + ("value",), spec["value"])
            if value is not None and "shape" in spec and list(value.shape) != spec["shape"]:
                self.error(path + ("shape",), f"value has shape {list(value.shape)} but shape says {spec['shape']}",
                           "make them agree, or drop shape")
        else:
            try:
                value = initialize(spec["init"], spec["shape"], self.rng, self.dtype)
            except ValueError as e:
                value = None
                self.error(path + ("init",), f"initializer: {e}",
                           "normal takes mean, std >= 0; uniform takes low <= high; constant takes value; others none")
            return {"value": value, "shape": None if value is None else value.shape, "init": spec["init"]}
        return {"value": value, "shape": None if value is None else value.shape}

    def _stored(self, path, spec):
        if self.weights is None:
            self.error(path + ("weights",), "the parameter refers to a weights file, but the model names none",
                       "add `weights: {file: weights.npz}` at the top level")
            return None
        value = self.weights.array(spec["weights"], spec["shape"], path)
        return None if value is None else value.astype(self.dtype, copy=False)

    def _constant(self, name, spec):
        path, dtype = ("constants", name), self.float
        if isinstance(spec, dict):
            spec, dtype, path = spec["value"], self._dtype(spec.get("dtype")), path + ("value",)
        value = self._array(path, spec, dtype)
        return {"value": value, "shape": None if value is None else value.shape, "dtype": dtype}

    def _node(self, name, spec):
        return {"op": OPS.get(spec["op"]), "attrs": {}, "args": (), "shape": None}

    def _array(self, path, literal, dtype=None):
        """A literal as an array; NaN and infinity (or a number too large for the dtype) are refused: no
        model means them, and they would poison every value they reach."""
        try:
            with np.errstate(over="ignore"):
                value = np.array(literal, dtype=self.dtype if dtype is None else dtype)
        except (ValueError, TypeError, OverflowError):
            self.error(path, "not a rectangular array of numbers", "every row must have the same length")
            return None
        if value.dtype.kind in "ib":
            exact = np.array(literal, dtype=float)
            if not np.array_equal(value, exact):
                self.error(path, f"the value is not made of {value.dtype.name} numbers",
                           "write whole numbers (0 or 1 for bool), or drop the dtype")
                return None
            return value
        if not np.isfinite(value).all():
            nan = np.isnan(value).any()
            self.error(path, f"the value contains {'NaN' if nan else 'infinity'}" + ("" if nan else
                       f" (or a number too large for {self.dtype.name})"), "write a finite number")
            return None
        return value

    # -- edges and op checks ------------------------------------------------------

    def _connect(self):
        names = [n for n, v in self.vertices.items() if v["kind"] != "literal"]
        for name, spec in (self.doc.get("nodes") or {}).items():
            path = ("nodes", name)
            if spec is BROKEN or self.vertices[name].get("kind") != "node":
                continue  # reported already: a duplicate name, or a vertex with problems
            args = []
            for i, ref in enumerate(spec["inputs"]):
                if not isinstance(ref, str):
                    ref = self._literal(name, i, ref)
                elif ref not in self.vertices:
                    self.error(path + ("inputs", i), f"undefined reference '{ref}'",
                               did_you_mean(ref, names) or "define it under inputs, parameters, constants or nodes")
                    continue
                args.append(ref)
            self.vertices[name]["args"] = tuple(args)
            op = self._op(path, spec)
            if op is not None:
                self.vertices[name]["attrs"] = self._attrs(path, op, spec)
                self._check_state(path, op, args)

    def _check_state(self, path, op, args):
        """An op's state inputs (running statistics) are state, updated by its training steps: a parameter
        there would be trained by gradients instead, and never updated."""
        for position in op.state:
            if position < len(args) and self.vertices[args[position]]["kind"] == "state":
                owner = self.updated.setdefault(args[position], path[1])
                if owner != path[1] or args.index(args[position]) != position:
                    self.error(path + ("inputs", position), f"state '{args[position]}' would be updated twice (by "
                               f"'{owner}' and as input '{op.args[position]}' of '{path[1]}'), the last update "
                               "silently winning", "give each running statistic its own state vertex")
            if position < len(args) and self.vertices[args[position]]["kind"] == "parameter":
                self.error(path + ("inputs", position), f"'{args[position]}' is a parameter, but input "
                           f"'{op.args[position]}' of {op.name} is state (updated by training steps, not by gradients)",
                           f"declare '{args[position]}' under `state:` instead of `parameters:`")

    def _literal(self, node: str, i: int, value) -> str:
        name = f"{node}[{i}]"
        position = self.source.positions.get(("nodes", node, "inputs", i), (None, None))
        value = self._array(("nodes", node, "inputs", i), value)
        self.vertices[name] = {"kind": "literal", "position": position, "call": self.source.members.get(node),
                               "value": value, "shape": None if value is None else value.shape}  # a list's own shape
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
        """The node's attributes, checked, with defaults filled in so every rule sees every one; bound once
        per op for the nodes that give none (most nodes of a large model)."""
        given = {k: v for k, v in spec.items() if k not in NODE_KEYS and not (op.outputs and k == "output")}
        attrs = None if given else self.defaults.get(op.name)
        if attrs is None:
            values, problems = bind_attrs(f"op '{op.name}'", op.attrs, given, op.signature())
            for key, message, hint in problems:
                self.error(path + ((key,) if key else ()), message, hint)
            attrs = op.bind(values)
            if not given and not problems:
                self.defaults[op.name] = attrs
        return (attrs | {"output": spec["output"]}) if op.outputs else attrs

    def _check_targets(self):
        for i, name in enumerate(self.doc["outputs"]):
            if name not in self.vertices:
                self.error(("outputs", i), f"undefined output '{name}'", did_you_mean(name, self.vertices))
        loss = self.doc.get("loss")
        if loss is not None and loss not in self.vertices:
            self.error(("loss",), f"undefined loss '{loss}'", did_you_mean(loss, self.vertices))

    # -- whole-graph checks ---------------------------------------------------------

    def _ordered(self) -> list | None:
        """The vertices in an order where each comes after its inputs; None (and every cycle reported) when
        there is a cycle: shapes can only be inferred without one."""
        inputs = {name: v.get("args", ()) for name, v in self.vertices.items()}
        order = topological_order(inputs)
        if len(order) == len(inputs):
            return order
        ordered = set(order)
        for cycle in _cycles({name: args for name, args in inputs.items() if name not in ordered}):
            self.error(("nodes", cycle[0], "inputs"), "cycle: " + " -> ".join(cycle + cycle[:1]),
                       "a node cannot depend on itself; break the cycle")
        return None

    def _infer_shapes(self, order: list):
        """Every node's static dtype and shape; a broken vertex has none (unknown), so its users are still
        checked. The rules are pure functions of the attributes and the inputs' dtypes and shapes: a node
        like one before it (most nodes of a large model) takes the same result without asking them again."""
        known = {}  # (op, the attributes' id: shared by nodes giving none, input dtypes, input shapes) -> result
        for name in order:
            v = self.vertices[name]
            if v["kind"] != "node" or name in self.broken:
                continue
            args = [self.vertices[a] for a in v["args"]]
            dtypes = tuple([a.get("dtype") or self.float for a in args])
            shapes = tuple([a["shape"] for a in args])
            key = (v["op"].name, id(v["attrs"]), dtypes, shapes)
            if key in known:
                v["dtype"], v["shape"] = known[key]
            elif self._infer(name, v, dtypes, shapes):
                known[key] = v["dtype"], v["shape"]
        loss = self.vertices[self.doc["loss"]] if self.doc.get("loss") in self.vertices else {}
        shape = loss.get("shape")
        if not (loss.get("dtype") or "float").startswith("float"):
            self.error(("loss",), f"loss '{self.doc['loss']}' holds {loss['dtype']} values, which have no gradient",
                       "make the loss from float values")
        elif shape not in (None, ()):
            self.error(("loss",), f"loss '{self.doc['loss']}' must be a scalar, its shape is {show_shape(shape)}",
                       "reduce it with sum or mean")

    def _infer(self, name: str, v: dict, dtypes: tuple, shapes: tuple) -> bool:
        """The node's dtype and shape (a tuple) from its op's rules; False, and a problem, when its inputs do
        not fit them."""
        try:
            v["dtype"] = v["op"].dtype(*dtypes, **v["attrs"])
        except DTypeError as e:
            v["shape"] = None
            given = ", ".join(f"{a} ({d})" for a, d in zip(v["args"], dtypes))
            self.error(("nodes", name), f"op '{v['op'].name}': {e}",
                       f"inputs: {given}; integers feed indexing (gather, embedding), labels and shape ops, "
                       "floats everything else")
            return False
        try:
            shape = v["op"].shape(*shapes, **v["attrs"])
            v["shape"] = None if shape is None else tuple(shape)
            return True
        except (ValueError, TypeError, IndexError, ArithmeticError, KeyError) as e:
            v["shape"] = None
            given = ", ".join(f"{a} {show_shape(s)}" for a, s in zip(v["args"], shapes))
            self.error(("nodes", name), f"{e}", f"inputs: {given}")
            return False

    def _check_sizes(self):
        """No value may have more than MAX_RANK dimensions or max_tensor_values numbers (its known sizes'
        product): an op broadcasting to 60000 x 60000 is refused here, not when it runs out of memory."""
        sections = {kind: section for section, kind in SECTIONS.items()}
        for name, v in self.vertices.items():
            shape = v.get("shape")
            if shape is None or v["kind"] == "literal":
                continue
            path = (sections[v["kind"]], name)
            values = math.prod(d for d in shape if d is not None)
            if len(shape) > MAX_RANK:
                self.error(path, f"'{name}' has {len(shape)} dimensions, more than {MAX_RANK}",
                           "no model needs that many: check the shapes and ops feeding it")
            elif values > self.limits.max_tensor_values:
                self.error(path, f"'{name}' would hold {values:,} values ({show_shape(shape)}), more than "
                           f"{self.limits.max_tensor_values:,}", self.limits.exceeded("max_tensor_values"))


def _cycles(inputs: dict) -> list[list]:
    """One cycle (a list of vertices) per group of vertices that depend on each other, among `inputs` (vertex
    -> the vertices it reads): the vertices Kahn's algorithm could not order. Only a model with a cycle
    gets here, so only it imports networkx."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    graph.add_nodes_from(inputs)
    graph.add_edges_from((u, name) for name, args in inputs.items() for u in args if u in inputs)
    cycles = []
    for component in nx.strongly_connected_components(graph):
        first = next(iter(component))
        if len(component) > 1 or graph.has_edge(first, first):
            cycles.append([u for u, *_ in nx.find_cycle(graph.subgraph(component))])
    return cycles


def _output_count(op, spec: dict) -> int:
    """How many outputs a node of a multi-output op has (1 when its attributes are wrong: reported later)."""
    given = {k: v for k, v in spec.items() if k in op.attrs}
    try:
        return max(1, int(op.outputs(**op.bind(given))))
    except (TypeError, ValueError, KeyError, ArithmeticError):
        return 1


class _Weights:
    """The weights file of a trained model: confined to the model's folder, bounded in size, hash-checked,
    and read lazily: an array is decompressed only when a parameter asks for it, and only after its
    size in the zip directory and its header (dtype, shape) agree with the parameter."""

    def __init__(self, source: Source, allow_outside: bool, limits: Limits, error):
        self.source, self.allow_outside, self.limits, self.error = source, allow_outside, limits, error
        self.base = Path(source.file).resolve().parent if source.file else Path.cwd().resolve()
        self.path = self.base / source.data["weights"]["file"]
        self.zip, self.failed = None, False

    def fail(self, key: str, message: str, hint: str | None = None) -> None:
        """A problem of the whole file, reported once (not once per parameter)."""
        self.failed = True
        self.error(("weights", key), message, hint)

    def array(self, key: str, shape: list, path: tuple) -> np.ndarray | None:
        """The stored array of the parameter at `path`, or None once its problem is reported."""
        if self.zip is None and not self.failed:
            self.zip = self._open()
        if self.zip is None:
            return None
        info = self.members.get(f"{key}.npy")
        if info is None:
            return self.error(path + ("weights",), f"array '{key}' is missing from {self.path.name}",
                              "the weights file does not belong to this model; save the model again")
        if info.file_size > math.prod(shape) * 16 + 2**16:  # float128 at most, and a header
            return self.error(path, f"stored array '{key}' is larger ({info.file_size:,} bytes) than a {shape} "
                              "parameter", "the weights file does not match this model")
        return self._member(info, key, shape, path)

    def _open(self) -> zipfile.ZipFile | None:
        try:
            self.path = self.path.resolve()
        except (OSError, ValueError):
            return self.fail("file", "the weights file name is not usable", "check weights.file")
        if not self.allow_outside and not self.path.is_relative_to(self.base):
            return self.fail("file", f"weights file {self.path} is outside the model's folder",
                             "move it beside the model, or allow it explicitly (allow_outside)")
        if not self.path.exists():
            return self.fail("file", f"cannot read weights file {self.path}: {os.strerror(errno.ENOENT)}",
                             "check the path")
        try:
            blob = read_regular(self.path, 8 * self.limits.max_parameter_values + self.limits.max_file_bytes,
                                self.limits.exceeded("max_parameter_values"))
        except GraphDefError as e:
            return self.fail("file", f"cannot read weights file {self.path}: {e.errors[0].message}", e.errors[0].hint)
        expected = self.source.data["weights"].get("sha256")
        if expected and hashlib.sha256(blob).hexdigest() != expected:
            return self.fail("sha256", f"weights file {self.path.name} does not match its SHA-256",
                             "the file was changed or corrupted; save or train the model again")
        try:
            archive = zipfile.ZipFile(io.BytesIO(blob))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            return self.fail("file", f"weights file {self.path.name} is unreadable: {e}",
                             "it is truncated or corrupted")
        self.members = {info.filename: info for info in archive.infolist()}
        return archive

    def _member(self, info: zipfile.ZipInfo, key: str, shape: list, path: tuple) -> np.ndarray | None:
        try:
            with self.zip.open(info) as f:
                return self._checked(_read_npy(f, shape), key, shape, path)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError) as e:
            self.error(path, f"stored array '{key}' is unreadable: {e}", "the weights file is truncated or corrupted")

    def _checked(self, value, key: str, shape: list, path: tuple) -> np.ndarray | None:
        if isinstance(value, str):  # what the header says, when it does not fit
            return self.error(path, f"stored array has {value}, expected shape {shape} of floats",
                              "the weights file does not match this model")
        if value is None:
            return self.error(("weights", "file"), f"weights file {self.path.name} is unreadable: array '{key}' holds "
                              "Python objects, which graphdef never loads", "save the model again")
        if not np.isfinite(value).all():
            return self.error(path, f"stored array '{key}' contains NaN or infinity",
                              "the model diverged when it was trained: train it again, with a lower learning rate")
        return value


def _read_npy(f, shape: list):
    """An .npy member read after its header: float arrays of the expected shape only (never a pickle,
    never an allocation the header alone asks for). Returns the array, or what the header says instead
    (None: Python objects)."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    stored, fortran, dtype = read_header(f)
    if dtype.hasobject:
        return None  # unpickling would run code
    if dtype.kind != "f" or list(stored) != list(shape):
        return f"shape {list(stored)} and dtype {dtype}"
    array = np.empty(tuple(reversed(shape)) if fortran else tuple(shape), dtype)
    view, done = memoryview(array.reshape(-1)).cast("B"), 0
    while done < array.nbytes:
        n = f.readinto(view[done:])
        if not n:
            raise ValueError(f"the array ends after {done:,} of {array.nbytes:,} bytes")
        done += n
    return array.T if fortran else array
