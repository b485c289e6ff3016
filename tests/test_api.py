"""The Python API: loading, graph structure, gradient options, user-registered ops."""
import subprocess
import sys

import numpy as np
import pytest

import graphdef
from graphdef import GraphDefError

SQUARE_BY_MUL = """
graphdef: 1
name: sq
inputs: {x: {shape: [3]}}
nodes:
  y: {op: mul, inputs: [x, x]}
  s: {op: sum, inputs: [y]}
outputs: [s]
"""


def test_value_used_twice_gets_both_edges_and_gradient_2x():
    model = graphdef.loads(SQUARE_BY_MUL)
    assert model.graph.nx.number_of_edges("x", "y") == 2
    assert sorted(k for _, _, k in model.graph.nx.in_edges("y", keys=True)) == [0, 1]
    x = np.array([1.0, -2.0, 3.0])
    for method in ("reverse", "numeric"):
        np.testing.assert_allclose(model.gradients({"x": x}, method=method)["x"], 2 * x, rtol=1e-6)


def test_graph_vertices_carry_their_kind():
    model = graphdef.load("models/lecture.yaml")
    kinds = dict(model.graph.nx.nodes(data="kind"))
    assert kinds == {"a": "input", "b": "input", "c": "node", "d": "node", "e": "node", "d[1]": "literal"}
    assert model.graph.vertices["d"].op.name == "add"


def test_loads_equals_load():
    text = open("models/lecture.yaml", encoding="utf-8").read()
    assert graphdef.loads(text).forward({"a": 1, "b": 2})["e"] == 9


def test_forward_returns_arrays_for_every_vertex():
    values = graphdef.load("models/lecture.yaml").forward({"a": 3, "b": 5})
    assert set(values) >= {"a", "b", "c", "d", "e"}
    assert all(isinstance(v, np.ndarray) for v in values.values())


def test_of_defaults_to_loss_and_wrt_to_inputs_and_parameters():
    model = graphdef.load("models/mlp.yaml")
    grads = model.gradients({"x": [1, 2], "y": [0, 1]})
    assert list(grads) == ["x", "y", "W1", "b1", "W2", "b2"]
    assert list(model.gradients({"x": [1, 2], "y": [0, 1]}, wrt=["b2"])) == ["b2"]


def test_labels_are_the_inputs_only_the_loss_reads_and_explanations_leave_them_out():
    model = graphdef.load("models/mlp.yaml")
    assert model.labels == ("y",)
    assert model.resolve(labels=False) == ("E", ("x", "W1", "b1", "W2", "b2"))
    assert model.resolve(wrt=["y"], labels=False) == ("E", ("y",))  # asked for: shown
    assert list(model.trace({"x": [1, 2], "y": [0, 1]}).wrt) == ["x", "W1", "b1", "W2", "b2"]
    only_loss = graphdef.loads("graphdef: 1\nname: m\ninputs: {x: {shape: []}, y: {shape: []}}\n"
                               "nodes: {d: {op: sub, inputs: [x, y]}, l: {op: square, inputs: [d]}}\n"
                               "outputs: [l]\nloss: l\n")
    assert only_loss.labels == ()  # nothing but the loss: no input is told apart


def test_of_is_required_when_ambiguous():
    model = graphdef.loads("graphdef: 1\nname: two\ninputs: {a: {shape: []}}\n"
                           "nodes: {b: {op: exp, inputs: [a]}, c: {op: neg, inputs: [a]}}\noutputs: [b, c]\n")
    with pytest.raises(GraphDefError, match="say which vertex"):
        model.gradients({"a": 1})
    assert model.gradients({"a": 1}, of="c")["a"] == -1


def test_gradient_wrt_a_vertex_not_on_any_path_is_zero():
    model = graphdef.load("models/lecture.yaml")
    assert model.gradients({"a": 3, "b": 5}, of="d")["a"] == 0


def test_float32_model_stays_float32():
    text = open("models/mlp.yaml", encoding="utf-8").read().replace("graphdef: 1", "graphdef: 1\ndtype: float32")
    model = graphdef.loads(text)
    values, grads = model.value_and_gradients({"x": [1, 0.5], "y": [1, 0]})
    assert values["E"].dtype == np.float32 and grads["W1"].dtype == np.float32


def test_initializers_are_seeded():
    text = """
graphdef: 1
name: init
inputs: {x: {shape: [null, 4]}}
parameters:
  W: {shape: [4, 3], init: glorot_uniform}
  V: {shape: [3, 2], init: {type: normal, std: 0.01}}
  b: {shape: [2], init: zeros}
nodes:
  h: {op: matmul, inputs: [x, W]}
  o: {op: matmul, inputs: [h, V]}
  y: {op: add, inputs: [o, b]}
outputs: [y]
"""
    a, b, c = graphdef.loads(text, seed=1), graphdef.loads(text, seed=1), graphdef.loads(text, seed=2)
    assert np.array_equal(a.parameters["W"], b.parameters["W"])
    assert not np.array_equal(a.parameters["W"], c.parameters["W"])
    assert np.abs(a.parameters["W"]).max() <= np.sqrt(6 / 7)
    assert a.parameters["V"].std() < 0.05 and not a.parameters["b"].any()
    assert a.forward({"x": np.ones((5, 4))})["y"].shape == (5, 2)


def test_register_op_as_decorator_is_usable_from_yaml():
    @graphdef.register_op("cube_test", backward=lambda g, out, x: 3 * g * x * x, doc="x³")
    def cube(x):
        return x ** 3

    try:
        model = graphdef.loads("graphdef: 1\nname: c\ninputs: {x: {shape: []}}\n"
                               "nodes: {y: {op: cube_test, inputs: [x]}}\noutputs: [y]\n")
        assert model.gradients({"x": 2.0})["x"] == 12
        assert graphdef.OPS["cube_test"].arity == 1
    finally:
        del graphdef.OPS["cube_test"]


def test_register_op_attributes_come_from_keyword_only_parameters():
    def scale(x, *, by: float = 2.0):
        """x times a constant."""
        return x * by

    graphdef.register_op("scale_test", scale, lambda g, out, x, *, by: g * by)
    try:
        op = graphdef.OPS["scale_test"]
        assert list(op.attrs) == ["by"] and op.doc == "x times a constant."
        model = graphdef.loads("graphdef: 1\nname: s\ninputs: {x: {shape: []}}\n"
                               "nodes: {y: {op: scale_test, inputs: [x], by: 5}}\noutputs: [y]\n")
        assert model.gradients({"x": 1.0})["x"] == 5
        with pytest.raises(ValueError, match="already registered"):
            graphdef.register_op("scale_test", scale)
    finally:
        del graphdef.OPS["scale_test"]


def test_paths_method_refuses_tensors_and_huge_path_counts():
    with pytest.raises(GraphDefError, match="scalar vertices"):
        graphdef.load("models/mlp.yaml").gradients({"x": [1, 2], "y": [0, 1]}, method="paths")
    depth = 40
    nodes = "\n".join(f"  v{i + 1}: {{op: add, inputs: [v{i}, v{i}]}}" for i in range(depth))
    model = graphdef.loads(f"graphdef: 1\nname: deep\ninputs: {{v0: {{shape: []}}}}\nnodes:\n{nodes}\n"
                           f"outputs: [v{depth}]\n")
    assert model.gradients({"v0": 1.0})["v0"] == 2.0 ** depth
    with pytest.raises(GraphDefError, match="paths lead from"):
        model.gradients({"v0": 1.0}, method="paths")


def test_faults_give_inf_and_nan_without_warnings():
    """log 0 is -inf and its gradient inf, silently (check_numerics reports them), even where warnings are errors."""
    code = ("import graphdef, numpy as np\n"
            "m = graphdef.loads('graphdef: 1\\nname: l\\ninputs: {x: {shape: [2]}}\\n"
            "nodes: {y: {op: log, inputs: [x]}, s: {op: sum, inputs: [y]}}\\noutputs: [s]\\n')\n"
            "values, grads = m.value_and_gradients({'x': [0.0, -1.0]})\n"
            "print(values['y'][0], np.isnan(values['y'][1]), grads['x'][0])\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["-inf", "True", "inf"], done.stderr


def test_forward_without_the_label_computes_the_outputs_not_the_loss():
    model = graphdef.load("models/digits.yaml")
    values = model.forward({"x": np.full((2, 64), 0.5)})
    assert values["probs"].shape == (2, 10) and "loss" not in values
    with pytest.raises(GraphDefError, match="missing input 'x'"):
        model.forward({"y": np.eye(10)[:2]})


def test_parameters_drawn_at_load_are_listed_as_untrained(tmp_path):
    model = graphdef.load("models/digits.yaml")
    assert model.untrained == list(model.parameters)
    assert graphdef.load(model.save(tmp_path)).untrained == []
    assert graphdef.load("models/mlp.yaml").untrained == []  # values written in the file
