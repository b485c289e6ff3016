"""ONNX import: each node checked against ONNX's own schema of its op, then converted by that op's rule.

The importer walks the graph once, in order, and knows each ONNX value as a `Value`: a
graphdef vertex computed at run time, or a value known at import time (a constant, an
integer initializer, a shape). What is known is evaluated at import: a node whose inputs
are all known numbers is folded by ONNX's reference implementation, and the size
arithmetic exporters write for a dynamic batch is evaluated on symbolic sizes (dims.py,
sizes.py). Everything else goes to the rule of its op type (rules_*.py), which emits
graphdef nodes. Float initializers of more than one value are the model's parameters.
"""
from __future__ import annotations

import functools
import inspect
import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from ...errors import GraphDefError, Problem
from ...ops import OPS
from .dims import Dim
from .proto import (ATTRIBUTE_TYPES, FLOAT_TYPES, READABLE, Malformed, Unsupported, VALID_NAME,
                    array, check_graph, dims_of, label, onnx_modules, opset_of, quoted, valid_name)

RULES = {}  # ONNX op type -> rule(importer, *input Values, **attributes) -> Value or tuple of Values
MAX_LISTED = 10  # unsupported op types named in one error
MAX_FOLDED = 10**6  # values a node folded at import may make


def rule(*op_types: str):
    """Register the import rule of ONNX op types: rule(importer, *inputs, **attributes).

    The inputs are Values (None for an optional input left out); the attributes are the ones
    the rule's signature names, defaults from ONNX's schema filled in. An attribute a node sets
    to something else than its default, which the rule does not name, is refused as unsupported."""
    def register(function):
        for op_type in op_types:
            RULES[op_type] = function
        return function
    return register


def kind_of(dtype) -> str:
    """The kind of a numpy dtype as import tracks it: float, int64 or bool."""
    dtype = np.dtype(dtype)
    return "float" if dtype.kind == "f" else "bool" if dtype.kind == "b" else "int64"


@dataclass(frozen=True)
class Value:
    """An ONNX value as import knows it: a vertex computed at run time, or known now (`known`)."""

    kind: str  # float, int64 or bool
    shape: tuple | None  # sizes: int, Dim (known at run time) or None (unknown); None: rank unknown
    vertex: str | None = None
    known: np.ndarray | None = None  # numbers, or sizes (an object array holding Dims)
    fill: float | None = None  # every entry is this number, the shape known only at run time (zeros(batch, 8))
    name: str | None = None  # the ONNX value it is: a known value read at run time becomes a constant so named

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    @property
    def numeric(self) -> bool:
        return self.known is not None and self.known.dtype != object


def known(value) -> Value:
    """A value known at import: numbers, or sizes (an object array, numbers where no symbol is left)."""
    value = np.asarray(value)
    if value.dtype == object and not any(isinstance(v, Dim) for v in value.flat):
        kinds = {type(v) for v in value.flat}
        dtype = bool if kinds and kinds <= {bool, np.bool_} else np.float64 if float in kinds else np.int64
        value = np.asarray(value.tolist(), dtype=dtype)
    return Value(kind_of(value.dtype) if value.dtype != object else "int64", value.shape, known=value)


class Importer:
    """One ONNX graph read into a graphdef document."""

    def __init__(self, proto, file: str | None, limits, parameters: set | None = None):
        self.onnx, self.helper, _ = onnx_modules()
        self.file, self.limits, self.graph = file, limits, proto.graph
        check_graph(file, proto, limits)
        self.opset = opset_of(file, proto)
        self.names, self.taken, self.suffix = {}, set(), Counter()
        self.nodes, self.inputs, self.values, self.extra = {}, {}, {}, {}
        self.initial, self.constants = {}, {}  # initializers read at run time; known values read at run time
        self.state_vertices = set()  # initializers that are state (running statistics), not parameters
        self.created, self.renamed = [], {}  # vertices the node being converted made, and their new names
        self.materialized = {}  # ONNX name -> constant vertex made of its known value
        self.failed = set()  # outputs of nodes that could not be converted: their readers are not reported
        self.keep_valid_names()
        self.read_initializers(parameters)
        self.read_inputs()
        self.later = {o for node in self.graph.node for o in node.output}

    def problem(self, message: str, path: str | None = None, hint: str | None = None) -> Problem:
        return Problem(message, self.file, path=path, hint=hint)

    # -- names ------------------------------------------------------------------------

    def keep_valid_names(self) -> None:
        """Names already valid in graphdef (inputs first) keep their name: only the others are changed."""
        g = self.graph
        outputs = (o for node in g.node for o in node.output)
        for name in [*(i.name for i in g.input), *(t.name for t in g.initializer), *outputs]:
            if VALID_NAME.fullmatch(name):
                self.ref(name)

    def ref(self, onnx_name: str) -> str:
        """The graphdef name for an ONNX value: kept where valid, else made valid (and unique)."""
        name = self.names.get(onnx_name)
        if name is None:
            name = self.names[onnx_name] = self.fresh(valid_name(onnx_name))
        return name

    def fresh(self, base: str) -> str:
        """A name no value has yet: base, else base_1, base_2, ... (a counter per base keeps this linear)."""
        name = base
        while name in self.taken:
            self.suffix[base] += 1
            name = f"{base}_{self.suffix[base]}"
        self.taken.add(name)
        return name

    # -- what the graph starts from ---------------------------------------------------------

    def read_initializers(self, parameters: set | None) -> None:
        """Parameters run as vertices; the other initializers are known now. A file graphdef exported names
        its parameters (`parameters`); in another, float initializers of more than one value are parameters."""
        problems = []
        for k, t in enumerate(self.graph.initializer):
            try:
                value = array(t, f"initializer {quoted(t.name)}")
            except Malformed as e:
                problems.append(self.problem(str(e), f"graph.initializer[{k}]", e.hint))
                continue
            if t.name in parameters if parameters is not None else value.dtype.kind == "f" and value.size > 1:
                vertex = self.ref(t.name)
                self.initial[vertex] = value
                self.values[t.name] = Value("float", value.shape, vertex)
            else:
                self.values[t.name] = replace(known(value), name=t.name)
        if problems:
            raise GraphDefError(problems)

    def read_inputs(self) -> None:
        """Graph inputs: their free sizes become symbols, named as the file names them."""
        for i in self.graph.input:
            if i.name in self.values:
                continue  # an initializer listed as an input too (IR < 4): its stored value is used
            dims = dims_of(i)
            kind = kind_of(READABLE[i.type.tensor_type.elem_type])
            shape = None if dims is None else tuple(
                d if isinstance(d, int) else Dim.symbol(d or f"{i.name}[{axis}]") for axis, d in enumerate(dims))
            vertex = self.ref(i.name)
            self.inputs[vertex] = {**({} if dims is None else {"shape": [d if isinstance(d, int) else None
                                                                         for d in dims]}),
                                   **({} if kind == "float" else {"dtype": kind})}
            self.values[i.name] = Value(kind, shape, vertex)

    # -- what rules call ----------------------------------------------------------------------

    def op(self, op: str, *inputs, outputs: int | tuple = 1, out_shape=None, **attrs):
        """A graphdef node of `op` (an op, or a function of the standard library) on Values (or numbers,
        written as literals); its Value, or a tuple of Values for an op with several `outputs` (a count:
        NODE, NODE/1...; a function's output names: NODE, NODE/NAME...). A function's result shape is not
        inferred here: give it as `out_shape` when later nodes need it (or when a rule knows better: a
        reshape's sizes known only at run time)."""
        shape, kind = self.infer(op, inputs, attrs) if op in OPS else (None, "float")
        shape = shape if out_shape is None else tuple(out_shape)
        if op in KEEP_FILL and inputs[0].fill is not None:
            return Value(kind, shape, fill=inputs[0].fill)
        args = [x if isinstance(x, (int, float)) else self.vertex(x) for x in inputs]
        name = self.fresh("tmp")
        self.created.append(name)
        self.nodes[name] = {"op": op, "inputs": args, **attrs}
        if outputs == 1:
            return Value(kind, shape, name)
        if isinstance(outputs, tuple):  # a function's outputs: the shape given is its first output's
            return (Value(kind, shape, name), *(Value(kind, shape, f"{name}/{o}") for o in outputs[1:]))
        return tuple(Value(kind, self.infer(op, inputs, {**attrs, "output": k})[0], name if k == 0 else f"{name}/{k}")
                     for k in range(outputs))

    def infer(self, op: str, inputs, attrs) -> tuple:
        """An op's (shape, kind) by graphdef's own rules, on sizes that may be symbolic."""
        record = OPS[op]
        bound = record.bind(attrs)
        shapes = [() if isinstance(x, (int, float)) else x.shape for x in inputs]
        kinds = ["float64" if isinstance(x, float) else "int64" if isinstance(x, int)
                 else {"float": "float64"}.get(x.kind, x.kind) for x in inputs]
        try:
            kind = kind_of(record.dtype(*kinds, **bound))
        except Exception:  # noqa: BLE001 - the loader reports a wrong dtype where the node is
            kind = "float"
        try:
            return record.shape(*shapes, **bound), kind
        except Exception:  # noqa: BLE001 - a rule doing arithmetic on a symbolic size: probe it with numbers
            return _probed_shape(record, shapes, bound), kind

    def vertex(self, value: Value) -> str:
        """The vertex holding a Value; a known value becomes a constant the first time it is read."""
        if value.vertex is not None:
            return value.vertex
        if value.fill is not None:
            raise Unsupported(f"a tensor of {value.fill:g}s whose size is known only at run time, used at run time")
        if not value.numeric:
            raise Unsupported("sizes known only at run time, computed on at run time")
        if value.name in self.materialized:
            return self.materialized[value.name]
        name = self.fresh("const") if value.name is None else self.ref(value.name)
        self.constants[name] = value.known
        if value.name is not None:
            self.materialized[value.name] = name
        return name

    def static(self, value: Value | None, what: str):
        """The known value an op needs at import (a shape, axes, a running mean)."""
        if value is None:
            return None
        if value.known is not None:
            return value.known
        if value.vertex in self.initial:
            return self.initial[value.vertex]
        raise Unsupported(f"{what} computed at run time")

    def state(self, value: Value) -> Value:
        """An initializer the model keeps as state (running statistics) rather than training it."""
        if value.vertex not in self.initial:
            raise Unsupported("running statistics computed at run time")
        self.state_vertices.add(value.vertex)
        return value

    # -- conversion ----------------------------------------------------------------------------

    def convert(self, node) -> None:
        """One ONNX node checked against its op's schema and converted (folded when its inputs are known)."""
        schema = self.schema(node)
        attrs, defaults = self.attributes(node, schema)
        inputs = self.arguments(node)
        self.created, self.renamed, self.node = [], {}, node
        outputs = self.evaluate(node, inputs, attrs, defaults)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        for k, name in enumerate(node.output):
            if not name:
                continue
            if k >= len(outputs) or outputs[k] is None:
                self.extra[name] = node.op_type
            else:
                self.values[name] = replace(self.named(outputs[k], name), name=name)

    def schema(self, node):
        _check_outputs(self, node)
        try:
            schema = self.onnx.defs.get_schema(node.op_type, self.opset, "")
        except self.onnx.defs.SchemaError:
            raise Malformed(f"{node.op_type} does not exist in ONNX opset {self.opset}") from None
        _check_arity(node, schema)
        if len(node.output) > schema.max_output:
            raise Malformed(f"has {len(node.output)} outputs; {node.op_type} has {schema.max_output}")
        return schema

    def attributes(self, node, schema) -> tuple[dict, dict]:
        """(the node's attributes, checked against the schema's types, with the defaults; the defaults)."""
        values = {}
        for a in node.attribute:
            declared = schema.attributes.get(a.name)
            if declared is None:
                raise Malformed(f"has an attribute {quoted(a.name)}, which {node.op_type} does not have",
                                f"{node.op_type} takes: {', '.join(schema.attributes) or 'no attributes'}")
            if a.type != int(declared.type) or a.name in values:
                raise Malformed(f"attribute {quoted(a.name)} is {ATTRIBUTE_TYPES.get(a.type, f'of type {a.type}')}"
                                + (" and given twice" if a.name in values else ""),
                                f"it must be {ATTRIBUTE_TYPES.get(int(declared.type))}, given once")
            values[a.name] = self.attribute_value(a)
        missing = [n for n, a in schema.attributes.items() if a.required and n not in values]
        if missing:
            raise Malformed(f"has no attribute {quoted(missing[0])}, which {node.op_type} requires")
        defaults = {n: self.attribute_value(a.default_value) for n, a in schema.attributes.items()
                    if a.default_value.type}
        return {**defaults, **values}, defaults

    def attribute_value(self, a):
        value = self.helper.get_attribute_value(a)
        if a.type == 4:
            return array(value, f"attribute {quoted(a.name)}")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def arguments(self, node) -> list:
        given = list(node.input)
        while given and not given[-1]:
            given.pop()
        for name in given:
            if name:
                self.check_reference(name)
        return [self.values[name] if name else None for name in given]

    def check_reference(self, name: str) -> None:
        if name in self.values or name in self.failed:
            return
        if name in self.extra:
            raise Malformed(f"reads {quoted(name)}, an extra output of {self.extra[name]} that graphdef does not compute")
        if name in self.later:
            raise Malformed(f"reads {quoted(name)} before any node computes it: the graph has a cycle or is out of order",
                            "ONNX lists each node after the nodes it reads")
        raise Malformed(f"reads {quoted(name)}, which no input, initializer or node defines")

    def evaluate(self, node, inputs: list, attrs: dict, defaults: dict):
        """Fold a node whose inputs are known numbers; evaluate size arithmetic; else run its rule."""
        from .sizes import SIZES
        given = [x for x in inputs if x is not None]
        convert = RULES.get(node.op_type)
        if convert is None and node.op_type not in FOLDED_ONLY:
            raise Unsupported()
        if given and all(x.numeric for x in given) and node.op_type not in NOT_FOLDED:
            return self.fold(node, inputs)
        if given and all(x.known is not None for x in given) and node.op_type in SIZES:
            return _on_sizes(SIZES[node.op_type], inputs, attrs)
        if convert is None:
            raise Unsupported("computed at run time (graphdef folds it when its inputs are known at import)")
        return convert(self, *inputs, **_accepted(convert, attrs, defaults))

    def fold(self, node, inputs: list) -> tuple:
        """A node on known numbers, computed now by ONNX's reference implementation."""
        from onnx.reference import ReferenceEvaluator
        names = [f"in{k}" if x is not None else "" for k, x in enumerate(inputs)]
        outputs = [f"out{k}" for k in range(len(node.output))]
        folded = self.helper.make_node(node.op_type, names, outputs, domain="", **_raw_attributes(self, node))
        feeds = {n: x.known for n, x in zip(names, inputs) if x is not None}
        if _folded_size(node.op_type, list(feeds.values())) > MAX_FOLDED:
            raise Unsupported("its result, known at import, is too large")
        try:
            results = ReferenceEvaluator(folded, opsets={"": self.opset}).run(None, feeds)
        except MemoryError:
            raise Unsupported("its result, known at import, is too large to compute") from None
        except Exception as e:  # noqa: BLE001 - ONNX's reference refusing the node is the file's fault
            raise Malformed(f"cannot be computed: {type(e).__name__}: {str(e)[:200]}") from None
        if sum(np.size(r) for r in results) > MAX_FOLDED:
            raise Unsupported("its result, known at import, is too large")
        return tuple(known(r) for r in results)

    def named(self, value: Value, onnx_name: str) -> Value:
        """The Value of a node's output, its vertex renamed after the ONNX output when this node made it
        (the other outputs of a graphdef op with several, NODE/1..., follow their node's new name)."""
        base, slash, k = (value.vertex or "").partition("/")
        if slash and base in self.renamed:
            return replace(value, vertex=f"{self.renamed[base]}/{k}")
        if value.vertex not in self.created or value.vertex in self.renamed:
            return value
        name = self.ref(onnx_name)
        self.nodes[name] = self.nodes.pop(value.vertex)
        self.renamed[value.vertex] = name
        for made in self.created:
            entry = self.nodes.get(self.renamed.get(made, made))
            if entry is not None:
                entry["inputs"] = [self.renamed_ref(a) for a in entry["inputs"]]
        self.taken.discard(value.vertex)
        return replace(value, vertex=name)

    def renamed_ref(self, arg):
        """A node input after this node's renaming (NODE/k included)."""
        if not isinstance(arg, str):
            return arg
        base, slash, k = arg.partition("/")
        return self.renamed[base] + slash + k if base in self.renamed else arg


def _on_sizes(evaluate, inputs: list, attrs: dict):
    """Size arithmetic at import, its faults located at the node like any other's."""
    try:
        return evaluate(*(None if x is None else x.known for x in inputs), **attrs)
    except TypeError as e:
        raise Unsupported(f"arithmetic on sizes known only at run time ({e})") from None
    except (IndexError, ValueError, ZeroDivisionError, OverflowError) as e:
        raise Malformed(f"cannot be computed on the sizes it reads: {e}") from None


FOLDED_ONLY = {"Mod", "Range", "NonZero"}  # shape arithmetic import computes when its inputs are known
NOT_FOLDED = {"Constant", "Dropout"}  # Constant has no inputs; Dropout's reference draws random masks
KEEP_FILL = {"reshape", "transpose", "slice", "squeeze", "unsqueeze", "expand", "select", "identity"}


def _folded_size(op_type: str, arrays: list) -> float:
    """How many values folding a node that makes tensors from sizes would make, before it makes them."""
    try:
        if op_type == "ConstantOfShape":
            return math.prod(int(d) for d in arrays[0])
        if op_type == "Expand":
            return math.prod(np.broadcast_shapes(arrays[0].shape, tuple(int(d) for d in arrays[1])))
        if op_type == "Tile":
            return arrays[0].size * math.prod(int(r) for r in arrays[1])
        if op_type == "Range":
            return abs((float(arrays[1]) - float(arrays[0])) / float(arrays[2]))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        return 0.0  # ONNX's reference reports the fault
    return 0.0  # Constant has no inputs; Dropout's reference draws random masks


PROBES = (10**6 + 3, 2 * 10**6 + 3)  # numbers no real size is: each symbolic size gets PROBE + 2·i


def _probed_shape(record, shapes: list, attrs: dict):
    """A shape rule run twice with the symbolic sizes as two sets of distinct numbers: an output size that is
    the same symbol's number both times is that symbol, one equal both times a number, the others unknown."""
    dims = list(dict.fromkeys(d for s in shapes if s is not None for d in s if isinstance(d, Dim)))
    runs = []
    for probe in PROBES:
        numbers = {d: probe + 2 * i for i, d in enumerate(dims)}
        try:
            runs.append(record.shape(*[None if s is None else tuple(numbers.get(d, d) if isinstance(d, Dim) else d
                                                                   for d in s) for s in shapes], **attrs))
        except Exception:  # noqa: BLE001 - the loader reports a wrong shape where the node is
            return None
    if runs[0] is None or runs[1] is None or len(runs[0]) != len(runs[1]):
        return None
    back = {(PROBES[0] + 2 * i, PROBES[1] + 2 * i): d for i, d in enumerate(dims)}
    return tuple(back.get((a, b), a if a == b else None) for a, b in zip(*runs))


@functools.cache
def _parameters(convert) -> frozenset | None:
    """The names a rule takes (None: any, a **keywords rule), read once per rule rather than per node."""
    parameters = inspect.signature(convert).parameters
    return None if any(p.kind == p.VAR_KEYWORD for p in parameters.values()) else frozenset(parameters)


def _accepted(convert, attrs: dict, defaults: dict) -> dict:
    """The attributes a rule reads; one it does not read, set to other than its default, is unsupported."""
    parameters = _parameters(convert)
    if parameters is None:
        return attrs
    unread = [n for n, v in attrs.items() if n not in parameters and not _same(v, defaults.get(n))]
    if unread:
        raise Unsupported(f"attribute {unread[0]}={attrs[unread[0]]!r}")
    return {n: v for n, v in attrs.items() if n in parameters}


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(a, b))
    except Exception:  # noqa: BLE001 - values of different kinds differ
        return False


def _raw_attributes(imp, node) -> dict:
    return {a.name: imp.helper.get_attribute_value(a) for a in node.attribute}


def _check_arity(node, schema) -> None:
    given = len(node.input)
    while given and not node.input[given - 1]:  # trailing empty names: optional inputs left out
        given -= 1
    fewest, most = schema.min_input, schema.max_input
    if given < fewest or given > most:
        wanted = (f"{fewest}" if fewest == most else f"{fewest} or more" if most > 1000
                  else f"{fewest} to {most}")
        raise Malformed(f"has {given} input{'s' * (given != 1)}; {node.op_type} takes {wanted}")
    missing = [k for k in range(fewest) if not node.input[k]]
    if missing:
        raise Malformed(f"leaves its required input #{missing[0]} empty")


def _check_outputs(imp, node) -> None:
    if not any(node.output):
        raise Malformed("has no output name", "every ONNX node names a value it computes")
    for name in node.output:
        if name and (name in imp.values or name in imp.extra):
            raise Malformed(f"computes {quoted(name)}, which is already defined", "every ONNX value needs its own name")


def convert_nodes(imp) -> None:
    """Every node converted; the malformed ones and the unsupported ops reported together."""
    problems, unsupported, reasons = [], Counter(), {}
    for k, node in enumerate(imp.graph.node):
        if imp.failed.intersection(node.input):
            imp.failed.update(o for o in node.output if o)
            continue
        if node.domain not in ("", "ai.onnx"):
            unsupported[f"{node.domain}.{node.op_type}"] += 1
            continue
        try:
            imp.convert(node)
            continue
        except Unsupported as e:
            unsupported[node.op_type] += 1
            if str(e):
                reasons.setdefault(node.op_type, str(e))
        except Malformed as e:
            problems.append(imp.problem(f"{label(k, node)}: {e}", f"graph.node[{k}]", e.hint))
        imp.failed.update(o for o in node.output if o)  # later nodes reading them are not reported too
    if unsupported:
        listed = ", ".join(f"{quoted(op)[1:-1]} ×{n}" + (f" ({reasons[op]})" if op in reasons else "")
                           for op, n in list(unsupported.items())[:MAX_LISTED])
        more = f" and {len(unsupported) - MAX_LISTED} more" if len(unsupported) > MAX_LISTED else ""
        problems.append(imp.problem(f"the ONNX model uses ops graphdef cannot import: {listed}{more}",
                                    hint="see `graphdef onnx-conformance` for the ops graphdef imports"))
    if problems:
        raise GraphDefError(problems)


def graph_outputs(imp) -> list:
    """The graphdef names of the graph's outputs, each computed by the graph under its ONNX name."""
    problems = [imp.problem(f"output {quoted(o.name)} is an extra output of {imp.extra[o.name]}, which graphdef "
                            "does not compute", f"graph.output[{k}]") if o.name in imp.extra else
                imp.problem(f"output {quoted(o.name)} is not computed by any node", f"graph.output[{k}]",
                            "the file is damaged or was written wrongly: export it again")
                for k, o in enumerate(imp.graph.output) if o.name not in imp.values]
    if problems:
        raise GraphDefError(problems)
    names = []
    for k, o in enumerate(imp.graph.output):
        value, name = imp.values[o.name], imp.ref(o.name)
        if value.vertex != name or name not in imp.nodes:  # an output is a node of its own name where it can be
            imp.created, imp.renamed = [], {}
            try:  # a known value: a constant of its own name, read by the output node of the ONNX name
                value = imp.op("identity", replace(value, name=None) if value.vertex is None else value)
            except Unsupported as e:
                problems.append(imp.problem(f"output {quoted(o.name)} cannot be computed: {e}", f"graph.output[{k}]"))
                continue
            if name not in imp.inputs and name not in imp.initial:
                value = imp.named(value, o.name)
        names.append(value.vertex)
    if problems:
        raise GraphDefError(problems)
    return names


def dtype_of(imp) -> str:
    """float32 when every float the file holds and reads is float32, else float64."""
    floats = {v.dtype for v in [*imp.initial.values(), *imp.constants.values()] if v.dtype.kind == "f"}
    floats |= {np.dtype(FLOAT_TYPES[i.type.tensor_type.elem_type]) for i in imp.graph.input
               if i.type.tensor_type.elem_type in FLOAT_TYPES and imp.ref(i.name) in imp.inputs}
    return "float32" if floats <= {np.dtype(np.float32)} else "float64"


def constant_entry(value: np.ndarray, dtype: str):
    """A known value as a graphdef constant: floats in the model's dtype, integers and booleans typed."""
    if value.dtype.kind == "f":
        return np.asarray(value, dtype).tolist()
    kind = kind_of(value.dtype)
    return {"value": np.asarray(value, np.int64).tolist(), "dtype": kind}

