"""ONNX files and protos to graphdef models: the document import builds, its parameters and state.

A file comes from anywhere: it is read whole (bounded by graphdef's Limits), parsed without
following references to external data, and checked before anything is built (proto.py).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ...errors import GraphDefError, Problem
from ...format.source import LIMITS, Limits
from . import rules_math, rules_nn, rules_rnn, rules_shape  # noqa: F401 - they register the import rules
from .importer import Importer, constant_entry, convert_nodes, dtype_of, graph_outputs
from .proto import CONSTANTS_KEY, LOSS_KEY, dims_of, onnx_modules, quoted, valid_name


def to_document(proto, name: str | None = None, file: str | None = None, limits: Limits = LIMITS) -> tuple[dict, dict]:
    """(graphdef document, name -> array of its parameters and state) for an ONNX ModelProto.

    Every malformed node, tensor or name is a GraphDefError naming it (and `file`); sizes past
    `limits` are refused before anything is decoded."""
    imp = Importer(proto, file, limits, _exported_parameters(proto, file))
    loss = _recorded_loss(imp, proto)
    convert_nodes(imp)
    outputs = graph_outputs(imp)
    dtype = dtype_of(imp)
    used = {a for n in imp.nodes.values() for a in n["inputs"] if isinstance(a, str)} | set(outputs)
    run = {k: v for k, v in imp.initial.items() if k in used}
    state = {k: v for k, v in run.items() if k in imp.state_vertices}
    constants = imp.constants
    weights = {k: v for k, v in run.items() if k not in state}
    doc = {"graphdef": 1, "name": valid_name(name or imp.graph.name or "imported"),
           "description": imp.graph.doc_string or proto.doc_string or f"imported from ONNX (opset {imp.opset})",
           "dtype": dtype, "inputs": imp.inputs,
           "parameters": {k: {"shape": list(v.shape), "init": "zeros"} for k, v in weights.items()},
           **({"state": {k: {"shape": list(v.shape), "init": "zeros"} for k, v in state.items()}} if state else {}),
           "constants": {k: constant_entry(v, dtype) for k, v in constants.items()},
           "nodes": imp.nodes, "outputs": outputs}
    if loss is not None:
        doc["outputs"] = [o for o in outputs if o != loss[1]] or [loss[0]]
        doc["loss"] = loss[0]
    return doc, {**weights, **state}


def _metadata(proto, key: str) -> str | None:
    return next((p.value for p in proto.metadata_props if p.key == key), None)


def _exported_parameters(proto, file) -> set | None:
    """The initializers that are parameters, in a file graphdef exported: all but those its metadata lists
    as constants (None: not exported by graphdef)."""
    text = _metadata(proto, CONSTANTS_KEY)
    if text is None:
        return None
    try:
        names = json.loads(text)
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise GraphDefError(Problem(f"metadata {quoted(CONSTANTS_KEY)} is not a JSON list of names", file,
                                    path="metadata_props", hint="the file is damaged: export it again"))
    return {t.name for t in proto.graph.initializer} - set(names)


def _recorded_loss(imp, proto) -> tuple[str, str] | None:
    """(the model's loss, the graphdef name of the ONNX value it averages) from export's metadata.

    graphdef's export writes the loss of each sample (the model run on a batch); the imported
    model's loss is their mean, which is what graphdef's training minimizes."""
    loss = _metadata(proto, LOSS_KEY)
    if loss is None:
        return None
    outputs = {o.name: o for o in imp.graph.output}
    if loss not in outputs:
        raise GraphDefError(imp.problem(f"metadata names the loss {quoted(loss)}, which is no output of the graph",
                                        "metadata_props", "the file is damaged: export it again"))
    if not dims_of(outputs[loss]):  # a scalar (or of unknown shape): it is the loss itself
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
    taken = [n for n in (target, "loss") if n in {**doc["inputs"], **doc["parameters"], **doc.get("state", {}),
                                                   **doc["constants"], **doc["nodes"]}]
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
    onnx, _, _ = onnx_modules()
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
    doc, values = to_document(proto, name, file, limits)
    model = _build(doc, file, limits)
    if loss is not None:
        model = _build(add_loss(doc, loss, _target_shape(model, doc["outputs"][0])), file, limits)
    for k, v in values.items():
        (model.state if k in model.state else model.parameters)[k][...] = v
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
    from ...format.loader import from_document
    try:
        return from_document(doc, limits=limits)
    except GraphDefError as e:
        raise GraphDefError([replace(p, file=p.file or file) for p in e.errors]) from None
