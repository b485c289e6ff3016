"""Elementwise ops: the lecture's rules (§2) and the usual activations.

Each op is one register_op call: forward, then its vector-Jacobian rule per input beside it.
Broadcasting ops may return gradients of the broadcast shape; the interpreter reduces them.
"""
import math

import numpy as np

from .registry import POSITIVE, REAL, ex, register_op

BINARY = [ex((), ()), ex((3,), (3,)), ex((2, 3), (3,)), ex((4, 1), (1, 3)), ex((), (2, 2))]
UNARY = [ex(()), ex((4,)), ex((2, 3))]

register_op("add", lambda x, y: x + y,
            (lambda g, out, x, y: g, lambda g, out, x, y: g),
            doc="x + y (∂/∂x = 1, ∂/∂y = 1)", examples=BINARY)

register_op("sub", lambda x, y: x - y,
            (lambda g, out, x, y: g, lambda g, out, x, y: -g),
            doc="x − y (∂/∂x = 1, ∂/∂y = −1)", examples=BINARY)

register_op("mul", lambda x, y: x * y,
            (lambda g, out, x, y: g * y, lambda g, out, x, y: g * x),
            doc="x × y (∂/∂x = y, ∂/∂y = x)", examples=BINARY)

register_op("div", lambda x, y: x / y,
            (lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y),
            doc="x / y (∂/∂x = 1/y, ∂/∂y = −x/y²)", examples=BINARY, domain=[REAL, POSITIVE])


def _log_positive(x):
    """ln x where x > 0, else 0: the limit that keeps ∂(xʸ)/∂y finite at x = 0."""
    return np.log(np.where(x > 0, x, 1))


register_op("pow", lambda x, y: np.power(x, y),
            (lambda g, out, x, y: g * y * np.power(x, y - 1), lambda g, out, x, y: g * out * _log_positive(x)),
            doc="x ** y, both differentiable (∂/∂x = y·x^(y−1), ∂/∂y = x^y·ln x)",
            examples=BINARY, domain=[POSITIVE, REAL])

register_op("exp", lambda x: np.exp(x),
            lambda g, out, x: g * out,
            doc="eˣ (∂/∂x = eˣ)", examples=UNARY)


def _check_base(shape, *, base):
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    return shape


register_op("log", lambda x, *, base=math.e: np.log(x) if base == math.e else np.log(x) / math.log(base),
            lambda g, out, x, *, base: g / x if base == math.e else g / (x * math.log(base)),
            shape=_check_base, doc="log_base(x), natural by default (∂/∂x = 1/(x ln base))",
            examples=UNARY + [ex((3,), base=2), ex((), base=10)], domain=[POSITIVE])

register_op("neg", lambda x: -x,
            lambda g, out, x: -g,
            doc="−x (∂/∂x = −1)", examples=UNARY)

register_op("reciprocal", lambda x: 1 / x,
            lambda g, out, x: -g * out * out,
            doc="1/x (∂/∂x = −1/x²)", examples=UNARY, domain=[POSITIVE])

register_op("relu", lambda x: np.maximum(x, 0),
            lambda g, out, x: g * (x > 0),
            doc="max(x, 0) (∂/∂x = 1 where x > 0, else 0)", examples=UNARY)

register_op("sigmoid", lambda x: np.exp(-np.logaddexp(0, -x)),
            lambda g, out, x: g * out * (1 - out),
            doc="1/(1 + e⁻ˣ), overflow-safe (∂/∂x = σ(1 − σ))", examples=UNARY)

register_op("tanh", lambda x: np.tanh(x),
            lambda g, out, x: g * (1 - out * out),
            doc="tanh x (∂/∂x = 1 − tanh²x)", examples=UNARY)

register_op("square", lambda x: x * x,
            lambda g, out, x: 2 * g * x,
            doc="x² (∂/∂x = 2x)", examples=UNARY)

register_op("sqrt", lambda x: np.sqrt(x),
            lambda g, out, x: g / (2 * out),
            doc="√x (∂/∂x = 1/(2√x))", examples=UNARY, domain=[POSITIVE])

register_op("abs", lambda x: np.abs(x),
            lambda g, out, x: g * np.sign(x),
            doc="|x| (∂/∂x = sign x)", examples=UNARY)

register_op("identity", lambda x: x,
            lambda g, out, x: g,
            doc="x unchanged (∂/∂x = 1)", examples=UNARY)
