"""Trigonometric and hyperbolic functions and their inverses, elementwise.

onnxruntime runs Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh and Atanh in float32 only, so
a float64 export spells each out in nodes it runs in float64 (Sin, Cos, Exp, Log, Tanh...),
to within a few ulps of numpy: an inverse tangent is float32's Atan refined by a Newton step,
the inverse hyperbolic functions are logarithms written with an accurate log(1 + u).
"""
import functools
import math

import numpy as np  # noqa: F401  (read by the rules written as expressions)

from .elementwise import _unary, onnx_native_or

unary = functools.partial(_unary, scope=globals())

UNIT = (-0.9, 0.9)  # inside (−1, 1), where asin, acos and atanh are differentiable
BEYOND_ONE = (1.1, 3.0)  # acosh: above 1
BIG = 2.0 ** 28  # above it, asinh x = ln 2x and acosh x = ln 2x in double precision


# -- trigonometric --------------------------------------------------------------------------

def _atan64(e, x: str, out: str | None = None) -> str:
    """atan x as float32's Atan, then one Newton step in float64: with y ≈ atan x,
    atan x = y + atan((x cos y − sin y)/(cos y + x sin y)), and the atan of the ~1e-7 left is itself to double
    precision. x is clipped to ±1e300 for the step, where Atan(±inf) = ±π/2 already."""
    y = e.node("Cast", [e.node("Atan", [e.node("Cast", [x], to=e.onnx.TensorProto.FLOAT)])], to=e.elem)
    x = e.node("Clip", [x, e.const(-1e300), e.const(1e300)])  # (Clip keeps NaN)
    cos, sin = e.node("Cos", [y]), e.node("Sin", [y])
    step = e.node("Div", [e.node("Sub", [e.node("Mul", [x, cos]), sin]), e.node("Add", [cos, e.node("Mul", [x, sin])])])
    return e.node("Add", [y, step], out)


def _asin64(e, x: str, out: str) -> str:
    """asin x = atan(x/√((1 − x)(1 + x))), ±π/2 at ±1 (atan of ±inf)."""
    one = e.const(1.0)
    root = e.node("Sqrt", [e.node("Mul", [e.node("Sub", [one, x]), e.node("Add", [one, x])])])
    return _atan64(e, e.node("Div", [x, root]), out)


def _acos64(e, x: str, out: str) -> str:
    """acos x = 2 atan √((1 − x)/(1 + x)): exact near 1, where π/2 − asin x would lose digits; π at −1."""
    one = e.const(1.0)
    half = _atan64(e, e.node("Sqrt", [e.node("Div", [e.node("Sub", [one, x]), e.node("Add", [one, x])])]))
    return e.node("Mul", [half, e.const(2.0)], out)


unary("sin", "x: np.sin(x)", "g * np.cos(x)", "sin x (∂/∂x = cos x)", "Sin")
unary("cos", "x: np.cos(x)", "-g * np.sin(x)", "cos x (∂/∂x = −sin x)", "Cos")
unary("tan", "x: np.tan(x)", "g * (1 + out * out)", "tan x (∂/∂x = 1 + tan²x)",
      onnx_native_or("Tan", lambda e, x, out: e.node("Div", [e.node("Sin", [x]), e.node("Cos", [x])], out)),
      domain=[(-1.2, 1.2)], fault="tan is infinite at odd multiples of π/2: keep its input away from them")
unary("asin", "x: np.arcsin(x)", "g / np.sqrt((1 - x) * (1 + x))", "the angle in [−π/2, π/2] whose sine is x "
      "(∂/∂x = 1/√(1 − x²))", onnx_native_or("Asin", _asin64), domain=[UNIT],
      fault="asin is defined on [−1, 1] only (NaN outside), and its gradient is infinite at ±1")
unary("acos", "x: np.arccos(x)", "-g / np.sqrt((1 - x) * (1 + x))", "the angle in [0, π] whose cosine is x "
      "(∂/∂x = −1/√(1 − x²))", onnx_native_or("Acos", _acos64), domain=[UNIT],
      fault="acos is defined on [−1, 1] only (NaN outside), and its gradient is infinite at ±1")
unary("atan", "x: np.arctan(x)", "g / (1 + x * x)", "the angle in (−π/2, π/2) whose tangent is x "
      "(∂/∂x = 1/(1 + x²))", onnx_native_or("Atan", _atan64))


# -- hyperbolic -----------------------------------------------------------------------------

def _cosh64(e, x: str, out: str | None = None) -> str:
    """cosh x = h·(h/2) + e^(−|x|)/2 with h = e^(|x|/2): finite up to where cosh itself overflows (e^|x| would
    overflow before it)."""
    size = e.node("Abs", [x])
    h = e.node("Exp", [e.node("Mul", [size, e.const(0.5)])])
    tail = e.node("Mul", [e.node("Exp", [e.node("Neg", [size])]), e.const(0.5)])
    return e.node("Add", [e.node("Mul", [h, e.node("Mul", [h, e.const(0.5)])]), tail], out)


def _sinh64(e, x: str, out: str) -> str:
    """sinh x = tanh x · cosh x: no cancellation near 0, as (eˣ − e⁻ˣ)/2 would have."""
    return e.node("Mul", [e.node("Tanh", [x]), _cosh64(e, x)], out)


def _log1p64(e, u: str) -> str:
    """ln(1 + u) to a few ulps even for tiny u (ONNX has no Log1p): with w = 1 + u rounded, ln w · u/(w − 1),
    or u where w rounds to 1 (Goldberg's formula)."""
    w = e.node("Add", [u, e.const(1.0)])
    scaled = e.node("Mul", [e.node("Log", [w]), e.node("Div", [u, e.node("Sub", [w, e.const(1.0)])])])
    return e.node("Where", [e.node("Equal", [w, e.const(1.0)]), u, scaled])


def _beyond(e, x: str, near: str, out: str | None = None) -> str:
    """ln 2x where x > 2²⁸ (there asinh x and acosh x are that in double precision, and x² may overflow),
    else `near`."""
    far = e.node("Add", [e.node("Log", [x]), e.const(math.log(2))])
    return e.node("Where", [e.node("Greater", [x, e.const(BIG)]), far, near], out)


def _asinh64(e, x: str, out: str) -> str:
    """asinh x = sign x · ln(1 + a + a²/(1 + √(1 + a²))), a = |x|: ln(a + √(a² + 1)) without cancellation."""
    a = e.node("Abs", [x])
    square = e.node("Mul", [a, a])
    root = e.node("Sqrt", [e.node("Add", [square, e.const(1.0)])])
    u = e.node("Add", [a, e.node("Div", [square, e.node("Add", [root, e.const(1.0)])])])
    return e.node("Mul", [e.node("Sign", [x]), _beyond(e, a, _log1p64(e, u))], out)


def _acosh64(e, x: str, out: str) -> str:
    """acosh x = ln(1 + t + √t·√(t + 2)), t = x − 1: ln(x + √(x² − 1)) without cancellation near 1, NaN below 1."""
    t = e.node("Sub", [x, e.const(1.0)])
    u = e.node("Add", [t, e.node("Mul", [e.node("Sqrt", [t]), e.node("Sqrt", [e.node("Add", [t, e.const(2.0)])])])])
    return _beyond(e, x, _log1p64(e, u), out)


def _atanh64(e, x: str, out: str) -> str:
    """atanh x = (ln(1 + x) − ln(1 − x))/2: ±inf at ±1."""
    difference = e.node("Sub", [_log1p64(e, x), _log1p64(e, e.node("Neg", [x]))])
    return e.node("Mul", [difference, e.const(0.5)], out)


OVERFLOW = "beyond |x| ≈ 710 (float64) or 89 (float32) it overflows: scale the input down"

unary("sinh", "x: np.sinh(x)", "g * np.cosh(x)", "(eˣ − e⁻ˣ)/2 (∂/∂x = cosh x)", onnx_native_or("Sinh", _sinh64),
      fault=OVERFLOW)
unary("cosh", "x: np.cosh(x)", "g * np.sinh(x)", "(eˣ + e⁻ˣ)/2 (∂/∂x = sinh x)", onnx_native_or("Cosh", _cosh64),
      fault=OVERFLOW)
unary("asinh", "x: np.arcsinh(x)", "g / np.hypot(x, 1)", "ln(x + √(x² + 1)) (∂/∂x = 1/√(x² + 1))",
      onnx_native_or("Asinh", _asinh64))
unary("acosh", "x: np.arccosh(x)", "g / (np.sqrt(x - 1) * np.sqrt(x + 1))", "ln(x + √(x² − 1)), x ≥ 1 "
      "(∂/∂x = 1/√(x² − 1))", onnx_native_or("Acosh", _acosh64), domain=[BEYOND_ONE],
      fault="acosh is defined from 1 up (NaN below), and its gradient is infinite at 1")
unary("atanh", "x: np.arctanh(x)", "g / ((1 - x) * (1 + x))", "½ ln((1 + x)/(1 − x)), |x| < 1 (∂/∂x = 1/(1 − x²))",
      onnx_native_or("Atanh", _atanh64), domain=[UNIT],
      fault="atanh is infinite at ±1 and NaN beyond: keep its input inside (−1, 1)")
