"""Every registered op's backward rule against central finite differences.

Cases come from the registry itself (each op's `examples` and `domain`), so an op
registered without examples fails here; elementwise ops also get random broadcast shapes.
"""
import numpy as np
import pytest

from batch_cases import domains, draw, mode, seed_of
from graphdef.ops import OPS, broadcast_shape, unbroadcast

EPS = 1e-6


def random_broadcast_shapes(rng, arity):
    """Shapes of rank <= 3 that broadcast together: some dimensions collapsed to 1 or dropped."""
    full = tuple(int(d) for d in rng.integers(1, 4, size=rng.integers(0, 4)))
    shapes = []
    for _ in range(arity):
        dims = [1 if rng.random() < 0.3 else d for d in full]
        shapes.append(tuple(dims[rng.integers(0, len(dims) + 1):]))
    return shapes


def cases():
    return list(_cases())


def _cases():
    rng = np.random.default_rng(0)
    for name, op in OPS.items():
        examples = list(op.examples) or [None]  # None: a failing case, the op has no examples
        if op.shape is broadcast_shape:
            examples += [(tuple(random_broadcast_shapes(rng, op.arity)), {}) for _ in range(4)]
        for i, example in enumerate(examples):
            yield pytest.param(name, example, id=f"{name}-{i}")


def sample(op, shapes, rng):
    return [draw(domain, shape, rng) for shape, domain in zip(shapes, domains(op, len(shapes)))]


def context(op, training: bool) -> dict:
    """What the engine passes an op that asks: the mode, and a generator drawing the same numbers each call."""
    given = {"training": training, "rng": np.random.default_rng(7)}
    return {k: given[k] for k in op.context}


def call(rule, op, training, *args, **attrs):
    return rule(*args, **attrs, **context(op, training))


def numeric_vjp(op, inputs, attrs, g, k, training=False):
    """∂ sum(g · op(inputs)) / ∂ inputs[k], by central differences."""
    x = inputs[k].copy()
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        values = []
        for step in (EPS, -EPS):
            shifted = x.copy()
            shifted[i] += step
            args = inputs[:k] + [shifted] + inputs[k + 1:]
            values.append(np.sum(g * call(op.forward, op, training, *args, **attrs)))
        grad[i] = (values[0] - values[1]) / (2 * EPS)
    return grad


@pytest.mark.parametrize("name, example", cases())
def test_backward_matches_finite_differences(name, example):
    op = OPS[name]
    assert example is not None, f"op '{name}' declares no examples: add examples=[ex(...)] where it is registered"
    shapes, attrs = example
    attrs, training = mode(attrs)
    for output in range(op.outputs(**op.bind(attrs)) if op.outputs else 1):
        full_attrs = op.bind(attrs) | ({"output": output} if op.outputs else {})
        rng = np.random.default_rng(seed_of(name, shapes, output))
        inputs = sample(op, shapes, rng)
        out = np.asarray(call(op.forward, op, training, *inputs, **full_attrs))
        differentiable = out.dtype.kind == "f"
        assert out.shape == op.shape(*shapes, **full_attrs), "shape rule disagrees with forward"
        if op.save is not None:
            np.testing.assert_allclose(call(op.save, op, training, *inputs, **full_attrs)[0], out, rtol=1e-12,
                                       err_msg="save disagrees")
            out = call(op.save, op, training, *inputs, **full_attrs)[1]
        g = rng.normal(size=np.shape(call(op.forward, op, training, *inputs, **full_attrs)))
        assert len(op.backward) == op.arity
        for k, (x, rule) in enumerate(zip(inputs, op.backward)):
            if x.dtype.kind != "f" or not differentiable:
                assert rule is None, f"{name}: input {k} or the output holds integers, so there is no gradient rule"
                continue
            expected = numeric_vjp(op, inputs, full_attrs, g, k, training)
            got = unbroadcast(np.asarray(call(rule, op, training, g, out, *inputs, **full_attrs)), x.shape)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=f"{name}: input {k}")


def test_every_op_has_a_doc_and_examples():
    missing = [name for name, op in OPS.items() if not op.doc or not op.examples]
    assert not missing, f"ops without doc or examples: {missing}"
