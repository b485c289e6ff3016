"""Compiled plans against the reference interpreter, the specification they unroll.

For every example of every built-in op (unbatched and under each choice of batched inputs)
and every model of models/ (one sample, a batch, and the training call with a mean, kept
gradients and pruned outputs): the same values and gradients with compiled plans as with
reference=True. Failures inside a generated plan name the node, its op and the generated line.
"""
import linecache
import re

import numpy as np
import pytest

import graphdef
from batch_cases import (B, MODEL_FILES, close, example_cases, load_model, model_feeds, one_op_model, sample_inputs,
                         seed_of, with_reference)
from graphdef.engine.model import PlanKey
from graphdef.ops import OPS

TIGHT = dict(rtol=1e-12, atol=1e-14)


def same_results(compiled, reference, feeds, of=None) -> None:
    """value_and_gradients (every vertex, ∂of/∂ every input and parameter) agree between the engines."""
    assert not compiled.reference and reference.reference
    values, grads = compiled.value_and_gradients(feeds, of=of)
    values1, grads1 = reference.value_and_gradients(feeds, of=of)
    assert set(values) == set(values1) and set(grads) == set(grads1)
    for name in values:
        close(values[name], values1[name], f"value of '{name}'", **TIGHT)
    for name in grads:
        close(grads[name], grads1[name], f"gradient w.r.t. '{name}'", **TIGHT)
    forward, forward1 = compiled.forward(feeds), reference.forward(feeds)
    for name in values:
        close(forward[name], forward1[name], f"forward value of '{name}'", **TIGHT)


@pytest.mark.parametrize("name, index, which", example_cases(batched=False) + example_cases(batched=True))
def test_op_examples_compiled_equal_reference(name, index, which):
    op = OPS[name]
    shapes, attrs = op.examples[index]
    compiled = one_op_model(name, shapes, attrs)
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of("reference", name, index, which)))
    same_results(compiled, with_reference(compiled), feeds, of="out")


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
@pytest.mark.parametrize("file", MODEL_FILES)
def test_models_compiled_equal_reference(file, batched):
    compiled = load_model(file)
    feeds = model_feeds(compiled, np.random.default_rng(seed_of("reference", file)), n=B if batched else None)
    same_results(compiled, with_reference(compiled), feeds)


@pytest.mark.parametrize("file", MODEL_FILES)
def test_training_backprop_compiled_equals_reference(file):
    """The call training makes (gradients of the batch mean, outputs pruned) and the one `trace` makes
    (gradients kept for every vertex on the way): same on both engines."""
    compiled = load_model(file)
    reference = with_reference(compiled)
    env = {**compiled.constants, **compiled.state, **compiled.parameters,
           **model_feeds(compiled, np.random.default_rng(seed_of("training", file)))}
    of, wrt = compiled.resolve()
    _, wanted = compiled.backward_plan(of, tuple(wrt))
    keep = sorted(v for v in wanted if compiled.graph.vertices[v].kind == "node")
    for options in [dict(outputs=tuple(compiled.outputs), mean=True), dict(keep=keep), dict(mean=True)]:
        values, grads = compiled.backprop(dict(env), of, wrt, **options)
        values1, grads1 = reference.backprop(dict(env), of, wrt, **options)
        assert set(grads) == set(grads1) == set(wrt) | set(options.get("keep", ())), options
        for name in grads:
            close(grads[name], grads1[name], f"{options}: gradient w.r.t. '{name}'", **TIGHT)
        for name in [*compiled.outputs, of]:
            close(values[name], values1[name], f"{options}: value of '{name}'", **TIGHT)
    # the mean is the sum over the batch divided by its size
    _, total = compiled.backprop(dict(env), of, wrt)
    _, mean = compiled.backprop(dict(env), of, wrt, mean=True)
    for name in wrt:
        close(mean[name] * B, total[name], f"mean × {B} vs sum: '{name}'")


# -- failures inside a generated plan ---------------------------------------------------------

def _fragile(x):
    if np.any(np.abs(x) > 10):
        raise ValueError("input out of range")
    return 2 * x


def _fragile_vjp(g, out, x):
    if np.any(x < -5):
        raise ValueError("gradient out of range")
    return 2 * g


FRAGILE = """
graphdef: 1
name: fragile
inputs: {x: {shape: [2]}}
nodes:
  a: {op: neg, inputs: [x]}
  b: {op: fragile_test, inputs: [a]}
  c: {op: sum, inputs: [b]}
outputs: [c]
"""


@pytest.fixture
def fragile():
    graphdef.register_op("fragile_test", _fragile, _fragile_vjp)  # no batching rule: per sample on a batch
    try:
        yield graphdef.loads(FRAGILE)
    finally:
        del OPS["fragile_test"]


def generated_line(message: str, plan) -> int:
    """The line number a failure message cites, checked to be this plan's, with its text quoted exactly."""
    found = re.search(r"(<graphdef [^>]+>) line (\d+): (.*?)\) \(check", message)
    assert found, f"no generated line in: {message}"
    filename, lineno, text = found.group(1), int(found.group(2)), found.group(3)
    assert filename == plan.filename
    assert text == plan.source.splitlines()[lineno - 1].strip()
    assert plan.steps[lineno - 1] is not None and plan.steps[lineno - 1].name == "b"
    return lineno


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_failure_in_forward_plan_names_node_op_and_line(fragile, batch):
    x = np.array([[1.0, 2.0], [3.0, -20.0], [0.0, 0.0]]) if batch else np.array([3.0, -20.0])
    with pytest.raises(graphdef.GraphDefError) as caught:
        fragile.forward({"x": x})
    message = str(caught.value)
    assert "node 'b' (fragile_test) failed: input out of range" in message
    plan = fragile.plan(PlanKey(None, batched=frozenset({"x"} if batch else ())))
    line = plan.source.splitlines()[generated_line(message, plan) - 1]
    assert ("per_sample_forward(" in line) is batch and line.rstrip().endswith("# b")


@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_failure_in_backward_plan_names_node_op_and_line(fragile, batch):
    x = np.array([[1.0, 2.0], [3.0, 6.0]]) if batch else np.array([1.0, 6.0])  # a = -x < -5: the vjp raises
    assert fragile.forward({"x": x})["c"].shape == ((2,) if batch else ())
    with pytest.raises(graphdef.GraphDefError) as caught:
        fragile.gradients({"x": x})
    message = str(caught.value)
    assert "node 'b' (fragile_test) failed: gradient out of range" in message
    plan = fragile.plan(PlanKey("c", ("x",), outputs=("c",), batched=frozenset({"x"} if batch else ())))
    line = plan.source.splitlines()[generated_line(message, plan) - 1]
    assert "∂c/∂a" in line and ("per_sample_vjp(" in line) is batch


def test_failure_in_reference_interpreter_names_node_and_op(fragile):
    reference = with_reference(fragile)
    for call in (lambda: reference.forward({"x": [3.0, -20.0]}), lambda: reference.gradients({"x": [1.0, 6.0]})):
        with pytest.raises(graphdef.GraphDefError, match=r"node 'b' \(fragile_test\) failed: (input|gradient) out"):
            call()


def test_failure_on_python_floats_still_names_the_numpy_plans_line(fragile):
    """A scalar model runs a float plan first; a ValueError there reruns on numpy, whose line is cited."""
    graphdef.register_op("fragile_scalar_test", _fragile, _fragile_vjp)
    try:
        model = graphdef.loads(FRAGILE.replace("shape: [2]", "shape: []").replace("fragile_test", "fragile_scalar_test"))
        with pytest.raises(graphdef.GraphDefError) as caught:
            model.forward({"x": -20.0})
        assert "node 'b' (fragile_scalar_test) failed: input out of range" in str(caught.value)
        generated_line(str(caught.value), model.plan(PlanKey(None)))
    finally:
        del OPS["fragile_scalar_test"]


@pytest.mark.parametrize("file", ["lecture.yaml", "mlp.yaml"])
def test_plan_source_is_registered_with_linecache(file):
    model = load_model(file)
    of, wrt = model.resolve()
    plans = [model.plan(PlanKey(None)), model.compiled_backprop(of, wrt),
             model.compiled_backprop(of, wrt, batched=set(model.inputs))]
    assert len({p.filename for p in plans}) == len(plans)
    for plan in plans:
        lines = plan.source.splitlines(True)
        assert len(lines) > 2 and lines[0].startswith("def ")
        assert linecache.getline(plan.filename, 2) == lines[1]
        assert linecache.getline(plan.filename, len(lines)) == lines[-1]
