"""ONNX interop: export a graphdef model to ONNX, import an ONNX model as graphdef YAML.

Export calls each op's own ONNX mapping (the `onnx` of its record) through an emitter;
it writes the parameters (trained values included) as initializers and gives every input
a leading symbolic `batch` dimension: the exported graph is the model run on a batch, each
node lifted by its batching rule as graphdef runs it. Import maps ONNX nodes to
graphdef ops, honouring opset differences, and turns float initializers into
parameters. Needs the `onnx` extra: pip install "graphdef[onnx]".
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..engine.lift import StepError, batched_vertices, lift_of
from ..errors import GraphDefError, Problem
from ..ops import OPS

DEFAULT_OPSET = 18
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


def export(model, path=None, opset: int = DEFAULT_OPSET):
    """The model as an ONNX ModelProto (written to `path` when given), checked by onnx.checker."""
    onnx, helper, _ = _onnx()
    if opset < MIN_OPSET:
        raise GraphDefError(Problem(f"opset {opset} is too old", hint=f"use --opset {MIN_OPSET} or newer"))
    missing = [s for s in model.steps if s.op.onnx is None]
    if missing:
        supported = sorted(name for name, op in OPS.items() if op.onnx is not None)
        raise GraphDefError([model.problem(s.name, f"node '{s.name}': op '{s.op.name}' has no ONNX equivalent",
                                           "export supports: " + ", ".join(supported)) for s in missing])
    e = _Exporter(model, opset)
    for name, value in {**model.constants, **model.parameters}.items():
        e.tensor(name, np.asarray(value, dtype=model.dtype))
    batched = batched_vertices(model.graph, set(model.batchable))
    for step in model.steps:
        doc = (model.doc.get("nodes") or {}).get(step.name, {}).get("description", "")
        ranks = [len(model.graph.vertices[a].shape or ()) + (a in batched) for a in step.inputs]
        try:
            e.step(step, lift_of(model.graph, step, batched), ranks)
        except StepError as err:
            raise GraphDefError(model.problem(step.name, f"node '{step.name}' cannot be exported: {err}")) from None
        e.nodes[-1].doc_string = doc
    inputs = [helper.make_tensor_value_info(n, e.elem, _input_shape(n, s, n in model.batchable))
              for n, s in model.inputs.items()]
    names = list(dict.fromkeys(model.outputs + ([model.loss] if model.loss else [])))
    outputs = [helper.make_tensor_value_info(n, e.elem, shape) for n, shape in _output_shapes(model, names).items()]
    graph = helper.make_graph(e.nodes, model.name, inputs, outputs, e.initializers, doc_string=model.description)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="graphdef",
                              doc_string=model.description)
    proto.ir_version = min(proto.ir_version, 10)  # what current onnxruntime releases read
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise GraphDefError(f"the exported model fails onnx.checker: {str(err).splitlines()[0]}") from None
    if path is not None:
        from ..format.serialize import atomic_write
        atomic_write(path, proto.SerializeToString())
    return proto


def _output_shapes(model, names) -> dict:
    """Each output's shape, the batch dimension symbolic: found by running two batch sizes."""
    def run(batch):
        feeds = {n: np.full(([batch] if n in model.batchable else []) + [d or batch for d in s or []], 0.5)
                 for n, s in model.inputs.items()}
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

class _Importer:
    def __init__(self, proto):
        self.onnx, self.helper, self.numpy_helper = _onnx()
        try:
            proto = self.onnx.shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - shapes only refine the import; a model without them still imports
            pass
        self.proto, graph = proto, proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.arrays = {i.name: self.numpy_helper.to_array(i) for i in graph.initializer}
        self.shapes = {v.name: _shape(v) for v in [*graph.input, *graph.value_info, *graph.output]}
        self.names, self.nodes, self.used = {}, {}, Counter()
        self.attribute_only, self.constants = set(), set()

    def ref(self, onnx_name: str) -> str:
        """The graphdef name for an ONNX value: kept where valid, else made valid (and unique)."""
        if onnx_name not in self.names:
            name = re.sub(r"[^A-Za-z0-9_./-]", "_", onnx_name.strip("/")) or "v"
            name = name if re.match(r"[A-Za-z_]", name) else f"v_{name}"
            while name in self.names.values():
                name += "_"
            self.names[onnx_name] = name
        return self.names[onnx_name]

    def emit(self, onnx_out: str | None, op: str, inputs: list, **attrs) -> str:
        name = self.ref(onnx_out) if onnx_out else self.ref(f"tmp{len(self.nodes)}")
        self.nodes[name] = {"op": op, "inputs": inputs, **attrs}
        return name

    def static(self, onnx_name: str, what: str):
        """The value of an initializer or Constant an op needs as an attribute (a shape, axes)."""
        if onnx_name not in self.arrays:
            raise _Unsupported(f"{what} computed at run time")
        self.attribute_only.add(onnx_name)
        return self.arrays[onnx_name]

    def attrs(self, node) -> dict:
        return {a.name: self.helper.get_attribute_value(a) for a in node.attribute}


class _Unsupported(Exception):
    pass


def _shape(value_info):
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def _i(imp, node, k=0):
    return imp.ref(node.input[k])


def _elementwise(op):
    return lambda imp, node, a: imp.emit(node.output[0], op, [_i(imp, node, k) for k in range(len(node.input))])


def _softmax(op):
    """Softmax/LogSoftmax: one axis from opset 13 on; before, the input flattened to 2-D at `axis`,
    which is graphdef's softmax only when that axis is the last."""
    def convert(imp, node, a):
        if imp.opset >= 13:
            return imp.emit(node.output[0], op, [_i(imp, node)], axis=a.get("axis", -1))
        axis, rank = a.get("axis", 1), len(imp.shapes.get(node.input[0]) or []) or None
        if not _is_last_axis(axis, rank):
            raise _Unsupported(f"opset {imp.opset} {node.op_type} over axis {axis} (it flattens the trailing axes)")
        return imp.emit(node.output[0], op, [_i(imp, node)], axis=-1)
    return convert


def _is_last_axis(axis: int, rank: int | None) -> bool:
    """Whether axis is the last one; an unknown rank is taken as the 2-D case exporters produce."""
    return axis == -1 or (axis == 1 if rank is None else axis % rank == rank - 1)


def _gemm(imp, node, a):
    x, w = _i(imp, node), _i(imp, node, 1)
    if a.get("transA"):
        x = imp.emit(None, "transpose", [x])
    if a.get("transB"):
        w = imp.emit(None, "transpose", [w])
    y = imp.emit(None if len(node.input) > 2 or a.get("alpha", 1.0) != 1 else node.output[0], "matmul", [x, w])
    if a.get("alpha", 1.0) != 1:
        y = imp.emit(None if len(node.input) > 2 else node.output[0], "mul", [y, float(a["alpha"])])
    if len(node.input) > 2 and node.input[2]:
        c = _i(imp, node, 2)
        if a.get("beta", 1.0) != 1:
            c = imp.emit(None, "mul", [c, float(a["beta"])])
        y = imp.emit(node.output[0], "add", [y, c])
    return y


def _reduce(op):
    def convert(imp, node, a):
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in imp.static(node.input[1], "reduction axes")]
        else:
            axes = list(a.get("axes", []))
        if not axes and a.get("noop_with_empty_axes", 0):
            return imp.emit(node.output[0], "identity", [_i(imp, node)])
        return imp.emit(node.output[0], op, [_i(imp, node)], axis=axes or None, keepdims=bool(a.get("keepdims", 1)))
    return convert


def _reshape(imp, node, a):
    shape = [int(v) for v in imp.static(node.input[1], "target shape")]
    source = imp.shapes.get(node.input[0])
    for i, d in enumerate(shape):
        if d == 0 and not a.get("allowzero", 0):
            if source is None or i >= len(source) or source[i] is None:
                raise _Unsupported("Reshape copying a dimension whose size is unknown (0 in the shape)")
            shape[i] = source[i]
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=shape)


def _flatten(imp, node, a):
    axis, source = a.get("axis", 1), imp.shapes.get(node.input[0])
    if source is None or any(d is None for d in source[axis:]):
        raise _Unsupported("Flatten of an input whose trailing sizes are unknown")
    return imp.emit(node.output[0], "reshape", [_i(imp, node)], shape=[-1, int(np.prod(source[axis:], dtype=int))])


def _sum(imp, node, a):
    total = _i(imp, node)
    for k in range(1, len(node.input)):
        total = imp.emit(node.output[0] if k == len(node.input) - 1 else None, "add", [total, _i(imp, node, k)])
    return total if len(node.input) > 1 else imp.emit(node.output[0], "identity", [total])


def _transpose(imp, node, a):
    perm = a.get("perm")
    return imp.emit(node.output[0], "transpose", [_i(imp, node)], **({"axes": list(perm)} if perm is not None else {}))


def _constant(imp, node, a):
    value = next(v for k, v in a.items() if k.startswith("value"))
    imp.arrays[node.output[0]] = np.asarray(imp.numpy_helper.to_array(value) if hasattr(value, "dims") else value)
    imp.constants.add(imp.ref(node.output[0]))
    return None


IMPORT = {
    **{onnx_op: _elementwise(op) for onnx_op, op in [
        ("Add", "add"), ("Sub", "sub"), ("Mul", "mul"), ("Div", "div"), ("Pow", "pow"), ("MatMul", "matmul"),
        ("Relu", "relu"), ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("Exp", "exp"), ("Log", "log"), ("Neg", "neg"),
        ("Reciprocal", "reciprocal"), ("Sqrt", "sqrt"), ("Abs", "abs"), ("Identity", "identity")]},
    "Dropout": lambda imp, node, a: imp.emit(node.output[0], "identity", [_i(imp, node)]),  # inference: a no-op
    "Softmax": _softmax("softmax"), "LogSoftmax": _softmax("log_softmax"),
    "Gemm": _gemm, "ReduceSum": _reduce("sum"), "ReduceMean": _reduce("mean"), "Reshape": _reshape,
    "Flatten": _flatten, "Transpose": _transpose, "Sum": _sum, "Constant": _constant,
}


def to_document(proto, name: str | None = None) -> tuple[dict, dict]:
    """(graphdef document, name -> array of its parameters) for an ONNX ModelProto."""
    imp = _Importer(proto)
    graph = proto.graph
    unsupported, reasons = Counter(), {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in IMPORT:
            unsupported[node.op_type] += 1
            continue
        try:
            IMPORT[node.op_type](imp, node, imp.attrs(node))
        except _Unsupported as e:
            unsupported[node.op_type] += 1
            reasons[node.op_type] = str(e)
    if unsupported:
        listed = ", ".join(f"{op} ×{n}" + (f" ({reasons[op]})" if op in reasons else "") for op, n in unsupported.items())
        raise GraphDefError(Problem(f"the ONNX model uses ops graphdef cannot import: {listed}",
                                    hint="graphdef imports: " + ", ".join(sorted(IMPORT))))
    elem = {i.type.tensor_type.elem_type for i in graph.input} | {i.data_type for i in graph.initializer
                                                                  if i.name not in imp.attribute_only}
    dtype = "float32" if elem <= {1} else "float64" if elem <= {11, 1} else None
    if dtype is None:
        raise GraphDefError(Problem("the ONNX model uses non-float tensors", hint="graphdef computes in float32/float64"))
    data = {imp.ref(k): np.asarray(v, dtype=dtype) for k, v in imp.arrays.items() if k not in imp.attribute_only}
    weights = {k: v for k, v in data.items() if k not in imp.constants}
    doc = {"graphdef": 1, "name": imp.ref(name or graph.name or "imported"),
           "description": graph.doc_string or proto.doc_string or f"imported from ONNX (opset {imp.opset})",
           "dtype": dtype,
           "inputs": {imp.ref(i.name): {"shape": _shape(i)} if _shape(i) is not None else {}
                      for i in graph.input if i.name not in imp.arrays},
           "parameters": {k: {"shape": list(v.shape), "init": "zeros"} for k, v in weights.items()},
           "constants": {k: v.tolist() for k, v in data.items() if k in imp.constants},
           "nodes": imp.nodes, "outputs": [imp.ref(o.name) for o in graph.output]}
    return doc, weights


def add_loss(doc: dict, loss: str, target_shape, target: str = "y") -> dict:
    """The document with a target input and a loss node on the first output, ready to train."""
    if loss not in ("softmax_cross_entropy", "cross_entropy", "mse"):
        raise GraphDefError(Problem(f"unknown loss '{loss}'", hint="use softmax_cross_entropy, cross_entropy or mse"))
    inputs = {**doc["inputs"], target: {"shape": list(target_shape), "description": "what the model should output"}}
    nodes = {**doc["nodes"], "loss": {"op": loss, "inputs": [doc["outputs"][0], target]}}
    return {**doc, "inputs": inputs, "nodes": nodes, "loss": "loss"}


def load(path, name: str | None = None, loss: str | None = None):
    """An ONNX file as a graphdef Model (initializers as its parameters; see from_proto for `loss`)."""
    onnx, _, _ = _onnx()
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - any failure to parse is the file's fault
        raise GraphDefError(Problem(f"cannot read ONNX model: {e}", str(path))) from None
    return from_proto(proto, name or Path(path).stem, loss)


def from_proto(proto, name: str | None = None, loss: str | None = None):
    """A graphdef Model of an ONNX ModelProto; with `loss`, a target input `y` and that loss are added."""
    from ..format.loader import from_document
    doc, weights = to_document(proto, name)
    model = from_document(doc)
    if loss is not None:
        output = doc["outputs"][0]
        shape = [None if d == "batch" else d for d in _output_shapes(model, [output])[output]]  # as literal as x
        model = from_document(add_loss(doc, loss, shape))
    for k, v in weights.items():
        model.parameters[k][...] = v
    return model


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
