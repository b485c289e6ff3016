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
