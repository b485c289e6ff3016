"""Every registered op's backward rule against central finite differences.

Cases come from the registry itself (each op's `examples` and `domain`), so an op
registered without examples fails here; elementwise ops also get random broadcast shapes.
"""
import numpy as np
import pytest

from graphdef.ops import OPS, broadcast_shape, unbroadcast
from graphdef.ops.registry import REAL

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
    domains = list(op.domain) + [REAL] * (len(shapes) - len(op.domain))
    return [rng.uniform(lo, hi, size=shape) for shape, (lo, hi) in zip(shapes, domains)]


def numeric_vjp(op, inputs, attrs, g, k):
    """∂ sum(g · op(inputs)) / ∂ inputs[k], by central differences."""
    x = inputs[k].copy()
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        values = []
        for step in (EPS, -EPS):
            shifted = x.copy()
            shifted[i] += step
            args = inputs[:k] + [shifted] + inputs[k + 1:]
            values.append(np.sum(g * op.forward(*args, **attrs)))
        grad[i] = (values[0] - values[1]) / (2 * EPS)
    return grad


@pytest.mark.parametrize("name, example", cases())
def test_backward_matches_finite_differences(name, example):
    op = OPS[name]
    assert example is not None, f"op '{name}' declares no examples: add examples=[ex(...)] where it is registered"
    shapes, attrs = example
    full_attrs = op.bind(attrs)
    rng = np.random.default_rng(abs(hash((name, shapes))) % 2**32)
    inputs = sample(op, shapes, rng)
    out = np.asarray(op.forward(*inputs, **full_attrs))
    assert out.shape == op.shape(*shapes, **full_attrs), "shape rule disagrees with forward"
    if op.save is not None:
        np.testing.assert_allclose(op.save(*inputs, **full_attrs)[0], out, rtol=1e-12, err_msg="save disagrees")
    saved = op.saved(out, *inputs, **full_attrs)
    g = rng.normal(size=out.shape)
    assert len(op.backward) == op.arity
    for k, (x, rule) in enumerate(zip(inputs, op.backward)):
        expected = numeric_vjp(op, inputs, full_attrs, g, k)
        got = unbroadcast(np.asarray(rule(g, saved, *inputs, **full_attrs)), x.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=f"{name}: input {k}")


def test_every_op_has_a_doc_and_examples():
    missing = [name for name, op in OPS.items() if not op.doc or not op.examples]
    assert not missing, f"ops without doc or examples: {missing}"
