"""Generated plans: graphs of scalars run on Python floats, and must agree with the numpy plan.

A one-sample input runs the float plan; the same sample with a batch dimension of 1 runs
the numpy plan. Cases come from the registry: every op with an all-scalar example.
"""
import json

import numpy as np
import pytest

import graphdef
from graphdef.ops import OPS
from graphdef.ops.registry import REAL


def one_op_model(name, arity, attrs):
    inputs = ", ".join(f"x{i}: {{shape: []}}" for i in range(arity))
    node = {"op": name, "inputs": [f"x{i}" for i in range(arity)], **attrs}
    return graphdef.loads(f"graphdef: 1\nname: one\ninputs: {{{inputs}}}\nnodes: {{out: {json.dumps(node)}}}\n"
                          "outputs: [out]\n")


def scalar_cases():
    return [pytest.param(name, attrs, id=f"{name}-{i}") for name, op in OPS.items()
            for i, (shapes, attrs) in enumerate(op.examples) if shapes and all(s == () for s in shapes)]


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
    (values, grads), (values1, grads1) = by_both_plans(one_op_model(name, op.arity, attrs), feeds)
    np.testing.assert_allclose(values["out"], values1["out"], rtol=1e-12)
    assert values["out"].dtype == values1["out"].dtype == np.float64
    for k in feeds:
        np.testing.assert_allclose(grads[k], grads1[k], rtol=1e-12, err_msg=k)
        assert grads[k].dtype == grads1[k].dtype == np.float64, k


@pytest.mark.parametrize("name, at", [("log", 0.0), ("log", -1.0), ("sqrt", -1.0), ("exp", 1000.0),
                                      ("reciprocal", 0.0)])
def test_faults_in_floats_give_numpys_inf_and_nan(name, at):
    """Python raises where numpy returns inf or NaN: the model reruns the call on numpy values."""
    (values, grads), (values1, grads1) = by_both_plans(one_op_model(name, 1, {}), {"x0": at})
    np.testing.assert_array_equal(values["out"], values1["out"])
    np.testing.assert_array_equal(grads["x0"], grads1["x0"])
    assert not np.isfinite(values["out"]) or not np.isfinite(grads["x0"])


def test_a_rule_that_needs_numpy_values_still_works_on_scalars():
    """A user rule calling an ndarray method fails on a float: the model keeps to numpy plans from then on."""
    graphdef.register_op("twice_test", lambda x: x.copy() * 2, lambda g, out, x: g.copy() * 2)
    try:
        model = one_op_model("twice_test", 1, {})
        for _ in range(2):
            values, grads = model.value_and_gradients({"x0": 1.5})
            assert values["out"] == 3.0 and grads["x0"] == 2.0
    finally:
        del graphdef.OPS["twice_test"]


def test_lecture_network_on_floats_returns_float64_arrays():
    grads = graphdef.load("models/lecture_network.yaml").gradients({"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0})
    assert all(isinstance(g, np.ndarray) and g.shape == () and g.dtype == np.float64 for g in grads.values())
