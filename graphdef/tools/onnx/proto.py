"""Reading an ONNX file that comes from anywhere: what it declares is checked against what it holds.

Every tensor, name and size is checked (and graphdef's Limits applied) before anything is
built, each fault a located message; no external data file is ever read.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ...errors import GraphDefError, Problem

LOSS_KEY, CONSTANTS_KEY = "graphdef.loss", "graphdef.constants"  # metadata_props written by export
EXTERNAL = 1  # TensorProto.DataLocation
FLOAT_TYPES = {1: np.float32, 11: np.float64}
INTEGER_TYPES = {2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64, 12: np.uint32,
                 13: np.uint64}
BOOL = 9
READABLE = {**FLOAT_TYPES, **INTEGER_TYPES, BOOL: np.bool_}  # TensorProto element types graphdef reads
ATTRIBUTE_TYPES = {1: "a float", 2: "an int", 3: "a string", 4: "a tensor", 5: "a graph", 6: "a list of floats",
                   7: "a list of ints", 8: "a list of strings", 9: "a list of tensors", 10: "a list of graphs"}
TENSOR = 4


def onnx_modules():
    """(onnx, onnx.helper, onnx.numpy_helper), or a clear error when the extra is not installed."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise GraphDefError(Problem("ONNX support needs the onnx package",
                                    hint='pip install "graphdef[onnx]"')) from None
    return onnx, helper, numpy_helper


class Unsupported(Exception):
    """A well-formed node graphdef cannot express: listed with the unsupported ops."""


class Malformed(Exception):
    """A node or tensor that breaks ONNX's rules: a located error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def quoted(name) -> str:
    """A name as shown in a message: quoted, on one line, at most 60 characters."""
    text = repr(str(name))[1:-1]
    return f"'{text[:57]}...'" if len(text) > 60 else f"'{text}'"


def label(k: int, node) -> str:
    return f"node {quoted(node.name)} ({node.op_type}, #{k})" if node.name else f"node #{k} ({node.op_type})"


VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")


def valid_name(onnx_name: str) -> str:
    """An ONNX name made a valid graphdef name (not yet unique)."""
    name = re.sub(r"[^A-Za-z0-9_./-]", "_", onnx_name.strip("/")) or "v"
    return name if re.match(r"[A-Za-z_]", name) else f"v_{name}"


def element_name(data_type: int) -> str:
    import onnx
    try:
        return onnx.TensorProto.DataType.Name(data_type).lower()
    except ValueError:
        return f"#{data_type} (no ONNX type)"


def array(tensor, what: str) -> np.ndarray:
    """A TensorProto's values, after checking what it declares against what it holds."""
    _, _, numpy_helper = onnx_modules()
    if tensor.data_location == EXTERNAL or len(tensor.external_data):
        raise Malformed(f"{what} keeps its values in an external file",
                        "graphdef imports self-contained ONNX files (save with all tensors inside)")
    if tensor.data_type not in READABLE:
        raise Malformed(f"{what} has element type {element_name(tensor.data_type)}",
                        "graphdef imports float, double, integer and boolean tensors")
    dims, itemsize = list(tensor.dims), np.dtype(READABLE[tensor.data_type]).itemsize
    if any(d < 0 for d in dims):
        raise Malformed(f"{what} has a negative dimension in its shape {dims}")
    count = math.prod(dims)
    held = len(tensor.raw_data) / itemsize if tensor.raw_data else _held(tensor)
    if held != count:
        raise Malformed(f"{what} has shape {dims} ({count:,} values) but holds {held:g} "
                        f"{element_name(tensor.data_type)} values",
                        "the file is damaged or was written wrongly: export it again")
    value = np.asarray(numpy_helper.to_array(tensor))
    if value.dtype.kind == "f" and np.isnan(value).any():
        raise Malformed(f"{what} contains NaN", "no model means NaN: export the model again from finite values")
    return value


def _held(tensor) -> int:
    """How many values a tensor holds in its typed field (ONNX packs small integers into int32_data)."""
    fields = {1: "float_data", 11: "double_data", 7: "int64_data", 13: "uint64_data", 12: "uint64_data"}
    return len(getattr(tensor, fields.get(tensor.data_type, "int32_data")))


def opset_of(file, proto) -> int:
    onnx, _, _ = onnx_modules()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    if opset < 1:
        raise GraphDefError(Problem(f"the model's ONNX opset {opset} is not a valid opset version", file,
                                    path="opset_import", hint="the file is damaged: export it again"))
    if opset > onnx.defs.onnx_opset_version():
        raise GraphDefError(Problem(f"the model's ONNX opset {opset} is newer than this onnx package knows "
                                    f"({onnx.defs.onnx_opset_version()})", file, path="opset_import",
                                    hint="upgrade onnx (pip install -U onnx), or export with an older opset"))
    return opset


def check_graph(file, proto, limits) -> None:
    """Refuse what no node check would see: no graph, no outputs, bad names and types, sizes past the limits."""
    g = proto.graph

    def problem(message, path=None, hint=None):
        return Problem(message, file, path=path, hint=hint)
    if not proto.HasField("graph"):
        raise GraphDefError(problem("not an ONNX model: it has no graph", hint="export the model to ONNX again"))
    size = len(g.node) + len(g.initializer) + len(g.input)
    if size > limits.max_vertices:
        raise GraphDefError(problem(f"the ONNX graph has {size:,} nodes, initializers and inputs, more than "
                                    f"{limits.max_vertices:,}", hint=limits.exceeded("max_vertices")))
    values = sum(math.prod(t.dims) for t in tensors(g))
    if values > limits.max_parameter_values:
        raise GraphDefError(problem(f"the ONNX model's tensors hold {values:,} values, more than "
                                    f"{limits.max_parameter_values:,}", hint=limits.exceeded("max_parameter_values")))
    problems = _text_problems(problem, proto)
    if problems:
        raise GraphDefError(problems)
    problems = _name_problems(problem, g) + _input_problems(problem, g)
    if len(g.sparse_initializer):
        problems.append(problem("the model has sparse initializers", "graph.sparse_initializer",
                                "graphdef imports dense tensors only"))
    if not g.output:
        problems.append(problem("the ONNX graph has no outputs", "graph.output",
                                "an ONNX model lists the values it computes as graph outputs"))
    if problems:
        raise GraphDefError(problems)


def _text_problems(problem, proto) -> list:
    """Names and texts stored as invalid UTF-8 (protobuf hands them over as bytes): one problem per place."""
    g = proto.graph
    fields = [("graph", (g.name, g.doc_string, proto.doc_string)),
              ("metadata_props", [t for p in proto.metadata_props for t in (p.key, p.value)]),
              ("opset_import", [o.domain for o in proto.opset_import])]
    fields += [(f"graph.{section}[{k}]", (v.name,)) for section in ("initializer", "input", "output")
               for k, v in enumerate(getattr(g, section))]
    fields += [(f"graph.node[{k}]", (n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)))
               for k, n in enumerate(g.node)]
    return [problem("a name or text here is not valid UTF-8", path, "the file is damaged: export it again")
            for path, texts in fields if any(isinstance(t, bytes) for t in texts)]


def tensors(graph):
    """The initializers and the tensors of Constant nodes (what holds the model's values)."""
    yield from graph.initializer
    for node in graph.node:
        yield from (a.t for a in node.attribute if a.type == TENSOR)


def _name_problems(problem, g) -> list:
    """Empty and repeated names of initializers, inputs and outputs."""
    problems = []
    for section, items in (("initializer", g.initializer), ("input", g.input), ("output", g.output)):
        seen = set()
        for k, item in enumerate(items):
            if not item.name or item.name in seen:
                what = f"{section} {quoted(item.name)} is listed twice" if item.name else f"{section} #{k} has no name"
                problems.append(problem(what, f"graph.{section}[{k}]", "every ONNX value needs its own name"))
            seen.add(item.name)
    return problems


def _input_problems(problem, g) -> list:
    """Graph inputs (not initializers) must be float, integer or boolean tensors of non-negative sizes."""
    problems, stored = [], {t.name for t in g.initializer}
    for k, i in enumerate(g.input):
        t = i.type.tensor_type
        if i.name in stored:
            continue
        if t.elem_type not in READABLE:
            problems.append(problem(f"input {quoted(i.name)} has element type {element_name(t.elem_type)}",
                                    f"graph.input[{k}]",
                                    "graphdef computes in float32/float64, with int64 and bool tensors"))
        elif any(d.dim_value < 0 for d in t.shape.dim):
            problems.append(problem(f"input {quoted(i.name)} has a negative size in its shape "
                                    f"{[d.dim_value for d in t.shape.dim]}",
                                    f"graph.input[{k}]", "the file is damaged: export it again"))
    return problems


def dims_of(value_info):
    """A value's declared dims: an int, a symbolic name (str), or None where unknown; None: no shape."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else (d.dim_param or None)
            for d in t.shape.dim]
