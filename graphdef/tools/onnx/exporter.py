"""ONNX export: each op's own ONNX mapping (the `onnx` of its record) called through an emitter.

It writes the parameters (trained values included) as initializers and gives every input
a leading symbolic `batch` dimension: the exported graph is the model run on a batch, each
node lifted by its batching rule as graphdef runs it. It writes the inference graph (the
outputs and what they need) unless asked for the loss too, and records in the metadata
which initializers are constants and which output is the loss, so that import gives both back.
"""
from __future__ import annotations

import json

import numpy as np

from ...engine.lift import PER_SAMPLE, StepError, batched_vertices, lift_of
from ...errors import GraphDefError, Problem
from ...ops import OPS
from .proto import CONSTANTS_KEY, LOSS_KEY, onnx_modules

DEFAULT_OPSET = 18
MAX_ONNX_BYTES = 2**31 - 2**24  # protobuf's 2 GB, less room for the graph: larger tensors need external data
MIN_OPSET = 13  # Softmax and LogSoftmax work on one axis from 13 on, as graphdef's do


class _Exporter:
    def __init__(self, model, opset: int):
        self.onnx, self.helper, self.numpy_helper = onnx_modules()
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
        from ...format.serialize import atomic_write
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
