"""ONNX's own node test cases (onnx.backend.test.case.node) for the ops graphdef imports, run by graphdef."""
from __future__ import annotations


import numpy as np

from ...errors import GraphDefError
from .importer import RULES
from .reader import from_proto
from .proto import READABLE, onnx_modules, valid_name


class Report:
    """Outcome of ONNX's node test cases for the ops graphdef imports."""

    def __init__(self):
        self.passed, self.failed, self.skipped = [], [], []  # names; (name, why) for failed and skipped
        self.given_at_import = []  # passed once their integer inputs (axes, shapes) were given at import
        self.as_onnxruntime = []  # differ from ONNX's stored outputs (rounded in the file) as onnxruntime does
        self.ops = {}  # case name -> its op types

    def summary(self) -> str:
        run = len(self.passed) + len(self.failed)
        return (f"ONNX node test cases for the imported ops: {run} run, {len(self.passed)} passed, "
                f"{len(self.failed)} failed, {len(self.skipped)} skipped")

    def by_op(self) -> dict:
        """op type -> [passed, failed, skipped] over the cases that use it."""
        counts = {}
        for outcome, names in enumerate((self.passed, [n for n, _ in self.failed], [n for n, _ in self.skipped])):
            for name in names:
                for op in self.ops[name]:
                    counts.setdefault(op, [0, 0, 0])[outcome] += 1
        return dict(sorted(counts.items()))

    def markdown(self) -> str:
        imported, total = imported_schemas()
        lines = ["# ONNX conformance", "", "Written by `graphdef onnx-conformance --report docs/onnx_conformance.md`:",
                 "ONNX's own per-operator test cases (`onnx.backend.test.case.node`) for the ops graphdef",
                 "imports, each imported, run forward by graphdef and compared with ONNX's expected outputs",
                 "(relative tolerance 1e-5 in float32, 1e-9 in float64).", "", self.summary() + ".",
                 f"graphdef imports {len(imported)} of ONNX's {total} default-domain operator schemas.", "",
                 "Inputs graphdef needs at import (axes, shapes, pads given as graph inputs rather than as",
                 "initializers) are given as initializers in the cases marked *given at import*.", "",
                 "| op | passed | failed | skipped |", "|---|---|---|---|"]
        lines += [f"| {op} | {p} | {f} | {k} |" for op, (p, f, k) in self.by_op().items()]
        lines += ["", "## Skipped, and why", "", "| case | why |", "|---|---|"]
        lines += [f"| {name} | {why} |" for name, why in self.skipped]
        if self.failed:
            lines += ["", "## Failed", "", "| case | why |", "|---|---|"] + [f"| {n} | {w} |" for n, w in self.failed]
        lines += ["", "## Passed", "", "*as onnxruntime*: ONNX's stored output differs (it is rounded in the file); "
                  "graphdef's equals onnxruntime's.", "", ", ".join(
                      n + (" (*given at import*)" if n in self.given_at_import else "") +
                      (" (*as onnxruntime*)" if n in self.as_onnxruntime else "") for n in self.passed)]
        return "\n".join(lines) + "\n"


def conformance() -> Report:
    """Import every ONNX node test case whose ops graphdef imports, run it, compare the outputs."""
    onnx_modules()
    import warnings

    import onnx.backend.test.case.node as node_cases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    report = Report()
    for case in sorted(cases, key=lambda c: c.name):
        ops = {n.op_type for n in case.model.graph.node}
        if not ops or not ops & (set(RULES) - {"Constant"}) or not ops <= set(RULES):
            continue
        report.ops[case.name] = sorted(ops)
        why = _run_case(case.model, case.data_sets)
        if why is not None and "run time" in why and _integer_inputs(case.model):
            bound, data_sets = _given_at_import(case)
            if bound is not None:
                why = _run_case(bound, data_sets)
                if why is None:
                    report.given_at_import.append(case.name)
        second = _onnxruntime_data(case) if why is not None and why.startswith("differs") else None
        if second is not None and _run_case(case.model, second) is None:
            why = None
            report.as_onnxruntime.append(case.name)
        if why is None:
            report.passed.append(case.name)
        elif why.startswith("differs"):
            report.failed.append((case.name, why))
        else:
            report.skipped.append((case.name, why))
    return report


def _onnxruntime_data(case) -> list:
    """The case's inputs with onnxruntime's outputs: a second oracle where a stored output was rounded
    (None: onnxruntime is not installed or does not run the case)."""
    try:
        import onnxruntime
        session = onnxruntime.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        return [(inputs, session.run(None, dict(zip(names, map(_array, inputs))))) for inputs, _ in case.data_sets]
    except Exception:  # noqa: BLE001 - without a second oracle the case stays failed
        return None


def _integer_inputs(model) -> list:
    """Graph inputs a node reads as its axes, shape, pads or bounds: integers or scalars, never a node's first
    input (its data, which graphdef must compute on)."""
    data = {n.input[0] for n in model.graph.node if n.input}
    return [i.name for i in model.graph.input if i.name not in data and
            (i.type.tensor_type.elem_type not in (1, 10, 11, 16) or len(i.type.tensor_type.shape.dim) == 0)]


def _given_at_import(case):
    """The case with the inputs graphdef needs at import as initializers (one data set: their values are fixed)."""
    if len(case.data_sets) != 1:
        return None, None
    _, _, numpy_helper = onnx_modules()
    model = type(case.model)()
    model.CopyFrom(case.model)
    (inputs, expected), = case.data_sets
    names = [i.name for i in model.graph.input]
    fixed = set(_integer_inputs(model))
    model.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names, inputs)
                                   if n in fixed)
    kept = [i for i in model.graph.input if i.name not in fixed]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    return model, [([v for n, v in zip(names, inputs) if n not in fixed], expected)]


def _run_case(proto, data_sets) -> str | None:
    graph = proto.graph
    kinds = {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    if not kinds <= set(READABLE):
        return "tensors of a type graphdef does not compute with (strings, float16, complex)"
    try:
        model = from_proto(proto, "case")
    except GraphDefError as e:
        return e.errors[0].message.replace("|", "/")
    names = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    for inputs, expected in data_sets:
        inputs, expected = [_array(v) for v in inputs], [_array(v) for v in expected]
        try:
            values = model.forward({model_name(model, n): v for n, v in zip(names, inputs)})
        except GraphDefError as e:
            return e.errors[0].message.replace("|", "/")
        for output, want in zip(graph.output, expected):
            got = np.asarray(values[model_name(model, output.name)])
            rtol = 1e-5 if want.dtype == np.float32 else 1e-9
            if got.shape != want.shape or not np.allclose(got.astype(np.float64), np.asarray(want, np.float64),
                                                          rtol=rtol, atol=rtol * 1e-2, equal_nan=True):
                return f"differs from ONNX's expected output ({got.shape} vs {want.shape})"
    return None


def _array(value) -> np.ndarray:
    """A data set's value: some cases hold TensorProtos rather than arrays."""
    return onnx_modules()[2].to_array(value) if hasattr(value, "HasField") else np.asarray(value)


def model_name(model, onnx_name: str) -> str:
    """The graphdef name an imported ONNX value got (names are kept where valid)."""
    return next(n for n in [*model.inputs, *model.graph] if n in (onnx_name, valid_name(onnx_name)))


def imported_schemas() -> tuple[list, int]:
    """(the default-domain ONNX operator schemas graphdef imports, how many such schemas ONNX has)."""
    onnx, _, _ = onnx_modules()
    names = {s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx")}
    return sorted(names & set(RULES)), len(names)
