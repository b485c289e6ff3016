"""Comparisons, logical ops, argmax and argmin where the registry-generated tests do not look: those draw
small integers for them, so here they compare floats (ties, NaN), refuse mixed kinds, steer a gradient
through where in a model, and export on a batch."""
import numpy as np
import pytest

import graphdef
from batch_cases import B, check_batch_equivalence, close, run_onnxruntime, with_reference
from graphdef.ops import OPS

torch = pytest.importorskip("torch")

COMPARISONS = ["equal", "less", "less_equal", "greater", "greater_equal"]


def model(text: str) -> graphdef.Model:
    return graphdef.loads("graphdef: 1\nname: t\n" + text)


def export_runs(m: graphdef.Model, feeds: dict) -> dict:
    """What onnxruntime computes for the model's export on these feeds."""
    return run_onnxruntime(pytest.importorskip("graphdef.onnx").export(m), feeds)


@pytest.mark.parametrize("name", COMPARISONS)
def test_comparisons_of_floats_are_pytorchs_with_ties_and_nan(name):
    x = np.array([[1.0, 2.0, np.nan], [-0.0, 3.0, np.inf]])
    y = np.array([0.0, 2.0, np.nan])  # broadcast over x's rows; -0.0 = 0.0
    ours = OPS[name].forward(x, y)
    assert ours.dtype == bool
    assert np.array_equal(ours, OPS[name].torch_function()(torch.tensor(x), torch.tensor(y)).numpy())
    assert ours[0, 1] == (name in ("equal", "less_equal", "greater_equal"))  # the tie 2 = 2
    assert not ours[0, 2]  # NaN compares false, even to itself


@pytest.mark.parametrize("inputs, node, message", [
    ("{x: {shape: [2]}, i: {shape: [2], dtype: int64}}", "{op: less, inputs: [x, i]}",
     "inputs hold float64 and int64 values"),
    ("{b: {shape: [2], dtype: bool}}", "{op: equal, inputs: [b, b]}", "inputs hold bool and bool values"),
    ("{x: {shape: [2]}}", "{op: logical_not, inputs: [x]}", "input 1 holds float64 values; logical ops take "
                                                            "booleans"),
    ("{b: {shape: [2], dtype: bool}, i: {shape: [2], dtype: int64}}", "{op: logical_and, inputs: [b, i]}",
     "input 2 holds int64 values"),
    ("{b: {shape: [2], dtype: bool}}", "{op: argmax, inputs: [b]}", "inputs hold bool values"),
    ("{x: {shape: []}}", "{op: argmin, inputs: [x]}", "axis 0 is out of range for rank 0"),
])
def test_kinds_that_do_not_fit_are_refused_when_the_model_loads(inputs, node, message):
    with pytest.raises(graphdef.GraphDefError, match=message):
        model(f"inputs: {inputs}\nnodes: {{y: {node}}}\noutputs: [y]\n")


def test_comparisons_of_integers_and_logic_on_their_results():
    m = model("inputs: {i: {shape: [4], dtype: int64}, j: {shape: [4], dtype: int64}}\nnodes:\n"
              "  le: {op: less_equal, inputs: [i, j]}\n  ge: {op: greater_equal, inputs: [i, j]}\n"
              "  eq: {op: logical_and, inputs: [le, ge]}\n  ne: {op: logical_not, inputs: [eq]}\n"
              "  one: {op: logical_xor, inputs: [le, ge]}\n  any: {op: logical_or, inputs: [ne, eq]}\n"
              "outputs: [eq, ne, one, any]\n")
    i, j = np.array([1, 5, -3, 2]), np.array([1, 4, 0, 2])
    values = m.forward({"i": i, "j": j})
    assert values["eq"].tolist() == (i == j).tolist() and values["ne"].tolist() == (i != j).tolist()
    assert values["one"].tolist() == (i != j).tolist() and values["any"].all()
    for name, value in export_runs(m, {"i": i[None], "j": j[None]}).items():
        assert value.dtype == bool and np.array_equal(value[0], values[name]), name


# -- argmax, argmin ----------------------------------------------------------------------------

TIES = np.array([[[1.0, 3.0], [3.0, -2.0], [3.0, 3.0]], [[1.0, -2.0], [-2.0, 3.0], [1.0, -2.0]]])  # ties on every axis


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis, keepdims, last", [(0, True, False), (1, False, False), (1, False, True),
                                                  (-1, True, True), (-3, False, True)])
def test_argmax_and_argmin_pick_the_first_or_last_of_ties(name, axis, keepdims, last):
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    ours = OPS[name].forward(TIES, **attrs)
    theirs = OPS[name].torch_function()(torch.tensor(TIES), **attrs).numpy()
    assert ours.dtype == np.int64 and ours.shape == OPS[name].shape(TIES.shape, **attrs)
    assert np.array_equal(ours, theirs)
    moved = np.moveaxis(TIES, axis, -1)  # the other axes keep their order, as in the result
    extreme = np.max if name == "argmax" else np.min
    tied = [np.flatnonzero(row == extreme(row)) for row in moved.reshape(-1, moved.shape[-1])]
    expected = np.reshape([t[-1] if last else t[0] for t in tied], moved.shape[:-1])
    assert np.array_equal(ours, np.expand_dims(expected, axis) if keepdims else expected)
    assert any(len(t) > 1 for t in tied)  # the case has ties


def test_argmax_of_a_batch_of_float_samples_exports_to_onnx():
    m = model("inputs: {x: {shape: [3, 4]}}\nnodes:\n  a: {op: argmax, inputs: [x], axis: 1, select_last_index: true}\n"
              "  b: {op: argmin, inputs: [x], axis: -2, keepdims: false}\noutputs: [a, b]\n")
    x = np.random.default_rng(0).integers(0, 3, size=(B, 3, 4)).astype(float)  # ties in every sample
    values = m.forward({"x": x})
    for name, value in export_runs(m, {"x": x}).items():
        assert value.dtype == np.int64 and np.array_equal(value, values[name]), name
    assert np.array_equal(values["a"], x.shape[2] - 1 - np.argmax(x[..., ::-1], axis=2)[..., None])


# -- in a model: a mask steers the gradient ------------------------------------------------------

MASKED = """inputs: {x: {shape: [5]}, w: {shape: [5]}}
nodes:
  big: {op: greater, inputs: [x, w]}
  small: {op: less_equal, inputs: [x, -0.5]}
  either: {op: logical_or, inputs: [big, small]}
  kept: {op: where, inputs: [either, x, 0.0]}
  scaled: {op: mul, inputs: [kept, w]}
  loss: {op: sum, inputs: [scaled]}
outputs: [loss]
"""


@pytest.mark.parametrize("reference", [False, True])
def test_a_mask_from_comparisons_steers_the_gradient_as_in_pytorch(reference):
    m = model(MASKED)
    m = with_reference(m) if reference else m
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(B, 5)), rng.normal(size=5)
    values, grads = m.value_and_gradients({"x": x, "w": w}, of="loss")

    def per_sample(x, w):
        either = torch.logical_or(x > w, x <= -0.5)
        return (torch.where(either, x, 0.0) * w).sum()
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = torch.vmap(per_sample, in_dims=(0, None))(tx, tw)
    out.sum().backward()
    close(values["loss"], out.detach().numpy(), "loss")
    close(grads["x"], tx.grad.numpy(), "∂loss/∂x")
    close(grads["w"], tw.grad.numpy(), "∂loss/∂w")
    check_batch_equivalence(m, {"x": x, "w": w}, {"x"})


def test_a_float_that_reaches_the_loss_only_through_a_comparison_gets_no_gradient_from_it():
    """The compiled backward visits only vertices a gradient reaches: h feeds the loss only through a bool."""
    m = model("inputs: {x: {shape: [3]}, w: {shape: [3]}}\nnodes:\n  h: {op: mul, inputs: [x, w]}\n"
              "  m: {op: greater, inputs: [h, 0.0]}\n  y: {op: where, inputs: [m, x, 0.0]}\n"
              "  loss: {op: sum, inputs: [y]}\noutputs: [loss]\n")
    feeds = {"x": np.array([1.0, -2.0, 3.0]), "w": np.array([1.0, 1.0, -1.0])}
    expected = with_reference(m).gradients(feeds, of="loss")
    assert expected["x"].tolist() == [1.0, 0.0, 0.0] and expected["w"].tolist() == [0.0, 0.0, 0.0]
    got = m.gradients(feeds, of="loss")
    close(got["x"], expected["x"], "∂loss/∂x")
    close(got["w"], expected["w"], "∂loss/∂w")
