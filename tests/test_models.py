"""The lecture's worked numbers, reproduced from the files in models/, and what the models mean on a batch."""
import io

import numpy as np
import pytest

import graphdef
from conftest import MODELS

LECTURE_AT = {"a": 3, "b": 5}
NETWORK_AT = {"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0}


def test_lecture_values_match_section_3():
    values = graphdef.load(MODELS / "lecture.yaml").forward(LECTURE_AT)
    assert [float(values[v]) for v in "abcde"] == [3, 5, 8, 6, 48]


@pytest.mark.parametrize("method", ["reverse", "paths", "numeric"])
def test_lecture_gradient_is_6_14_by_every_method(method):
    grads = graphdef.load(MODELS / "lecture.yaml").gradients(LECTURE_AT, of="e", method=method)
    np.testing.assert_allclose([grads["a"], grads["b"]], [6, 14], rtol=1e-7)


@pytest.mark.parametrize("name, at", [("chain.yaml", {"a": 0.7, "b": -1.3}),
                                      ("lecture_network.yaml", NETWORK_AT)])
def test_every_method_agrees(name, at):
    model = graphdef.load(MODELS / name)
    reverse, forward, paths, numeric = (model.gradients(at, method=m) for m in graphdef.engine.model.METHODS)
    for w in reverse:
        np.testing.assert_allclose(forward[w], reverse[w], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(paths[w], reverse[w], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(numeric[w], reverse[w], rtol=1e-6, atol=1e-8)


def test_chain_has_one_path_per_variable():
    from graphdef.engine.paths import count_paths
    graph = graphdef.load(MODELS / "chain.yaml").graph.nx
    assert count_paths(graph, "a", "f") == count_paths(graph, "b", "f") == 1


def test_scalar_network_equals_tensor_network():
    scalar, tensor = graphdef.load(MODELS / "lecture_network.yaml"), graphdef.load(MODELS / "mlp.yaml")
    x, y = [NETWORK_AT["x1"], NETWORK_AT["x2"]], [NETWORK_AT["y1"], NETWORK_AT["y2"]]
    vs, gs = scalar.value_and_gradients(NETWORK_AT)
    vt, gt = tensor.value_and_gradients({"x": x, "y": y})
    assert vs["E"] == pytest.approx(float(vt["E"]), rel=1e-12)
    np.testing.assert_allclose([vs["e1"], vs["e2"]], vt["probs"], rtol=1e-12)
    as_matrix = {"W1": [["w1", "w1p"], ["w2p", "w2"]], "b1": ["b1", "b2"],
                 "W2": [["w3", "w3p"], ["w4", "w4p"]], "b2": ["b3", "b4"]}
    for tensor_name, scalar_names in as_matrix.items():
        expected = np.vectorize(lambda n: float(gs[n]))(np.array(scalar_names))
        np.testing.assert_allclose(gt[tensor_name], expected, rtol=1e-12, err_msg=tensor_name)
    np.testing.assert_allclose(gt["x"], [gs["x1"], gs["x2"]], rtol=1e-12)


def test_a_batch_gives_one_loss_per_sample():
    model = graphdef.load(MODELS / "mlp.yaml")
    xs, ys = np.array([[1.0, 0.5], [-0.4, 2.0], [0.3, 0.3]]), np.eye(2)[[0, 1, 1]]
    batch = model.forward({"x": xs, "y": ys})["E"]
    singles = [model.forward({"x": x, "y": y})["E"] for x, y in zip(xs, ys)]
    np.testing.assert_allclose(batch, singles, rtol=1e-12)


def test_every_model_file_starts_with_the_schema_line():
    for path in MODELS.glob("*.yaml"):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path.name
        graphdef.load(path)


def test_logistic_regression_written_per_sample_trains_on_moons(tmp_path):
    """y is [] and p is [1] per sample: on a batch, p - y must stay per sample (not [B, B])."""
    history = graphdef.train(MODELS / "logistic.yaml", run_dir=tmp_path / "run", out=io.StringIO())
    assert 0.8 < history[-1]["val_accuracy"] <= 1.0


ISSUE_EXAMPLES = {  # per-sample graphs that broadcasting used to get wrong on a batch
    "sum without an axis": ("x: {shape: [3]}", "s: {op: sum, inputs: [x]}"),
    "softmax along axis 0": ("x: {shape: [3]}", "s: {op: softmax, inputs: [x], axis: 0}"),
    "transpose with axes": ("x: {shape: [2, 3]}", "s: {op: transpose, inputs: [x], axes: [1, 0]}"),
    "reshape to a sample shape": ("x: {shape: [2, 3]}", "s: {op: reshape, inputs: [x], shape: [3, 2]}"),
    "vector times matrix": ("x: {shape: [3]}\n  m: {shape: [3, 2]}", "s: {op: matmul, inputs: [x, m]}"),
    "matrix times vector": ("m: {shape: [2, 3]}\n  x: {shape: [3]}", "s: {op: matmul, inputs: [m, x]}"),
    "scalar label against a [1] prediction": ("x: {shape: [1]}\n  y: {shape: []}", "s: {op: sub, inputs: [x, y]}"),
}


@pytest.mark.parametrize("name", ISSUE_EXAMPLES)
def test_a_batch_computes_what_each_sample_computes(name):
    inputs, node = ISSUE_EXAMPLES[name]
    model = graphdef.loads(f"graphdef: 1\nname: t\ninputs:\n  {inputs}\nnodes:\n  {node}\noutputs: [s]\n")
    rng = np.random.default_rng(0)
    batch = {n: rng.normal(size=(4, *shape)) for n, shape in model.inputs.items()}
    together = model.forward(batch)["s"]
    alone = np.stack([model.forward({n: v[i] for n, v in batch.items()})["s"] for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-13)
