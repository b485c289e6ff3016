"""Generated plans: graphs of scalars run on Python floats, and must agree with the numpy plan.

Each plan is run directly (compiled_backprop) so that a fallback cannot hide a float plan
that fails; through the API, a one-sample input takes the float plan and the same sample
with a batch dimension of 1 the numpy plan. Cases come from the registry: every op with
an all-scalar example.
"""
import json

import numpy as np
import pytest

import graphdef
from graphdef.engine.compile import StepError
from graphdef.ops import OPS
from graphdef.ops.registry import REAL


def one_op_model(name, arity, attrs):
    inputs = ", ".join(f"x{i}: {{shape: []}}" for i in range(arity))
    node = {"op": name, "inputs": [f"x{i}" for i in range(arity)], **attrs}
    return graphdef.loads(f"graphdef: 1\nname: one\ninputs: {{{inputs}}}\nnodes: {{out: {json.dumps(node)}}}\n"
                          "outputs: [out]\n")


def scalar_cases():
    """Ops on scalars that make a float from floats: what the float plan runs."""
    return [pytest.param(name, attrs, id=f"{name}-{i}") for name, op in OPS.items()
            for i, (shapes, attrs) in enumerate(op.examples) if shapes and all(s == () for s in shapes)
            and _floats_to_float(op, attrs)]


def _floats_to_float(op, attrs) -> bool:
    try:
        return op.dtype(*["float64"] * op.arity, **op.bind(attrs)) == "float64"
    except ValueError:  # it refuses floats (indices, conditions)
        return False


def plan(model, feeds, floats):
    """The model's forward-and-backward plan for ∂out/∂inputs, on Python floats or on numpy values, and its env."""
    env = {**model.constants, **model.parameters, **{k: np.float64(v) for k, v in feeds.items()}}
    return model.compiled_backprop("out", list(feeds), floats=floats), env


def by_both_plans(model, feeds):
    """(values, gradients) from the float plan and from the numpy plan (a batch of one)."""
    floats = model.value_and_gradients(feeds)
    batch = model.value_and_gradients({k: [v] for k, v in feeds.items()})
    return floats, tuple({k: v[0] if np.ndim(v) else v for k, v in d.items()} for d in batch)


@pytest.mark.parametrize("name, attrs", scalar_cases())
def test_float_plan_agrees_with_numpy_plan(name, attrs):
    op = OPS[name]
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    domains = list(op.domain) + [REAL] * (op.arity - len(op.domain))
    feeds = {f"x{i}": float(rng.uniform(lo, hi)) for i, (lo, hi) in enumerate(domains)}
    if name == "relu":
        feeds["x0"] = -abs(feeds["x0"])  # the branch where max(x, 0) is the literal 0
    model = one_op_model(name, op.arity, attrs)
    on_floats, env = plan(model, feeds, floats=True)
    on_numpy, _ = plan(model, feeds, floats=False)
    (values, grads), (values1, grads1) = on_floats(env), on_numpy(env)
    for a, b, what in [(values["out"], values1["out"], "out"), *((grads[k], grads1[k], k) for k in feeds)]:
        np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=what)
        assert np.asarray(a).dtype == np.asarray(b).dtype == np.float64, what


@pytest.mark.parametrize("name, at", [("log", 0.0), ("log", -1.0), ("sqrt", -1.0), ("exp", 1000.0),
                                      ("reciprocal", 0.0)])
def test_faults_in_floats_give_numpys_inf_and_nan(name, at):
    """Python raises where numpy returns inf or NaN: the model reruns the call on numpy values."""
    model = one_op_model(name, 1, {})
    on_floats, env = plan(model, {"x0": at}, floats=True)
    with pytest.raises(StepError):
        on_floats(env)
    (values, grads), (values1, grads1) = by_both_plans(model, {"x0": at})
    np.testing.assert_array_equal(values["out"], values1["out"])
    np.testing.assert_array_equal(grads["x0"], grads1["x0"])
    assert not np.isfinite(values["out"]) or not np.isfinite(grads["x0"])


def test_a_rule_that_needs_numpy_values_still_works_on_scalars():
    """A user rule calling an ndarray method fails on a float: the model falls back to numpy values."""
    graphdef.register_op("twice_test", lambda x: x.copy() * 2, lambda g, out, x: g.copy() * 2)
    try:
        model = one_op_model("twice_test", 1, {})
        on_floats, env = plan(model, {"x0": 1.5}, floats=True)
        with pytest.raises(StepError):
            on_floats(env)
        for _ in range(2):
            values, grads = model.value_and_gradients({"x0": 1.5})
            assert values["out"] == 3.0 and grads["x0"] == 2.0
    finally:
        del graphdef.OPS["twice_test"]


def test_lecture_network_on_floats_returns_float64_arrays():
    grads = graphdef.load("models/lecture_network.yaml").gradients({"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0})
    assert all(isinstance(g, np.ndarray) and g.shape == () and g.dtype == np.float64 for g in grads.values())


# -- free sizes: which gradients need summing back is decided when the plan is made ------------

FREE_MLP = """
graphdef: 1
name: free
inputs:
  x: {shape: [null, 3]}
  s: {shape: [null, 1]}
  r: {shape: [1, 4]}
parameters:
  W: {value: [[0.1, 0.2, 0.3, 0.4], [0.5, -0.6, 0.7, 0.8], [0.9, 1.0, -1.1, 1.2]]}
  b: {value: [0.1, -0.2, 0.3, 0.4]}
nodes:
  m: {op: matmul, inputs: [x, W]}
  z: {op: add, inputs: [m, b]}
  scaled: {op: mul, inputs: [z, s]}
  shifted: {op: add, inputs: [scaled, r]}
  h: {op: tanh, inputs: [shifted]}
  loss: {op: mean, inputs: [h]}
outputs: [loss]
loss: loss
"""


def test_free_sizes_derived_from_one_input_need_no_sum_back():
    """m and z share x's free size: z's gradient flows to m as it is. s has a free size of its own,
    which may be 1 where x's is not: those sums back stay, decided when the plan runs."""
    model = graphdef.loads(FREE_MLP)
    model.gradients({"x": np.ones((5, 3)), "s": np.ones((5, 1)), "r": np.ones((1, 4))})
    lines = [line for line in next(iter(model._plans.values())).source.splitlines() if "del " not in line]
    checked = {line.split("# ∂loss/∂")[1].split(" ")[0] for line, after in zip(lines, lines[1:])
               if "# ∂loss/∂" in line and after.strip().startswith("if t.shape")}
    assert checked == {"scaled", "z", "s", "r", "b"}
    assert "if t.shape != (4,): t = unbroadcast(t, (4,))" in "\n".join(lines)  # b's shape is static


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("free_s", [1, "n"])
def test_free_size_plans_equal_the_reference_interpreter(n, free_s):
    """Sizes of 1 are where broadcasting would change the shape of a gradient: the plan must sum back
    exactly where the reference interpreter does, for every size the free dimensions take."""
    rng = np.random.default_rng(n)
    s_rows = n if free_s == "n" else 1
    feed = {"x": rng.normal(size=(n, 3)), "s": rng.normal(size=(s_rows, 1)), "r": rng.normal(size=(1, 4))}
    model = graphdef.loads(FREE_MLP)
    planned = model.gradients(feed)
    model.reference = True
    reference = model.gradients(feed)
    assert planned.keys() == reference.keys()
    for k in planned:
        assert planned[k].shape == reference[k].shape, k
        np.testing.assert_allclose(planned[k], reference[k], rtol=1e-12, atol=1e-14, err_msg=k)
