"""Elementwise ops: the lecture's rules (§2) and the usual activations.

Each op is one register_op call: forward, then its vector-Jacobian rule per input beside it,
written as Python expressions (see registry.py). Broadcasting ops may return gradients of
the broadcast shape; the engine reduces them.
"""
import math

import numpy as np

from .batching import elementwise
from .registry import POSITIVE, REAL, ex, register_op

BINARY = [ex((), ()), ex((3,), (3,)), ex((2, 3), (3,)), ex((4, 1), (1, 3)), ex((), (2, 2))]
UNARY = [ex(()), ex((4,)), ex((2, 3))]


def onnx_node(op_type: str):
    """An ONNX mapping that is one node of the same inputs."""
    return lambda e, inputs, out, attrs: e.node(op_type, inputs, out)


def _binary(name, forward, backward, doc, onnx, **options):
    register_op(name, forward, backward, batch=elementwise, doc=doc, examples=BINARY, onnx=onnx_node(onnx),
                torch=f"x, y: torch.{name}(x, y)", scope=globals(), **options)


def _unary(name, forward, backward, doc, onnx, torch=None, **options):
    register_op(name, forward, backward, batch=elementwise, doc=doc, examples=UNARY,
                onnx=onnx if callable(onnx) else onnx_node(onnx), torch=torch or f"x: torch.{name}(x)",
                scope=globals(), **options)


_binary("add", "x, y: x + y", ("g", "g"), "x + y (∂/∂x = 1, ∂/∂y = 1)", "Add")
_binary("sub", "x, y: x - y", ("g", "-g"), "x − y (∂/∂x = 1, ∂/∂y = −1)", "Sub")
_binary("mul", "x, y: x * y", ("g * y", "g * x"), "x × y (∂/∂x = y, ∂/∂y = x)", "Mul")
_binary("div", "x, y: x / y", ("g / y", "-g * out / y"), "x / y (∂/∂x = 1/y, ∂/∂y = −x/y²)", "Div",
        domain=[REAL, POSITIVE], fault="division by zero: keep the divisor away from 0")


def _log_positive(x):
    """ln x where x > 0, else 0: the limit that keeps ∂(xʸ)/∂y finite at x = 0."""
    return np.log(np.where(x > 0, x, 1))


_binary("pow", "x, y: np.power(x, y)", ("g * y * np.power(x, y - 1)", "g * out * _log_positive(x)"),
        "x ** y, both differentiable (∂/∂x = y·x^(y−1), ∂/∂y = x^y·ln x)", "Pow", domain=[POSITIVE, REAL],
        fault="a negative base with a fractional exponent, or an overflow")

_unary("exp", "x: np.exp(x)", "g * out", "eˣ (∂/∂x = eˣ)", "Exp",
       fault="exp overflows above ~709 (float64) or ~88 (float32): scale the input down")


def _check_base(shape, *, base):
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    return shape


def onnx_log(e, x: str, out, base):
    """log_base as ONNX nodes: Log, divided by ln(base) unless natural."""
    return e.node("Log", [x], out) if base == math.e else e.node("Div", [e.node("Log", [x]), e.const(math.log(base))],
                                                                 out)


register_op("log", "x, *, base=math.e: np.log(x) if base == math.e else np.log(x) / math.log(base)",
            "g / x if base == math.e else g / (x * math.log(base))",
            shape=_check_base, batch=elementwise, doc="log_base(x), natural by default (∂/∂x = 1/(x ln base))",
            examples=UNARY + [ex((3,), base=2), ex((), base=10)], domain=[POSITIVE],
            fault="log of zero gives -inf and of a negative number NaN: keep its input positive",
            onnx=lambda e, i, o, a: onnx_log(e, i[0], o, a["base"]), torch="x: torch.log(x) / math.log(base)")

_unary("neg", "x: -x", "-g", "−x (∂/∂x = −1)", "Neg")
_unary("reciprocal", "x: 1 / x", "-g * out * out", "1/x (∂/∂x = −1/x²)", "Reciprocal", domain=[POSITIVE],
       fault="1/0 is infinite: keep the input away from 0")
_unary("relu", "x: np.maximum(x, 0)", "g * (x > 0)", "max(x, 0) (∂/∂x = 1 where x > 0, else 0)", "Relu")
_unary("sigmoid", "x: np.exp(-np.logaddexp(0, -x))", "g * out * (1 - out)",
       "1/(1 + e⁻ˣ), overflow-safe (∂/∂x = σ(1 − σ))", "Sigmoid")
_unary("tanh", "x: np.tanh(x)", "g * (1 - out * out)", "tanh x (∂/∂x = 1 − tanh²x)", "Tanh")
_unary("square", "x: x * x", "2 * g * x", "x² (∂/∂x = 2x)", lambda e, i, o, a: e.node("Mul", [i[0], i[0]], o))
_unary("sqrt", "x: np.sqrt(x)", "g / (2 * out)", "√x (∂/∂x = 1/(2√x))", "Sqrt", domain=[POSITIVE],
       fault="square root of a negative number")
_unary("abs", "x: np.abs(x)", "g * np.sign(x)", "|x| (∂/∂x = sign x)", "Abs")
_unary("identity", "x: x", "g", "x unchanged (∂/∂x = 1)", "Identity", torch="x: x")
