"""ONNX: every model exports and runs the same in onnxruntime; ONNX models (PyTorch's too) import and train."""
import sys

import numpy as np
import pytest

import graphdef
from batch_cases import one_op_model, random_feeds, run_onnxruntime, sample_inputs
from conftest import MODELS
from graphdef.engine.lift import PER_SAMPLE, batched_vertices, lift_of

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
gx = pytest.importorskip("graphdef.onnx")


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-5)])
@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_exports_and_matches_onnxruntime(path, dtype, rtol):
    model = graphdef.load(path, dtype=dtype)
    proto = gx.export(model, with_loss=True)
    onnx.checker.check_model(proto)
    feeds = random_feeds(model)
    ours, theirs = model.forward(feeds), run_onnxruntime(proto, feeds)
    assert set(theirs) == set(model.outputs) | ({model.loss} if model.loss else set())
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name], value, rtol=rtol, atol=rtol * 1e-3, err_msg=name)


@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_opsets(opset):
    model = graphdef.loads("graphdef: 1\nname: r\ninputs: {x: {shape: [2, 3, 4]}}\nnodes:\n"
                           "  m: {op: mean, inputs: [x], axis: [-1, -3], keepdims: true}\n"
                           "  s: {op: sum, inputs: [x], axis: -1}\n  t: {op: transpose, inputs: [m]}\n"
                           "  l: {op: log, inputs: [x], base: 2}\n  r: {op: reshape, inputs: [x], shape: [-1, 12]}\n"
                           "outputs: [t, s, l, r]\n")
    proto = gx.export(model, opset=opset)
    feeds = random_feeds(model)
    theirs = run_onnxruntime(proto, feeds)
    for name, value in model.forward(feeds, outputs=list(theirs)).items():
        if name in theirs:
            np.testing.assert_allclose(value, theirs[name], rtol=1e-12)
    with pytest.raises(graphdef.GraphDefError, match="opset 12 is too old"):
        gx.export(model, opset=12)


def test_trained_weights_and_docs_are_carried(tmp_path):
    model = graphdef.load(MODELS / "mlp.yaml")
    model.parameters["W1"][...] = [[1.0, 2.0], [3.0, 4.0]]
    proto = gx.export(model, tmp_path / "m.onnx")
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert np.array_equal(weights["W1"], [[1.0, 2.0], [3.0, 4.0]])
    assert proto.graph.doc_string == model.description
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", ""]
    assert onnx.load(tmp_path / "m.onnx").graph.name == "mlp"


def test_unexportable_ops_are_listed():
    graphdef.register_op("strange_test", lambda x: x, lambda g, out, x: g, examples=[])
    try:
        model = graphdef.loads("graphdef: 1\nname: s\ninputs: {x: {shape: []}}\nnodes:\n"
                               "  a: {op: strange_test, inputs: [x]}\n  b: {op: strange_test, inputs: [a]}\noutputs: [b]\n",
                               file="s.yaml")
        with pytest.raises(graphdef.GraphDefError) as info:
            gx.export(model)
        assert [p.line for p in info.value.errors] == [5, 6]
        assert "op 'strange_test' has no ONNX equivalent" in str(info.value)
    finally:
        del graphdef.OPS["strange_test"]


def test_round_trip_export_import(tmp_path, cli):
    assert cli("export", MODELS / "digits.yaml", "-o", tmp_path / "d.onnx")[0] == 0
    code, _, err = cli("import", tmp_path / "d.onnx", "-o", tmp_path / "d.yaml")
    assert code == 0, err
    original, imported = graphdef.load(MODELS / "digits.yaml"), graphdef.load(tmp_path / "d.yaml")
    feeds = random_feeds(original)
    inference = {"x": feeds["x"]}  # exported for inference: the label is not an input
    np.testing.assert_allclose(imported.forward(inference)["probs"], original.forward(inference)["probs"], rtol=1e-12)
    assert "logits/layer1/W" in imported.parameters and (tmp_path / "d.weights.npz").exists()


def torch_mlp_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    path = tmp_path / "torch_mlp.onnx"
    torch.onnx.export(net, (torch.randn(5, 2),), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)
    return net, path


def test_pytorch_exported_mlp_imports_with_the_same_outputs(tmp_path):
    net, path = torch_mlp_onnx(tmp_path)
    model = gx.load(path)
    x = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    import torch
    np.testing.assert_allclose(model.forward({"x": x})["logits"], net(torch.tensor(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert {s.op.name for s in model.steps} == {"transpose", "matmul", "add", "relu"}


def test_imported_pytorch_model_trains(tmp_path, cli):
    net, path = torch_mlp_onnx(tmp_path)
    code, _, err = cli("import", path, "-o", tmp_path / "m.yaml", "--loss", "softmax_cross_entropy")
    assert code == 0, err
    code, _, err = cli("train", tmp_path / "m.yaml", "--data", "moons", "--epochs", "30", "--lr", "0.01",
                       "-o", tmp_path / "run")
    assert code == 0, err
    assert graphdef.evaluate(graphdef.load(tmp_path / "run" / "model.yaml"))["accuracy"] >= 0.85


def make_onnx(nodes, inputs, outputs, initializers=(), opset=18):
    h = onnx.helper
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])


def test_unsupported_onnx_ops_are_listed_by_name_and_count(tmp_path):
    h, T = onnx.helper, onnx.TensorProto
    proto = make_onnx([h.make_node("Det", ["x"], ["a"]), h.make_node("Det", ["x"], ["b"]),
                       h.make_node("Add", ["a", "b"], ["s"]), h.make_node("Hardmax", ["x"], ["c"])],
                      [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 4])],
                      [h.make_tensor_value_info("c", T.FLOAT, None), h.make_tensor_value_info("s", T.FLOAT, None)])
    with pytest.raises(graphdef.GraphDefError, match=r"cannot import: Det ×2, Hardmax ×1"):
        gx.from_proto(proto)


@pytest.mark.parametrize("opset, axis, shape, ok", [(11, 1, [2, 3], True), (11, 1, [2, 3, 4], False),
                                                    (13, 1, [2, 3, 4], True), (11, -1, [2, 3, 4], True)])
def test_softmax_axis_semantics_follow_the_opset(opset, axis, shape, ok):
    h, T = onnx.helper, onnx.TensorProto
    proto = make_onnx([h.make_node("Softmax", ["x"], ["y"], axis=axis)], [h.make_tensor_value_info("x", T.DOUBLE, shape)],
                      [h.make_tensor_value_info("y", T.DOUBLE, shape)], opset=opset)
    if not ok:
        with pytest.raises(graphdef.GraphDefError, match="Softmax"):
            gx.from_proto(proto)
        return
    x = np.random.default_rng(0).normal(size=shape)
    np.testing.assert_allclose(gx.from_proto(proto).forward({"x": x})["y"], run_onnxruntime(proto, {"x": x})["y"],
                               rtol=1e-12)


def test_onnx_conformance_passes_for_the_imported_ops(cli):
    """ONNX's own node cases: none fails, and every imported op that ONNX has cases for passes some."""
    report = gx.conformance()
    assert not report.failed, report.failed
    assert len(report.passed) >= 850
    assert all(why for _, why in report.skipped)
    never = [op for op, (passed, _, _) in report.by_op().items() if not passed]
    assert never == [], f"imported ops none of whose ONNX cases pass: {never}"
    imported, total = gx.imported_schemas()
    assert len(imported) >= 100 and total >= 190


def test_missing_onnx_package_is_a_clear_error(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    code, _, err = cli("export", MODELS / "lecture.yaml", "-o", tmp_path / "x.onnx")
    assert code == 1 and 'pip install "graphdef[onnx]"' in err


def test_ops_without_an_onnx_mapping_are_listed():
    """Every built-in op carries its ONNX mapping on its record; this names any that does not."""
    missing = sorted(name for name, op in graphdef.OPS.items() if op.onnx is None and not name.endswith("_test"))
    assert missing == []


def op_example_cases():
    return [pytest.param(name, shapes, attrs, id=f"{name}-{i}") for name, op in sorted(graphdef.OPS.items())
            if not name.endswith("_test") for i, (shapes, attrs) in enumerate(op.examples)]


@pytest.mark.parametrize("name, shapes, attrs", op_example_cases())
def test_every_op_exports_with_its_batch_semantics(name, shapes, attrs):
    """One node per registry example, fed a batch of 3 in onnxruntime: what graphdef computes per sample."""
    op = graphdef.OPS[name]
    model = one_op_model(name, shapes, attrs)
    step = model.graph.vertices["out"]  # (an op with several outputs has more steps: out/1...)
    feeds = sample_inputs(op, shapes, range(len(shapes)), np.random.default_rng(0))
    if lift_of(model.graph, step, batched_vertices(model.graph, model.batchable)) is PER_SAMPLE:
        # the op's batching rule loops over a batch of its other inputs (kernels, statistics): make them constants
        feeds = {"x0": feeds["x0"]}
        rest = sample_inputs(op, shapes, (), np.random.default_rng(1))
        model = one_op_model(name, shapes, attrs, constants={k: v for k, v in rest.items() if k != "x0"})
    model.training = False  # an exported graph is an inference graph
    theirs = run_onnxruntime(gx.export(model), feeds)["out"]
    np.testing.assert_allclose(model.forward(feeds)["out"], theirs, rtol=1e-9, atol=1e-12)
