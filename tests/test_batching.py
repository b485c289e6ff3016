"""Batching: a model fed a batch computes, sample by sample, what it computes on one sample.

Generated from the op registry (every example of every built-in op, under every choice of
batched inputs) and from models/: values stack, gradients w.r.t. batched inputs stack,
gradients w.r.t. shared values (unbatched inputs, parameters) sum. Checked through the
compiled plans and through the reference interpreter, and against central differences.
Ops without a batching rule run once per sample; an input declared with a leading null
holds its batch axis itself.
"""
import numpy as np
import pytest

import graphdef
from batch_cases import (B, MODEL_FILES, batchings, builtin_ops, check_batch_equivalence, close, example_cases, load_model,
                         model_feeds, one_op_model, sample_inputs, seed_of, with_reference)
from graphdef.engine.lift import PER_SAMPLE, batched_vertices, lift_of
from graphdef.engine.model import PlanKey
from graphdef.ops import OPS
from graphdef.ops.batching import elementwise
from test_op_gradients import random_broadcast_shapes

ENGINES = [pytest.param(False, id="compiled"), pytest.param(True, id="reference")]


def one_op_case(name, index, which, reference=False):
    op = OPS[name]
    shapes, attrs = op.examples[index]
    model = one_op_model(name, shapes, attrs, reference)
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of(name, index, which)))
    return model, feeds, {f"x{i}" for i in which}


# -- every op example, every choice of batched inputs ----------------------------------------

@pytest.mark.parametrize("reference", ENGINES)
@pytest.mark.parametrize("name, index, which", example_cases(batched=True))
def test_op_on_a_batch_is_the_op_per_sample(name, index, which, reference):
    model, feeds, batched = one_op_case(name, index, which, reference)
    assert model.reference is reference
    check_batch_equivalence(model, feeds, batched)


def broadcast_cases():
    """Elementwise ops (batching rule `elementwise`) on random broadcasting shapes beyond their examples."""
    cases = []
    for name, op in builtin_ops().items():
        if op.batch is elementwise:
            rng = np.random.default_rng(seed_of("broadcast", name))
            for i in range(3):
                shapes = random_broadcast_shapes(rng, op.arity)
                for which in batchings(op.arity):
                    cases.append(pytest.param(name, shapes, which, id=f"{name}-{shapes}-b{''.join(map(str, which))}"))
    return cases


@pytest.mark.parametrize("reference", ENGINES)
@pytest.mark.parametrize("name, shapes, which", broadcast_cases())
def test_elementwise_op_on_a_batch_of_broadcast_shapes(name, shapes, which, reference):
    op = OPS[name]
    model = one_op_model(name, shapes, {}, reference)
    feeds = sample_inputs(op, shapes, which, np.random.default_rng(seed_of(name, shapes, which)))
    check_batch_equivalence(model, feeds, {f"x{i}" for i in which})


@pytest.mark.parametrize("name, index, which", example_cases(batched=True))
def test_batched_gradients_match_finite_differences(name, index, which):
    model, feeds, _ = one_op_case(name, index, which)
    numeric = model.gradients(feeds, of="out", method="numeric")
    reverse = model.gradients(feeds, of="out")
    floats = {k for k, v in feeds.items() if v.dtype.kind == "f"}  # integers (indices, labels) have no gradient
    assert set(numeric) == set(reverse) == floats
    for k in floats:
        assert reverse[k].shape == np.shape(feeds[k]), k
        np.testing.assert_allclose(reverse[k], numeric[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_every_builtin_op_has_a_batching_rule():
    """An op without one is right but runs a Python loop per sample: built-ins must not need it."""
    per_sample = sorted(name for name, op in builtin_ops().items() if op.batch is None)
    assert per_sample == [], f"built-in ops without a batching rule (run once per sample): {per_sample}"


@pytest.mark.parametrize("name, index, which", example_cases(batched=True))
def test_builtin_ops_are_lifted_not_looped(name, index, which):
    """The batched plan really uses the op's rule: no per-sample fallback hides a missing one. A rule may
    choose to loop for a batch of its other inputs (a batch of conv kernels), never for a batch of data."""
    model, feeds, batched = one_op_case(name, index, which)
    step = model.graph.vertices["out"]  # (an op with several outputs has more steps: out/1...)
    lift = lift_of(model.graph, step, batched_vertices(model.graph, batched))
    assert lift is not None
    if which == (0,) or lift is not PER_SAMPLE:
        assert lift is not PER_SAMPLE
        plan = model.plan(PlanKey("out", tuple(k for k, v in feeds.items() if v.dtype.kind == "f"),
                                  batched=frozenset(batched)))
        assert "per_sample" not in plan.source


# -- the models of models/ -------------------------------------------------------------------

def model_batchings(file):
    model = load_model(file)
    names = list(model.inputs)
    return [pytest.param(file, tuple(names), id=f"{file}-all")] + \
        ([pytest.param(file, (names[0],), id=f"{file}-{names[0]}")] if len(names) > 1 else [])


@pytest.mark.parametrize("file, batched", [c for f in MODEL_FILES for c in model_batchings(f)])
def test_model_on_a_batch_is_the_model_per_sample(file, batched):
    model = load_model(file)
    feeds = model_feeds(model, np.random.default_rng(seed_of(file)), batched=batched)
    per_sample = check_batch_equivalence(model, feeds, batched)
    # not vacuous: the samples' gradients differ, so stacking, summing and repeating one sample differ too
    assert any(not np.allclose(g[0], g[1]) for g in per_sample.values()), "samples 0 and 1 have equal gradients"


def test_models_cover_every_file():
    assert len(MODEL_FILES) >= 8 and "digits.yaml" in MODEL_FILES


# -- an op without a batching rule runs once per sample ----------------------------------------

def _energy(x, w, *, scale: float = 1.0):
    """scale · sum(x²) · w: the sum is over the whole sample, so a naive batched call would be wrong."""
    return scale * np.sum(x * x) * w


def _register_energy():
    graphdef.register_op("energy_test", _energy,
                         (lambda g, out, x, w, scale: 2 * scale * x * np.sum(g * w),
                          lambda g, out, x, w, scale: scale * np.sum(x * x) * g),
                         shape=lambda x, w, scale=1.0: w, examples=[((2, 3), (4,), {})])


ENERGY = """
graphdef: 1
name: energy
inputs: {x: {shape: [2, 3]}, w: {shape: [4]}}
parameters: {v: {value: [0.5, -1.0, 2.0, 0.25]}}
nodes:
  e: {op: energy_test, inputs: [x, w], scale: 0.5}
  t: {op: tanh, inputs: [e]}
  u: {op: mul, inputs: [t, v]}
  loss: {op: sum, inputs: [u]}
outputs: [loss]
"""


@pytest.mark.parametrize("reference", ENGINES)
@pytest.mark.parametrize("batched", [("x",), ("w",), ("x", "w")])
def test_op_without_batching_rule_runs_per_sample(batched, reference):
    _register_energy()
    try:
        assert OPS["energy_test"].batch is None
        model = graphdef.loads(ENERGY)
        model = with_reference(model) if reference else model
        rng = np.random.default_rng(seed_of("energy", batched))
        feeds = {"x": rng.normal(size=((B,) if "x" in batched else ()) + (2, 3)),
                 "w": rng.normal(size=((B,) if "w" in batched else ()) + (4,))}
        check_batch_equivalence(model, feeds, batched)
        values = model.forward(feeds)
        x = feeds["x"] if "x" in batched else np.broadcast_to(feeds["x"], (B, 2, 3))
        w = feeds["w"] if "w" in batched else np.broadcast_to(feeds["w"], (B, 4))
        close(values["e"], 0.5 * np.sum(x * x, axis=(1, 2))[:, None] * w, "per-sample energy")
        if not reference:
            key = PlanKey("loss", ("x", "w", "v"), batched=frozenset(batched))
            assert "per_sample_forward" in model.plan(key).source and "per_sample_vjp" in model.plan(key).source
    finally:
        del OPS["energy_test"]


# -- an input whose declared shape starts with null holds the batch axis itself ------------------

LITERAL = """
graphdef: 1
name: literal
inputs:
  x: {shape: [null, 3]}
  w: {shape: [3]}
nodes:
  total: {op: sum, inputs: [x]}
  first: {op: mean, inputs: [x], axis: 0}
  scaled: {op: mul, inputs: [x, w]}
  loss: {op: sum, inputs: [scaled]}
outputs: [total, first, loss]
loss: loss
"""


@pytest.mark.parametrize("reference", ENGINES)
def test_literal_batch_is_not_given_another_axis(reference):
    model = graphdef.loads(LITERAL)
    model = with_reference(model) if reference else model
    assert "x" not in model.batchable and "w" in model.batchable
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(4, 3)), rng.normal(size=3)
    values, grads = model.value_and_gradients({"x": x, "w": w}, of="loss")
    close(values["total"], x.sum(), "sum over every axis, the literal N included")
    close(values["first"], x.mean(axis=0), "axis 0 is the literal N")
    close(values["scaled"], x * w, "scaled")
    close(grads["x"], np.broadcast_to(w, (4, 3)), "∂loss/∂x")
    close(grads["w"], x.sum(axis=0), "∂loss/∂w")
    with pytest.raises(graphdef.GraphDefError, match=r"input 'x' has shape \[2, 4, 3\], expected \[null, 3\]"):
        model.forward({"x": rng.normal(size=(2, 4, 3)), "w": w})
    # a batch of w beside the literal N: sample i is x * w[i], and x's N is not the batch axis
    ws = rng.normal(size=(B, 3))
    check_batch_equivalence(model, {"x": x, "w": ws}, {"w"}, of="loss")
    close(model.forward({"x": x, "w": ws})["scaled"], x[None] * ws[:, None], "x * w per sample")


@pytest.mark.parametrize("reference", ENGINES)
def test_a_batch_a_rule_cannot_lift_is_a_located_error(reference):
    """reshape to [-1] needs the sample's size, unknown here: a batch is refused, naming the node."""
    model = graphdef.loads("graphdef: 1\nname: r\ninputs: {x: {shape: [2, null]}}\n"
                           "nodes: {r: {op: reshape, inputs: [x], shape: [-1]}, s: {op: sum, inputs: [r]}}\n"
                           "outputs: [s]\n")
    model = with_reference(model) if reference else model
    close(model.forward({"x": np.ones((2, 3))})["s"], 6.0, "one sample")
    for call in (model.forward, model.gradients):
        with pytest.raises(graphdef.GraphDefError, match=r"node 'r' \(reshape\) failed: cannot run on a batch"):
            call({"x": np.ones((4, 2, 3))})
