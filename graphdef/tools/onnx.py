"""ONNX interop: export a graphdef model to ONNX, import an ONNX model as graphdef YAML.

Export calls each op's own ONNX mapping (the `onnx` of its record) through an emitter;
it writes the parameters (trained values included) as initializers and gives every input
a leading symbolic `batch` dimension: the exported graph is the model run on a batch, each
node lifted by its batching rule as graphdef runs it. It writes the inference graph (the
outputs and what they need) unless asked for the loss too, and records in the metadata
which initializers are constants and which output is the loss, so that import gives both back.

Import maps ONNX nodes to graphdef ops, honouring opset differences, and turns float
initializers into parameters. A file comes from anywhere: every node, tensor and name is
checked against what it declares (arity, attributes, axes, references, sizes) and against
graphdef's Limits before anything is built, each fault a GraphDefError naming the file and
the node; no external data file is ever read. Needs the `onnx` extra: pip install "graphdef[onnx]".
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..engine.lift import PER_SAMPLE, StepError, batched_vertices, lift_of
from ..errors import GraphDefError, Problem
from ..format.source import LIMITS, Limits
from ..ops import OPS

DEFAULT_OPSET = 18
MAX_ONNX_BYTES = 2**31 - 2**24  # protobuf's 2 GB, less room for the graph: larger tensors need external data
MIN_OPSET = 13  # Softmax and LogSoftmax work on one axis from 13 on, as graphdef's do


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise GraphDefError(Problem("ONNX support needs the onnx package",
                                    hint='pip install "graphdef[onnx]"')) from None
    return onnx, helper, numpy_helper


# -- export ----------------------------------------------------------------------------

class _Exporter:
    def __init__(self, model, opset: int):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.model, self.opset = model, opset
        self.elem = self.onnx.TensorProto.FLOAT if model.dtype == np.float32 else self.onnx.TensorProto.DOUBLE
        self.nodes, self.initializers, self.count = [], [], 0

    def elem_of(self, vertex: str):
        """The ONNX element type of a vertex's values."""
        dtype = self.model.graph.vertices[vertex].dtype
        return {"int64": self.onnx.TensorProto.INT64, "bool": self.onnx.TensorProto.BOOL}.get(dtype, self.elem)

    def tensor(self, name: str, value) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def const(self, value, dtype=None) -> str:
        self.count += 1
        return self.tensor(f"_const{self.count}", np.asarray(value, dtype=dtype or self.model.dtype))

    def node(self, op_type: str, inputs: list, output: str | None = None, doc: str = "", **attrs) -> str:
        if output is None:
            self.count += 1
            output = f"_tmp{self.count}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], doc_string=doc, **attrs))
        return output

    def unsqueeze(self, x: str, axes: tuple) -> str:
        return self.node("Unsqueeze", [x, self.const(list(axes), np.int64)]) if axes else x

    def squeeze(self, x: str, axes: tuple, out: str) -> str:
        return self.node("Squeeze", [x, self.const(list(axes), np.int64)], out)

    def step(self, step, lift, ranks: list) -> None:
        """The ONNX nodes of one graphdef node, lifted to the batch as the engine runs it."""
        if lift is None:
            self.ranks = ranks
            return step.op.onnx(self, list(step.inputs), step.name, dict(step.attrs))
        inputs = [self.unsqueeze(x, axes) for x, axes in zip(step.inputs, lift.expand)]
        self.ranks = [r + len(axes) for r, axes in zip(ranks, lift.expand)]
        raw = step.op.onnx(self, inputs, None if lift.squeeze else step.name, dict(lift.attrs))
        if lift.squeeze:
            self.squeeze(raw, lift.squeeze, step.name)

    def reduce(self, op_type: str, x: str, axes, keepdims: bool, out=None) -> str:
        """ReduceSum/ReduceMean over axes (None: all), with axes as an input or attribute by opset."""
        as_input = op_type == "ReduceSum" and self.opset >= 13 or self.opset >= 18
        axes = None if axes is None else list((axes,) if isinstance(axes, int) else axes)
        if axes == []:  # no axis to reduce (a scalar sample); ONNX would read an empty list as all of them
            return self.node("Identity", [x], out)
        if axes is None:
            return self.node(op_type, [x], out, keepdims=int(keepdims))
        if as_input:
            return self.node(op_type, [x, self.const(axes, np.int64)], out, keepdims=int(keepdims))
        return self.node(op_type, [x], out, axes=axes, keepdims=int(keepdims))


def export(model, path=None, opset: int = DEFAULT_OPSET, with_loss: bool = False):
    """The model as an ONNX ModelProto (written to `path` when given), checked by onnx.checker.

    By default the inference graph: the model's outputs and only what they need, so a
    classifier's label is no input. `with_loss` adds the loss (and its inputs, the label);
    its name is recorded in the metadata so that import gives the model its loss back.
    """
    names = list(dict.fromkeys(model.outputs + ([model.loss] if with_loss and model.loss else [])))
    needed = model.ancestors(names)
    steps = [s for s in model.steps if s.name in needed]
    _check_exportable(model, opset, steps)
    values = {k: np.asarray(v, dtype=model.graph.vertices[k].dtype)
              for k, v in {**model.constants, **model.state, **model.parameters}.items() if k in needed}
    _check_values(model, values)
    e = _Exporter(model, opset)
    for name, value in values.items():
        e.tensor(name, value)
    _emit_steps(e, model, steps)
    proto = _model_proto(e, model, names, needed)
    constants = [t.name for t in e.initializers if t.name not in model.parameters]
    e.helper.set_model_props(proto, {CONSTANTS_KEY: json.dumps(constants),
                                     **({LOSS_KEY: model.loss} if with_loss and model.loss else {})})
    try:
        e.onnx.checker.check_model(proto)
    except e.onnx.checker.ValidationError as err:
        raise GraphDefError(f"the exported model fails onnx.checker: {str(err).splitlines()[0]}") from None
    if path is not None:
        from ..format.serialize import atomic_write
        atomic_write(path, proto.SerializeToString())
    return proto


def _model_proto(e, model, names: list, needed: set):
    """The ModelProto of the emitted nodes: the inputs `needed`, the outputs `names` (a symbolic batch)."""
    helper = e.helper
    inputs = [helper.make_tensor_value_info(n, e.elem_of(n), _input_shape(n, s, n in model.batchable))
              for n, s in model.inputs.items() if n in needed]
    outputs = [helper.make_tensor_value_info(n, e.elem_of(n), shape)
               for n, shape in _output_shapes(model, names).items()]
    graph = helper.make_graph(e.nodes, model.name, inputs, outputs, e.initializers, doc_string=model.description)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", e.opset)], producer_name="graphdef",
                              doc_string=model.description)
    proto.ir_version = min(proto.ir_version, 10)  # what current onnxruntime releases read
    return proto


def _check_exportable(model, opset: int, steps) -> None:
    """Refuse an opset too old for graphdef's ops, and list the nodes whose op has no ONNX equivalent."""
    if opset < MIN_OPSET:
        raise GraphDefError(Problem(f"opset {opset} is too old", hint=f"use --opset {MIN_OPSET} or newer"))
    missing = [s for s in steps if s.op.onnx is None]
    if missing:
        supported = sorted(name for name, op in OPS.items() if op.onnx is not None)
        raise GraphDefError([model.problem(s.name, f"node '{s.name}': op '{s.op.name}' has no ONNX equivalent",
                                           "export supports: " + ", ".join(supported)) for s in missing])


def _check_values(model, values: dict) -> None:
    """Refuse NaN (a diverged model: import would refuse it too) and more than one ONNX file can hold."""
    nan = [k for k, v in values.items() if v.dtype.kind == "f" and np.isnan(v).any()]
    if nan:
        raise GraphDefError([model.problem(k, f"'{k}' contains NaN: there is no model to export",
                                           "export a checkpoint saved before training diverged") for k in nan])
    size = sum(v.nbytes for v in values.values())
    if size > MAX_ONNX_BYTES:
        raise GraphDefError(Problem(f"the model's values take {size:,} bytes, more than an ONNX file holds "
                                    f"({MAX_ONNX_BYTES:,})", hint="export a smaller model, or use float32 (--dtype)"))


def _emit_steps(e, model, steps) -> None:
    """Each step's ONNX nodes, lifted to the batch, the last one carrying the node's description."""
    batched = batched_vertices(model.graph, set(model.batchable))
    for step in steps:
        doc = (model.doc.get("nodes") or {}).get(step.name, {}).get("description", "")
        ranks = [len(model.graph.vertices[a].shape or ()) + (a in batched) for a in step.inputs]
        try:
            lift = lift_of(model.graph, step, batched)
            if lift is PER_SAMPLE:
                raise StepError(step, ValueError(f"op '{step.op.name}' runs once per sample on this batch "
                                                 "(its batching rule does not cover it), which ONNX cannot express"))
            e.step(step, lift, ranks)
        except StepError as err:
            raise GraphDefError(model.problem(step.name, f"node '{step.name}' cannot be exported: {err}")) from None
        e.nodes[-1].doc_string = doc


def _output_shapes(model, names) -> dict:
    """Each output's shape, the batch dimension symbolic: found by running two batch sizes."""
    needed = model.ancestors(names)

    def run(batch):
        feeds = {n: np.full(([batch] if n in model.batchable else []) + [d or batch for d in s or []],
                            0.5 if n not in model.input_dtypes else 0, model.input_dtypes.get(n, model.dtype))
                 for n, s in model.inputs.items() if n in needed}
        values = model.forward(feeds, outputs=names)
        return {n: np.shape(values[n]) for n in names}
    two, three = run(2), run(3)
    return {n: [d if d == d3 else "batch" for d, d3 in zip(two[n], three[n])] for n in names}


def _input_shape(name: str, shape, batchable: bool):
    """An input's ONNX shape: a leading `batch` for a per-sample input, symbolic names for free sizes."""
    if shape is None:
        return None
    dims = [d if d is not None else ("batch" if i == 0 else f"{name}_dim{i}") for i, d in enumerate(shape)]
    return ["batch", *dims] if batchable else dims


# -- import ----------------------------------------------------------------------------

FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS = 1, 2, 3, 4, 5, 6, 7  # AttributeProto types
ATTRIBUTE_TYPES = {FLOAT: "a float", INT: "an int", STRING: "a string", TENSOR: "a tensor", GRAPH: "a graph",
                   FLOATS: "a list of floats", INTS: "a list of ints"}
ELEMENTS = {1: ("float", np.float32, "float_data"), 11: ("double", np.float64, "double_data"),
            6: ("int32", np.int32, "int32_data"), 7: ("int64", np.int64, "int64_data")}  # TensorProto types read
EXTERNAL = 1  # TensorProto.DataLocation
LOSS_KEY, CONSTANTS_KEY = "graphdef.loss", "graphdef.constants"  # metadata_props written by export


class Spec(NamedTuple):
    """What an imported ONNX op may carry: (fewest, most) inputs (most None: any number), its attributes
    with their types, and how many outputs (Dropout's mask is allowed, not computed)."""

    inputs: tuple
    attrs: dict = {}
    outputs: int = 1


class _Unsupported(Exception):
    """A well-formed node graphdef cannot express: listed with the unsupported ops."""


class _Malformed(Exception):
    """A node or tensor that breaks ONNX's rules: a located error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def _q(name) -> str:
    """A name as shown in a message: quoted, on one line, at most 60 characters."""
    text = repr(str(name))[1:-1]
    return f"'{text[:57]}...'" if len(text) > 60 else f"'{text}'"


def _label(k: int, node) -> str:
    return f"node {_q(node.name)} ({node.op_type}, #{k})" if node.name else f"node #{k} ({node.op_type})"


VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")


def _valid_name(onnx_name: str) -> str:
    """An ONNX name made a valid graphdef name (not yet unique)."""
    name = re.sub(r"[^A-Za-z0-9_./-]", "_", onnx_name.strip("/")) or "v"
    return name if re.match(r"[A-Za-z_]", name) else f"v_{name}"


class _Importer:
    def __init__(self, proto, file: str | None, limits: Limits):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        self.file, self.limits, self.graph = file, limits, proto.graph
        _check_graph(self, proto)
        self.opset = _opset(self, proto)
        self.names, self.taken, self.suffix, self.nodes = {}, set(), Counter(), {}
        self.attribute_only, self.read, self.constants, self.extra = set(), set(), set(), {}
        self.arrays = self.initializers()
        self.keep_valid_names()
        self.defined = set(self.arrays) | {i.name for i in self.graph.input}
        self.later = {o for node in self.graph.node for o in node.output}
        self.shapes = self.infer(proto)

    def problem(self, message: str, path: str | None = None, hint: str | None = None) -> Problem:
        return Problem(message, self.file, path=path, hint=hint)

    def initializers(self) -> dict:
        arrays, problems = {}, []
        for k, t in enumerate(self.graph.initializer):
            try:
                arrays[t.name] = self.array(t, f"initializer {_q(t.name)}")
            except _Malformed as e:
                problems.append(self.problem(str(e), f"graph.initializer[{k}]", e.hint))
        if problems:
            raise GraphDefError(problems)
        return arrays

    def infer(self, proto) -> dict:
        """Every value's shape ONNX's shape inference finds (None where unknown); not run on a model
        with ops graphdef does not import (it fails anyway), so it never sees functions or subgraphs."""
        if any(n.domain not in ("", "ai.onnx") or n.op_type not in IMPORT for n in self.graph.node):
            return {}
        try:
            proto = self.onnx.shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - shapes only refine the import; a model without them still imports
            pass
        g = proto.graph
        return {v.name: _shape(v) for v in [*g.input, *g.value_info, *g.output]}

    def array(self, tensor, what: str) -> np.ndarray:
        """A TensorProto's values, after checking what it declares against what it holds."""
        if tensor.data_location == EXTERNAL or len(tensor.external_data):
            raise _Malformed(f"{what} keeps its values in an external file",
                             "graphdef imports self-contained ONNX files (save with all tensors inside)")
        if tensor.data_type not in ELEMENTS:
            raise _Malformed(f"{what} has element type {_element_name(tensor.data_type)}",
                             "graphdef imports float and double tensors (and int32/int64 shapes and axes)")
        kind, dtype, field = ELEMENTS[tensor.data_type]
        dims = list(tensor.dims)
        if any(d < 0 for d in dims):
            raise _Malformed(f"{what} has a negative dimension in its shape {dims}")
        count, itemsize = math.prod(dims), np.dtype(dtype).itemsize
        held = len(tensor.raw_data) / itemsize if tensor.raw_data else len(getattr(tensor, field))
        if held != count:
            raise _Malformed(f"{what} has shape {dims} ({count:,} values) but holds {held:g} {kind} values",
                             "the file is damaged or was written wrongly: export it again")
        value = np.asarray(self.numpy_helper.to_array(tensor))
        if value.dtype.kind == "f" and np.isnan(value).any():
            raise _Malformed(f"{what} contains NaN", "no model means NaN: export the model again from finite values")
        return value

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
            name = self.names[onnx_name] = self.fresh(_valid_name(onnx_name))
        return name

    def fresh(self, base: str) -> str:
        """A name no value has yet: base, else base_1, base_2, ... (a counter per base keeps this linear)."""
        name = base
        while name in self.taken:
            self.suffix[base] += 1
            name = f"{base}_{self.suffix[base]}"
        self.taken.add(name)
        return name

    def emit(self, onnx_out: str | None, op: str, inputs: list, **attrs) -> str:
        name = self.ref(onnx_out) if onnx_out else self.fresh("tmp")
        self.nodes[name] = {"op": op, "inputs": inputs, **attrs}
        return name

    def static(self, onnx_name: str, what: str):
        """The value of an initializer or Constant an op needs as an attribute (a shape, axes)."""
        if onnx_name not in self.arrays:
            raise _Unsupported(f"{what} computed at run time")
        self.attribute_only.add(onnx_name)
        return self.arrays[onnx_name]

    def rank(self, onnx_name: str) -> int | None:
        shape = self.shapes.get(onnx_name)
        if shape is None and onnx_name in self.arrays:
            return self.arrays[onnx_name].ndim
        return None if shape is None else len(shape)

    def convert(self, node) -> None:
        """One ONNX node checked (arity, attributes, references, outputs) and converted."""
        spec = SPECS[node.op_type]
        _check_arity(node, spec)
        attrs = self.attrs(node, spec)
        for name in node.input:
            if name:
                self.check_reference(name)
        _check_outputs(self, node, spec)
        IMPORT[node.op_type](self, node, attrs)
        self.defined.add(node.output[0])
        self.extra.update({o: node.op_type for o in node.output[1:] if o})

    def check_reference(self, name: str) -> None:
        if name in self.defined:
            return
        if name in self.extra:
            raise _Malformed(f"reads {_q(name)}, an extra output of {self.extra[name]} that graphdef does not compute")
        if name in self.later:
            raise _Malformed(f"reads {_q(name)} before any node computes it: the graph has a cycle or is out of order",
                             "ONNX lists each node after the nodes it reads")
        raise _Malformed(f"reads {_q(name)}, which no input, initializer or node defines")

    def attrs(self, node, spec: Spec) -> dict:
        values = {}
        for a in node.attribute:
            if a.name not in spec.attrs:
                raise _Malformed(f"has an attribute {_q(a.name)}, not one graphdef reads for {node.op_type}",
                                 f"{node.op_type} takes: {', '.join(spec.attrs) or 'no attributes'}")
            if a.type != spec.attrs[a.name] or a.name in values:
                raise _Malformed(f"attribute {_q(a.name)} is {ATTRIBUTE_TYPES.get(a.type, f'of type {a.type}')}"
                                 + (" and given twice" if a.name in values else ""),
                                 f"it must be {ATTRIBUTE_TYPES[spec.attrs[a.name]]}, given once")
            value = self.helper.get_attribute_value(a)
            values[a.name] = self.array(value, f"attribute {_q(a.name)}") if a.type == TENSOR else value
        return values


def _element_name(data_type: int) -> str:
    try:
        import onnx
        return onnx.TensorProto.DataType.Name(data_type).lower()
    except ValueError:
        return f"#{data_type} (no ONNX type)"


def _opset(imp, proto) -> int:
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < 1:
        raise GraphDefError(imp.problem(f"the model's ONNX opset {opset} is not a valid opset version",
                                        "opset_import", "the file is damaged: export it again"))
    return opset


def _check_graph(imp, proto) -> None:
    """Refuse what no node check would see: no graph, no outputs, bad names and types, sizes past the limits."""
    g, limits = proto.graph, imp.limits
    if not proto.HasField("graph"):
        raise GraphDefError(imp.problem("not an ONNX model: it has no graph", hint="export the model to ONNX again"))
    size = len(g.node) + len(g.initializer) + len(g.input)
    if size > limits.max_vertices:
        raise GraphDefError(imp.problem(f"the ONNX graph has {size:,} nodes, initializers and inputs, more than "
                                        f"{limits.max_vertices:,}", hint=limits.exceeded("max_vertices")))
    values = sum(math.prod(t.dims) for t in _tensors(g))
    if values > limits.max_parameter_values:
        raise GraphDefError(imp.problem(f"the ONNX model's tensors hold {values:,} values, more than "
                                        f"{limits.max_parameter_values:,}",
                                        hint=limits.exceeded("max_parameter_values")))
    problems = _text_problems(imp, proto)
    if problems:
        raise GraphDefError(problems)
    problems = _name_problems(imp, g) + _input_problems(imp, g)
    if len(g.sparse_initializer):
        problems.append(imp.problem("the model has sparse initializers", "graph.sparse_initializer",
                                    "graphdef imports dense tensors only"))
    if not g.output:
        problems.append(imp.problem("the ONNX graph has no outputs", "graph.output",
                                    "an ONNX model lists the values it computes as graph outputs"))
    if problems:
        raise GraphDefError(problems)


def _text_problems(imp, proto) -> list:
    """Names and texts stored as invalid UTF-8 (protobuf hands them over as bytes): one problem per place."""
    g = proto.graph
    fields = [("graph", (g.name, g.doc_string, proto.doc_string)),
              ("metadata_props", [t for p in proto.metadata_props for t in (p.key, p.value)]),
              ("opset_import", [o.domain for o in proto.opset_import])]
    fields += [(f"graph.{section}[{k}]", (v.name,)) for section in ("initializer", "input", "output")
               for k, v in enumerate(getattr(g, section))]
    fields += [(f"graph.node[{k}]", (n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)))
               for k, n in enumerate(g.node)]
    return [imp.problem("a name or text here is not valid UTF-8", path, "the file is damaged: export it again")
            for path, texts in fields if any(isinstance(t, bytes) for t in texts)]


def _tensors(graph):
    """The initializers and the tensors of Constant nodes (what holds the model's values)."""
    yield from graph.initializer
    for node in graph.node:
        yield from (a.t for a in node.attribute if a.type == TENSOR)


def _name_problems(imp, g) -> list:
    """Empty and repeated names of initializers, inputs and outputs."""
    problems = []
    for section, items in (("initializer", g.initializer), ("input", g.input), ("output", g.output)):
        seen = set()
        for k, item in enumerate(items):
            if not item.name or item.name in seen:
                what = f"{section} {_q(item.name)} is listed twice" if item.name else f"{section} #{k} has no name"
                problems.append(imp.problem(what, f"graph.{section}[{k}]", "every ONNX value needs its own name"))
            seen.add(item.name)
    return problems


def _input_problems(imp, g) -> list:
    """Graph inputs (not initializers) must be float tensors of non-negative sizes."""
    problems, stored = [], {t.name for t in g.initializer}
    for k, i in enumerate(g.input):
        t = i.type.tensor_type
        if i.name in stored:
            continue
        if t.elem_type not in (1, 11):
            problems.append(imp.problem(f"input {_q(i.name)} is not a float tensor (element type "
                                        f"{_element_name(t.elem_type)})", f"graph.input[{k}]",
                                        "graphdef computes in float32/float64"))
        elif any(d.dim_value < 0 for d in t.shape.dim):
            problems.append(imp.problem(f"input {_q(i.name)} has a negative size in its shape "
                                        f"{[d.dim_value for d in t.shape.dim]}",
                                        f"graph.input[{k}]", "the file is damaged: export it again"))
    return problems


def _check_arity(node, spec: Spec) -> None:
    fewest, most = spec.inputs
    given = len(node.input)
    while given and not node.input[given - 1]:  # trailing empty names: optional inputs left out
        given -= 1
    if given < fewest or most is not None and given > most:
        wanted = f"{fewest}" if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
        raise _Malformed(f"has {given} input{'s' * (given != 1)}; {node.op_type} takes {wanted}")
    missing = [k for k in range(fewest) if not node.input[k]]
    if missing:
        raise _Malformed(f"leaves its required input #{missing[0]} empty")


def _check_outputs(imp, node, spec: Spec) -> None:
    if not node.output or not node.output[0]:
        raise _Malformed("has no output name", "every ONNX node names the value it computes")
    if len(node.output) > spec.outputs:
        raise _Malformed(f"has {len(node.output)} outputs; {node.op_type} has {spec.outputs}")
    for name in node.output:
        if name and (name in imp.defined or name in imp.extra):
            raise _Malformed(f"computes {_q(name)}, which is already defined", "every ONNX value needs its own name")


def _shape(value_info):
    """A value's shape: None where unknown (a negative size too: graph inputs are checked apart)."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in t.shape.dim]


def _i(imp, node, k=0):
    imp.read.add(node.input[k])
    return imp.ref(node.input[k])


def _ints(value, what: str) -> list:
    """A static 1-D integer tensor (axes, a shape) as a list."""
    value = np.asarray(value)
    if value.ndim != 1 or value.dtype.kind not in "iu":
        raise _Malformed(f"{what} must be a 1-D tensor of integers, not one of shape {list(value.shape)} "
                         f"and type {value.dtype}")
    return [int(v) for v in value]


def _axes(axes: list, rank: int | None, what: str = "axis", stop: int = 0) -> list:
    """Axes checked against the rank (ONNX counts a negative axis from the end) and made non-negative;
    `stop` 1 admits the axis just past the last (Flatten's)."""
    if rank is None:
        if len(set(axes)) != len(axes):
            raise _Malformed(f"{what} {axes} repeats an axis")
        return axes
    bad = [a for a in axes if not -rank <= a < rank + stop]
    if bad:
        raise _Malformed(f"{what} {bad[0]} is out of range for an input of rank {rank}",
                         f"use an axis from {-rank} to {rank - 1 + stop}" if rank + stop else "a scalar has no axis")
    out = [a + rank if a < 0 else a for a in axes]
    if len(set(out)) != len(out):
        raise _Malformed(f"{what} {axes} repeats an axis")
    return out


def _reshape_target(shape: list, op: str) -> list:
    """A reshape target for a shape with at most one unknown size (-1 in its place)."""
    if sum(d is None for d in shape) > 1:
        raise _Unsupported(f"{op} of an input with more than one unknown size")
    return [-1 if d is None else int(d) for d in shape]


def _elementwise(op):
    return lambda imp, node, a: imp.emit(node.output[0], op, [_i(imp, node, k) for k in range(len(node.input))])


def _softmax(op):
    """Softmax/LogSoftmax: one axis from opset 13 on; before, the input flattened to 2-D at `axis`,
    which is graphdef's softmax only when that axis is the last."""
    def convert(imp, node, a):
        rank = imp.rank(node.input[0])
        if imp.opset >= 13:
            axis = _axes([a.get("axis", -1)], rank)[0]
            return imp.emit(node.output[0], op, [_i(imp, node)], axis=axis)
        axis = _axes([a.get("axis", 1)], rank)[0]
        if not _is_last_axis(axis, rank or None):
            raise _Unsupported(f"opset {imp.opset} {node.op_type} over axis {axis} (it flattens the trailing axes)")
        return imp.emit(node.output[0], op, [_i(imp, node)], axis=-1)
    return convert


def _is_last_axis(axis: int, rank: int | None) -> bool:
    """Whether axis is the last one; an unknown rank is taken as the 2-D case exporters produce."""
    return axis == -1 or (axis == 1 if rank is None else axis % rank == rank - 1)


def _dropout(imp, node, a):
    """Inference: a no-op, unless the training_mode input is a static true (random, which graphdef is not)."""
    if len(node.input) > 2 and node.input[2] and np.any(imp.static(node.input[2], "Dropout training_mode")):
        raise _Unsupported("Dropout in training mode")
    return imp.emit(node.output[0], "identity", [_i(imp, node)])


def _gemm(imp, node, a):
    for k in (0, 1):
        if imp.rank(node.input[k]) not in (None, 2):
            raise _Malformed(f"input #{k} has rank {imp.rank(node.input[k])}; Gemm multiplies matrices (rank 2)")
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise _Malformed(f"alpha {alpha} or beta {beta} is not a finite number")
    x = imp.emit(None, "transpose", [_i(imp, node)]) if a.get("transA") else _i(imp, node)
    w = imp.emit(None, "transpose", [_i(imp, node, 1)]) if a.get("transB") else _i(imp, node, 1)
    bias = len(node.input) > 2 and node.input[2]
    y = imp.emit(None if bias or alpha != 1 else node.output[0], "matmul", [x, w])
    if alpha != 1:
        y = imp.emit(None if bias else node.output[0], "mul", [y, alpha])
    if bias:
        c = _i(imp, node, 2) if beta == 1 else imp.emit(None, "mul", [_i(imp, node, 2), beta])
        y = imp.emit(node.output[0], "add", [y, c])
    return y


def _reduce(op):
    def convert(imp, node, a):
        if len(node.input) > 1 and node.input[1]:
            axes = _ints(imp.static(node.input[1], "reduction axes"), "reduction axes")
        else:
            axes = list(a.get("axes", []))
        if not axes and a.get("noop_with_empty_axes", 0):
            return imp.emit(node.output[0], "identity", [_i(imp, node)])
        axes = _axes(axes, imp.rank(node.input[0]), "reduction axis")
        return imp.emit(node.output[0], op, [_i(imp, node)], axis=axes or None, keepdims=bool(a.get("keepdims", 1)))
    return convert


def _reshape(imp, node, a):
    shape = _ints(imp.static(node.input[1], "target shape"), "Reshape's target shape")
    if shape.count(-1) > 1 or any(d < -1 for d in shape):
        raise _Malformed(f"target shape {shape}: at most one -1 (inferred) and no other negative size")
    source = imp.shapes.get(node.input[0])
    for i, d in enumerate(shape):
        if d == 0 and not a.get("allowzero", 0):
            if source is None or i >= len(source) or source[i] is None:
                raise _Unsupported("Reshape copying a dimension whose size is unknown (0 in the shape)")
            shape[i] = source[i]
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=shape)


def _flatten(imp, node, a):
    source = imp.shapes.get(node.input[0])
    if source is None:
        raise _Unsupported("Flatten of an input whose shape is unknown")
    axis = _axes([a.get("axis", 1)], len(source), stop=1)[0]
    outer, inner = source[:axis], source[axis:]
    if None in outer and None in inner:
        raise _Unsupported("Flatten of an input with unknown sizes on both sides of its axis")
    shape = [math.prod(outer), -1] if None in inner else [-1, math.prod(inner)]
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=shape)


def _squeeze_axes(imp, node, a, what: str):
    """Axes given as the second input (opset 13 on) or as the `axes` attribute (before); None: not given."""
    if len(node.input) > 1 and node.input[1]:
        return _ints(imp.static(node.input[1], what), what)
    return list(a["axes"]) if "axes" in a else None


def _unsqueeze(imp, node, a):
    axes, source = _squeeze_axes(imp, node, a, "Unsqueeze axes"), imp.shapes.get(node.input[0])
    if axes is None:
        raise _Malformed("has no axes (its second input; the axes attribute before opset 13)")
    if source is None:
        raise _Unsupported("Unsqueeze of an input whose shape is unknown")
    shape = list(source)
    for axis in sorted(_axes(axes, len(source) + len(axes))):
        shape.insert(axis, 1)
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=_reshape_target(shape, "Unsqueeze"))


def _squeeze(imp, node, a):
    axes, source = _squeeze_axes(imp, node, a, "Squeeze axes"), imp.shapes.get(node.input[0])
    if source is None or axes is None and None in source:
        raise _Unsupported("Squeeze of an input whose sizes are unknown")
    axes = _axes([i for i, d in enumerate(source) if d == 1] if axes is None else axes, len(source))
    wide = [axis for axis in axes if source[axis] not in (1, None)]
    if wide:
        raise _Malformed(f"squeezes axis {wide[0]} of size {source[wide[0]]}; only an axis of size 1 can go")
    shape = [d for i, d in enumerate(source) if i not in axes]
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=_reshape_target(shape, "Squeeze"))


def _sum(imp, node, a):
    total = _i(imp, node)
    for k in range(1, len(node.input)):
        total = imp.emit(node.output[0] if k == len(node.input) - 1 else None, "add", [total, _i(imp, node, k)])
    return total if len(node.input) > 1 else imp.emit(node.output[0], "identity", [total])


def _transpose(imp, node, a):
    perm, rank = a.get("perm"), imp.rank(node.input[0])
    if perm is None:
        return imp.emit(node.output[0], "transpose", [_i(imp, node)])
    if sorted(perm) != list(range(len(perm))) or rank is not None and len(perm) != rank:
        raise _Malformed(f"perm {list(perm)} is not a permutation of the axes of its input"
                         + (f" (rank {rank})" if rank is not None else ""))
    return imp.emit(node.output[0], "transpose", [_i(imp, node)], axes=list(perm))


CONSTANT_TYPES = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64,
                  "value_ints": np.int64}


def _constant(imp, node, a):
    if len(a) != 1:
        raise _Malformed(f"has {len(a)} values; a Constant has exactly one",
                         "give one of: " + ", ".join(SPECS["Constant"].attrs))
    (key, value), = a.items()
    value = value if key == "value" else np.asarray(value, CONSTANT_TYPES[key])
    if np.isnan(value).any():
        raise _Malformed(f"{key} contains NaN", "no model means NaN: export the model again from finite values")
    imp.arrays[node.output[0]] = value
    imp.constants.add(imp.ref(node.output[0]))
    return None


UNARY = [("Relu", "relu"), ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("Exp", "exp"), ("Log", "log"),
         ("Neg", "neg"), ("Reciprocal", "reciprocal"), ("Sqrt", "sqrt"), ("Abs", "abs"), ("Identity", "identity")]
BINARY = [("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"), ("Pow", "pow"), ("MatMul", "matmul")]
REDUCE = {"axes": INTS, "keepdims": INT, "noop_with_empty_axes": INT}
IMPORT = {
    **{onnx_op: _elementwise(op) for onnx_op, op in BINARY + UNARY},
    "Dropout": _dropout, "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "Gemm": _gemm, "ReduceSum": _reduce("sum"), "ReduceMean": _reduce("mean"), "Reshape": _reshape,
    "Flatten": _flatten, "Transpose": _transpose, "Sum": _sum, "Constant": _constant,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze,
}
SPECS = {
    **{onnx_op: Spec((2, 2)) for onnx_op, _ in BINARY}, **{onnx_op: Spec((1, 1)) for onnx_op, _ in UNARY},
    "Dropout": Spec((1, 3), {"seed": INT, "ratio": FLOAT, "is_test": INT}, outputs=2),
    "Softmax": Spec((1, 1), {"axis": INT}), "LogSoftmax": Spec((1, 1), {"axis": INT}),
    "Gemm": Spec((2, 3), {"alpha": FLOAT, "beta": FLOAT, "transA": INT, "transB": INT}),
    "ReduceSum": Spec((1, 2), REDUCE), "ReduceMean": Spec((1, 2), REDUCE),
    "Reshape": Spec((2, 2), {"allowzero": INT}), "Flatten": Spec((1, 1), {"axis": INT}),
    "Transpose": Spec((1, 1), {"perm": INTS}), "Sum": Spec((1, None)),
    "Constant": Spec((0, 0), {"value": TENSOR, "value_float": FLOAT, "value_floats": FLOATS, "value_int": INT,
                              "value_ints": INTS}),
    "Unsqueeze": Spec((1, 2), {"axes": INTS}), "Squeeze": Spec((1, 2), {"axes": INTS}),
}
MAX_LISTED = 10  # unsupported op types named in one error


def to_document(proto, name: str | None = None, file: str | None = None, limits: Limits = LIMITS) -> tuple[dict, dict]:
    """(graphdef document, name -> array of its parameters) for an ONNX ModelProto.

    Every malformed node, tensor or name is a GraphDefError naming it (and `file`); sizes past
    `limits` are refused before anything is decoded."""
    imp = _Importer(proto, file, limits)
    loss = _recorded_loss(imp, proto)
    _convert_nodes(imp)
    outputs = _outputs(imp)
    data, dtype = _values(imp)
    marked = _metadata_list(imp, proto, CONSTANTS_KEY)
    constants = imp.constants | {imp.ref(k) for k in marked if k in imp.arrays}
    weights = {k: v for k, v in data.items() if k not in constants}
    doc = {"graphdef": 1, "name": _valid_name(name or imp.graph.name or "imported"),
           "description": imp.graph.doc_string or proto.doc_string or f"imported from ONNX (opset {imp.opset})",
           "dtype": dtype,
           "inputs": {imp.ref(i.name): {"shape": _shape(i)} if _shape(i) is not None else {}
                      for i in imp.graph.input if i.name not in imp.arrays},
           "parameters": {k: {"shape": list(v.shape), "init": "zeros"} for k, v in weights.items()},
           "constants": {k: v.tolist() for k, v in data.items() if k in constants},
           "nodes": imp.nodes, "outputs": outputs}
    if loss is not None:
        doc["outputs"] = [o for o in outputs if o != loss[1]] or [loss[0]]
        doc["loss"] = loss[0]
    return doc, weights


def _convert_nodes(imp) -> None:
    """Every node converted; the malformed ones and the unsupported ops reported together."""
    problems, unsupported, reasons = [], Counter(), {}
    for k, node in enumerate(imp.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type not in IMPORT:
            unsupported[node.op_type] += 1
        else:
            try:
                imp.convert(node)
                continue
            except _Unsupported as e:
                unsupported[node.op_type] += 1
                reasons[node.op_type] = str(e)
            except _Malformed as e:
                problems.append(imp.problem(f"{_label(k, node)}: {e}", f"graph.node[{k}]", e.hint))
        imp.defined.update(o for o in node.output if o)  # later nodes reading them are not reported too
    if unsupported:
        listed = ", ".join(f"{_q(op)[1:-1]} ×{n}" + (f" ({reasons[op]})" if op in reasons else "")
                           for op, n in list(unsupported.items())[:MAX_LISTED])
        more = f" and {len(unsupported) - MAX_LISTED} more" if len(unsupported) > MAX_LISTED else ""
        problems.append(imp.problem(f"the ONNX model uses ops graphdef cannot import: {listed}{more}",
                                    hint="graphdef imports: " + ", ".join(sorted(IMPORT))))
    if problems:
        raise GraphDefError(problems)


def _outputs(imp) -> list:
    """The graphdef names of the graph's outputs, each computed by the graph."""
    problems = [imp.problem(f"output {_q(o.name)} is not computed by any node", f"graph.output[{k}]",
                            "the file is damaged or was written wrongly: export it again")
                for k, o in enumerate(imp.graph.output) if o.name not in imp.defined or o.name in imp.extra]
    if problems:
        raise GraphDefError(problems)
    return [imp.ref(o.name) for o in imp.graph.output]


def _values(imp) -> tuple[dict, str]:
    """The initializers and constants the graph reads as values (not as a shape or axes), and the dtype."""
    used = {k: v for k, v in imp.arrays.items() if k not in imp.attribute_only or k in imp.read}
    wrong = [k for k, v in used.items() if v.dtype.kind != "f"]
    if wrong:
        raise GraphDefError([imp.problem(f"{_q(k)} holds {used[k].dtype} values, which a graphdef node cannot read",
                                         hint="graphdef computes in float32/float64") for k in wrong])
    kinds = {i.type.tensor_type.elem_type for i in imp.graph.input if i.name not in imp.arrays}
    dtype = "float32" if kinds <= {1} and all(v.dtype == np.float32 for v in used.values()) else "float64"
    return {imp.ref(k): np.asarray(v, dtype=dtype) for k, v in used.items()}, dtype


def _metadata(proto, key: str) -> str | None:
    return next((p.value for p in proto.metadata_props if p.key == key), None)


def _metadata_list(imp, proto, key: str) -> list:
    """A JSON list of names graphdef's export recorded in the metadata ([] when there is none)."""
    text = _metadata(proto, key)
    try:
        names = [] if text is None else json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GraphDefError(imp.problem(f"metadata {_q(key)} is not a JSON list of names", "metadata_props",
                                        "the file is damaged: export it again"))
    return names


def _recorded_loss(imp, proto) -> tuple[str, str] | None:
    """(the model's loss, the graphdef name of the ONNX value it averages) from export's metadata.

    graphdef's export writes the loss of each sample (the model run on a batch); the imported
    model's loss is their mean, which is what graphdef's training minimizes."""
    loss = _metadata(proto, LOSS_KEY)
    if loss is None:
        return None
    outputs = {o.name: o for o in imp.graph.output}
    if loss not in outputs:
        raise GraphDefError(imp.problem(f"metadata names the loss {_q(loss)}, which is no output of the graph",
                                        "metadata_props", "the file is damaged: export it again"))
    if not _shape(outputs[loss]):  # a scalar (or of unknown shape): it is the loss itself
        return imp.ref(loss), imp.ref(loss)
    final = imp.ref(loss)
    imp.names[loss] = imp.fresh(f"{final}/per_sample")
    imp.nodes[final] = {"op": "mean", "inputs": [imp.names[loss]]}
    return final, imp.names[loss]


def add_loss(doc: dict, loss: str, target_shape, target: str = "y") -> dict:
    """The document with a target input and a loss node on the first output, ready to train."""
    if loss not in ("softmax_cross_entropy", "cross_entropy", "mse"):
        raise GraphDefError(Problem(f"unknown loss '{loss}'", hint="use softmax_cross_entropy, cross_entropy or mse"))
    if doc.get("loss"):
        raise GraphDefError(Problem(f"the ONNX model already has a loss, '{doc['loss']}'",
                                    hint="import it without a loss, or export the model without --with-loss"))
    taken = [n for n in (target, "loss") if n in {**doc["inputs"], **doc["parameters"], **doc["constants"],
                                                   **doc["nodes"]}]
    if taken:
        raise GraphDefError(Problem(f"the ONNX model already has a value named '{taken[0]}', the name the added "
                                    "loss needs", hint="rename that value in the ONNX model, or import without a loss"))
    inputs = {**doc["inputs"], target: {"shape": list(target_shape), "description": "what the model should output"}}
    nodes = {**doc["nodes"], "loss": {"op": loss, "inputs": [doc["outputs"][0], target]}}
    return {**doc, "inputs": inputs, "nodes": nodes, "loss": "loss"}


def load(path, name: str | None = None, loss: str | None = None, limits: Limits = LIMITS):
    """An ONNX file as a graphdef Model (initializers as its parameters; see from_proto for `loss`).

    The file is read whole (at most limits.max_file_bytes) and parsed without following
    references to external data files: a model file cannot make graphdef read another file."""
    onnx, _, _ = _onnx()
    data = _read_bytes(Path(path), limits)
    try:
        proto = onnx.ModelProto.FromString(data)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the file's fault
        raise GraphDefError(Problem(f"not a readable ONNX model ({type(e).__name__}: {str(e)[:200]})", str(path),
                                    hint="check that this is an .onnx file, and export it again")) from None
    return from_proto(proto, name or Path(path).stem, loss, file=str(path), limits=limits)


def _read_bytes(path: Path, limits: Limits) -> bytes:
    try:
        if path.is_dir():
            raise GraphDefError(Problem("is a directory, not an ONNX file", str(path)))
        if path.stat().st_size > limits.max_file_bytes:
            raise GraphDefError(Problem(f"file is larger than {limits.max_file_bytes:,} bytes", str(path),
                                        hint=limits.exceeded("max_file_bytes")))
        return path.read_bytes()
    except FileNotFoundError:
        raise GraphDefError(Problem("file not found", str(path), hint="check the path")) from None
    except OSError as e:
        raise GraphDefError(Problem(f"cannot read file: {e.strerror or e}", str(path))) from None


def from_proto(proto, name: str | None = None, loss: str | None = None, *, file: str | None = None,
               limits: Limits = LIMITS):
    """A graphdef Model of an ONNX ModelProto; with `loss`, a target input `y` and that loss are added.

    A model exported by graphdef with its loss gets that loss back, and its constants stay constants."""
    if proto.ByteSize() > limits.max_file_bytes:
        raise GraphDefError(Problem(f"the ONNX model is larger than {limits.max_file_bytes:,} bytes", file,
                                    hint=limits.exceeded("max_file_bytes")))
    doc, weights = to_document(proto, name, file, limits)
    model = _build(doc, file, limits)
    if loss is not None:
        model = _build(add_loss(doc, loss, _target_shape(model, doc["outputs"][0])), file, limits)
    for k, v in weights.items():
        model.parameters[k][...] = v
    model.untrained = []  # every parameter has the value the ONNX file gives it
    return model


def _target_shape(model, output: str) -> list:
    """The shape of the target an added loss compares `output` with: the output's, free sizes None."""
    shape = model.graph.vertices[output].shape
    if shape is None:
        raise GraphDefError(Problem(f"cannot add a loss: the shape of output '{output}' is unknown",
                                    hint="import without a loss and add one in the YAML"))
    return list(shape)


def _build(doc: dict, file: str | None, limits: Limits):
    """The Model of an imported document; its problems name the ONNX file."""
    from ..format.loader import from_document
    try:
        return from_document(doc, limits=limits)
    except GraphDefError as e:
        raise GraphDefError([replace(p, file=p.file or file) for p in e.errors]) from None


# -- conformance ------------------------------------------------------------------------

class Report:
    """Outcome of ONNX's node test cases for the ops graphdef imports."""

    def __init__(self):
        self.passed, self.failed, self.skipped = [], [], []  # names; (name, why) for failed and skipped

    def summary(self) -> str:
        run = len(self.passed) + len(self.failed)
        return (f"ONNX node test cases for the imported ops: {run} run, {len(self.passed)} passed, "
                f"{len(self.failed)} failed, {len(self.skipped)} skipped")

    def markdown(self) -> str:
        lines = ["# ONNX conformance", "", "Written by `graphdef onnx-conformance --report docs/onnx_conformance.md`:",
                 "ONNX's own per-operator test cases (`onnx.backend.test.case.node`) for the ops graphdef",
                 "imports, each imported, run forward by graphdef and compared with ONNX's expected outputs",
                 "(relative tolerance 1e-5 in float32, 1e-9 in float64).", "", self.summary(), "",
                 "## Skipped, and why", "", "| case | why |", "|---|---|"]
        lines += [f"| {name} | {why} |" for name, why in self.skipped]
        if self.failed:
            lines += ["", "## Failed", "", "| case | why |", "|---|---|"] + [f"| {n} | {w} |" for n, w in self.failed]
        lines += ["", "## Passed", "", ", ".join(self.passed)]
        return "\n".join(lines) + "\n"


def conformance() -> Report:
    """Import every ONNX node test case whose op graphdef imports, run it, compare the outputs."""
    _onnx()
    import warnings

    import onnx.backend.test.case.node as node_cases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    report = Report()
    for case in sorted(cases, key=lambda c: c.name):
        ops = {n.op_type for n in case.model.graph.node}
        if not ops or not ops & (set(IMPORT) - {"Constant"}) or not ops <= set(IMPORT):
            continue
        why = _run_case(case)
        if why is None:
            report.passed.append(case.name)
        elif why.startswith("differs"):
            report.failed.append((case.name, why))
        else:
            report.skipped.append((case.name, why))
    return report


def _run_case(case) -> str | None:
    graph = case.model.graph
    kinds = {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    if not kinds <= {1, 11}:
        return "non-float tensors (graphdef computes in float32/float64)"
    try:
        model = from_proto(case.model, "case")
    except GraphDefError as e:
        return e.errors[0].message.replace("|", "/")
    names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for inputs, expected in case.data_sets:
        try:
            values = model.forward({model_name(model, n): v for n, v in zip(names, inputs)})
        except GraphDefError as e:
            return e.errors[0].message.replace("|", "/")
        for output, want in zip(graph.output, expected):
            got = np.asarray(values[model_name(model, output.name)])
            rtol = 1e-5 if want.dtype == np.float32 else 1e-9
            if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=rtol * 1e-2, equal_nan=True):
                return f"differs from ONNX's expected output ({got.shape} vs {want.shape})"
    return None


def model_name(model, onnx_name: str) -> str:
    """The graphdef name an imported ONNX value got (names are kept where valid)."""
    return next(n for n in [*model.inputs, *model.graph] if n == onnx_name or
                n == re.sub(r"[^A-Za-z0-9_./-]", "_", onnx_name.strip("/")) or n == f"v_{onnx_name}")
