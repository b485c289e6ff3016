"""Elementwise ops: the lecture's rules (§2), rounding, the usual activations and tests of values.

Each op is one register_op call: forward, then its vector-Jacobian rule per input beside it,
written as Python expressions (see registry.py). Broadcasting ops may return gradients of
the broadcast shape; the engine reduces them. The trigonometric and hyperbolic functions
are in trig.py, comparisons and logic in logic.py.
"""
import functools
import math

import numpy as np

from .batching import elementwise
from .registry import FLOATS, POSITIVE, REAL, SAME, DTypeError, ex, positive, register_op

BINARY = [ex((), ()), ex((3,), (3,)), ex((2, 3), (3,)), ex((4, 1), (1, 3)), ex((), (2, 2))]
UNARY = [ex(()), ex((4,)), ex((2, 3))]


def onnx_node(op_type: str):
    """An ONNX mapping that is one node of the same inputs."""
    return lambda e, inputs, out, attrs: e.node(op_type, inputs, out)


def _binary(name, forward, backward, doc, onnx, **options):
    register_op(name, forward, backward, batch=elementwise, doc=doc, examples=BINARY, onnx=onnx_node(onnx),
                torch=f"x, y: torch.{name}(x, y)", scope=globals(), **options)


def _unary(name, forward, backward, doc, onnx, torch=None, examples=UNARY, scope=None, **options):
    """A one-input elementwise op; `scope`: where its expressions are read (another module's ops, trig.py's)."""
    register_op(name, forward, backward, batch=elementwise, doc=doc, examples=examples,
                onnx=onnx if callable(onnx) else onnx_node(onnx), torch=torch or f"x: torch.{name}(x)",
                scope=scope or globals(), **options)


def NUMBERS(*dtypes, **attrs) -> str:
    """The dtype rule of arithmetic that integers have too (add, mul, maximum...): floats, or int64 throughout,
    as in ONNX. An integer result carries no gradient (the engine never asks its rules)."""
    if "bool" in dtypes or len(set(dtypes)) > 1:
        raise DTypeError(f"inputs hold {' and '.join(dtypes)} values; this op takes floats, or integers (int64), "
                         "all of one kind: convert one with cast_like")
    return dtypes[0]


def giving(dtype: str, rule=FLOATS):
    """A dtype rule whose result is `dtype` (bool for tests and comparisons, int64 for argmax), the inputs
    checked by `rule`."""
    def checked(*dtypes, **attrs):
        rule(*dtypes, **attrs)
        return dtype
    return checked


_binary("add", "x, y: x + y", ("g", "g"), "x + y (∂/∂x = 1, ∂/∂y = 1)", "Add", dtype=NUMBERS)
_binary("sub", "x, y: x - y", ("g", "-g"), "x − y (∂/∂x = 1, ∂/∂y = −1)", "Sub", dtype=NUMBERS)
_binary("mul", "x, y: x * y", ("g * y", "g * x"), "x × y (∂/∂x = y, ∂/∂y = x)", "Mul", dtype=NUMBERS)
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

_unary("neg", "x: -x", "-g", "−x (∂/∂x = −1)", "Neg", dtype=NUMBERS)
_unary("reciprocal", "x: 1 / x", "-g * out * out", "1/x (∂/∂x = −1/x²)", "Reciprocal", domain=[POSITIVE],
       fault="1/0 is infinite: keep the input away from 0")
_unary("relu", "x: np.maximum(x, 0)", "g * (x > 0)", "max(x, 0) (∂/∂x = 1 where x > 0, else 0)", "Relu")
_unary("sigmoid", "x: np.exp(-np.logaddexp(0, -x))", "g * out * (1 - out)",
       "1/(1 + e⁻ˣ), overflow-safe (∂/∂x = σ(1 − σ))", "Sigmoid")
_unary("tanh", "x: np.tanh(x)", "g * (1 - out * out)", "tanh x (∂/∂x = 1 − tanh²x)", "Tanh")
_unary("square", "x: x * x", "2 * g * x", "x² (∂/∂x = 2x)", lambda e, i, o, a: e.node("Mul", [i[0], i[0]], o))
_unary("sqrt", "x: np.sqrt(x)", "g / (2 * out)", "√x (∂/∂x = 1/(2√x))", "Sqrt", domain=[POSITIVE],
       fault="square root of a negative number")
_unary("abs", "x: np.abs(x)", "g * np.sign(x)", "|x| (∂/∂x = sign x)", "Abs", dtype=NUMBERS)
_unary("identity", "x: x", "g", "x unchanged (∂/∂x = 1)", "Identity", torch="x: x", dtype=SAME)  # any dtype


# -- the larger or smaller value -------------------------------------------------------

def _tie_split(g, a, b):
    """a's share of g in max(a, b): all of it where a > b, half where a = b (as PyTorch splits ties)."""
    return np.where(a == b, g / 2, g * (a > b))


_binary("maximum", "x, y: np.maximum(x, y)", ("_tie_split(g, x, y)", "_tie_split(g, y, x)"),
        "the larger of x and y (∂ = 1 to the larger, ½ each on ties)", "Max", dtype=NUMBERS)
_binary("minimum", "x, y: np.minimum(x, y)", ("_tie_split(g, y, x)", "_tie_split(g, x, y)"),
        "the smaller of x and y (∂ = 1 to the smaller, ½ each on ties)", "Min", dtype=NUMBERS)


def _clip(x, *, min: float | None = None, max: float | None = None):
    """x limited to [min, max]: torch.clamp, except that without bounds x passes unchanged (as ONNX's Clip)."""
    return np.clip(x, min, max)


def _inside(x, min, max):
    """Where x lies in [min, max], bounds included: where clip passes the gradient on (as torch.clamp)."""
    return (True if min is None else x >= min) & (True if max is None else x <= max)


def onnx_clip(e, x: str, out: str, low, high) -> str:
    """Clip takes its bounds as inputs (opset 11 on); a missing one is an omitted input ('')."""
    return e.node("Clip", [x, *("" if b is None else e.const(b) for b in (low, high))], out)


_unary("clip", _clip, "g * _inside(x, min, max)",
       "x limited to [min, max], either optional (∂/∂x = 1 inside, bounds included, else 0)",
       lambda e, i, o, a: onnx_clip(e, i[0], o, a["min"], a["max"]), torch="x: torch.clamp(x, min=min, max=max)",
       examples=[ex((2, 3), min=-0.5, max=0.5), ex((4,), min=0.0), ex((), max=0.3)])


# -- rounding: piecewise constant ------------------------------------------------------
# Their derivative is 0 wherever it exists (at the jumps it does not): PyTorch's autograd gives zeros too.

ZERO = "np.zeros_like(g)"

_unary("floor", "x: np.floor(x)", ZERO, "the largest integer ≤ x, as a float (∂/∂x = 0)", "Floor")
_unary("ceil", "x: np.ceil(x)", ZERO, "the smallest integer ≥ x, as a float (∂/∂x = 0)", "Ceil")
_unary("round", "x: np.round(x)", ZERO, "x rounded to the nearest integer, halves to even, as a float (∂/∂x = 0)",
       "Round")
_unary("sign", "x: np.sign(x)", ZERO, "−1, 0 or 1 as x is negative, zero or positive (∂/∂x = 0)", "Sign")


# -- special functions -----------------------------------------------------------------

TWO_OVER_ROOT_PI = 2 / math.sqrt(math.pi)


def _erf(x):
    """scipy's erf (numpy has none), imported on first use: scipy.special takes longer to load than graphdef."""
    from scipy.special import erf
    return erf(x)


def native(e) -> bool:
    """Whether the export is in float32. onnxruntime has no float64 kernel for Erf, Gelu, LeakyRelu, Elu,
    Softplus or Softsign (it runs some through their function bodies, at opset 18 only), nor for the
    trigonometric functions but sin and cos: in float64 they are spelled out in elementary nodes."""
    return e.model.dtype == np.float32


def onnx_native_or(op_type: str, spelled):
    """The op's own node in float32; in float64, `spelled(e, x, out)`: the same function in nodes onnxruntime
    runs in float64."""
    return lambda e, i, o, a: e.node(op_type, i, o) if native(e) else spelled(e, i[0], o)


# erf in float64: its Taylor series around the nearest point of a grid (step ¼ on [−6, 6]; beyond it erf is
# ±1 in double precision), as a Gather of the coefficients, a Pow of the offset and a sum: within an ulp or
# two of scipy's erf.
ERF_STEP, ERF_BOUND, ERF_DEGREE = 0.25, 6.0, 16


@functools.cache
def erf_taylor_table() -> np.ndarray:
    """Row i: erf's Taylor coefficients around cᵢ = −6 + i/4. erf′ = (2/√π)·f where f = e^(−t²), and
    f′ = −2t·f gives f's coefficients bₖ around c: (k + 1)·bₖ₊₁ = −2c·bₖ − 2·bₖ₋₁."""
    c = np.arange(-ERF_BOUND, ERF_BOUND + ERF_STEP / 2, ERF_STEP)
    b = np.zeros((len(c), ERF_DEGREE))
    b[:, 0] = np.exp(-c * c)
    b[:, 1] = -2 * c * b[:, 0]
    for k in range(1, ERF_DEGREE - 1):
        b[:, k + 1] = (-2 * c * b[:, k] - 2 * b[:, k - 1]) / (k + 1)
    return np.column_stack([_erf(c), TWO_OVER_ROOT_PI * b / np.arange(1, ERF_DEGREE + 1)])


def onnx_erf(e, x: str, out: str | None = None) -> str:
    """Erf, or in float64 the series of erf_taylor_table around the nearest grid point."""
    if native(e):
        return e.node("Erf", [x], out)
    table = erf_taylor_table()
    t = e.node("Clip", [x, e.const(-ERF_BOUND), e.const(ERF_BOUND)])
    grid = e.node("Round", [e.node("Mul", [e.node("Add", [t, e.const(ERF_BOUND)]), e.const(1 / ERF_STEP)])])
    offset = e.node("Sub", [t, e.node("Sub", [e.node("Mul", [grid, e.const(ERF_STEP)]), e.const(ERF_BOUND)])])
    row = e.node("Clip", [e.node("Cast", [grid], to=e.onnx.TensorProto.INT64),  # clipped: NaN casts to anything
                          e.const(0, np.int64), e.const(len(table) - 1, np.int64)])
    powers = e.node("Pow", [e.unsqueeze(offset, (-1,)), e.const(np.arange(ERF_DEGREE + 1))])
    return e.reduce("ReduceSum", e.node("Mul", [e.node("Gather", [e.const(table), row]), powers]), -1, False, out)


_unary("erf", "x: _erf(x)", "g * TWO_OVER_ROOT_PI * np.exp(-x * x)",
       "the error function, 2/√π ∫₀ˣ e^(−t²) dt (∂/∂x = (2/√π)·e^(−x²))", lambda e, i, o, a: onnx_erf(e, i[0], o))


# -- activations -----------------------------------------------------------------------

def onnx_positive_else(e, x: str, below: str, out: str) -> str:
    """x where x > 0, else `below`: a piecewise activation in elementary nodes."""
    return e.node("Where", [e.node("Greater", [x, e.const(0.0)]), x, below], out)


def onnx_leaky_relu(e, x: str, out: str, slope: float) -> str:
    if native(e):
        return e.node("LeakyRelu", [x], out, alpha=slope)
    return onnx_positive_else(e, x, e.node("Mul", [x, e.const(slope)]), out)


def onnx_elu(e, x: str, out: str, alpha: float) -> str:
    if native(e):
        return e.node("Elu", [x], out, alpha=alpha)
    return onnx_positive_else(e, x, e.node("Mul", [e.node("Sub", [e.node("Exp", [x]), e.const(1.0)]),
                                                   e.const(alpha)]), out)


_unary("leaky_relu", "x, *, negative_slope=0.01: np.where(x > 0, x, x * negative_slope)",
       "np.where(x > 0, g, g * negative_slope)",
       "x where x > 0, else negative_slope·x (∂/∂x = 1 or negative_slope)",
       lambda e, i, o, a: onnx_leaky_relu(e, i[0], o, a["negative_slope"]),
       torch="x: F.leaky_relu(x, negative_slope)", examples=UNARY + [ex((2, 3), negative_slope=0.2)])

_unary("elu", "x, *, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))",
       "np.where(x > 0, g, g * alpha * np.exp(np.minimum(x, 0)))",
       "x where x > 0, else alpha·(eˣ − 1) (∂/∂x = 1 or alpha·eˣ)",
       lambda e, i, o, a: onnx_elu(e, i[0], o, a["alpha"]), torch="x: F.elu(x, alpha)",
       examples=UNARY + [ex((2, 3), alpha=0.1)])


def _softplus(x, *, beta: float = 1.0, threshold: float = 20.0):
    """ln(1 + e^(βx))/β, a smooth relu; x itself where βx > threshold (as PyTorch)."""
    bx = beta * x
    return np.where(bx > threshold, x, np.logaddexp(0, bx) / beta)


def onnx_softplus(e, x: str, out: str, beta: float, threshold: float) -> str:
    """ln(1 + e^(βx))/β (Softplus, or in float64 max(βx, 0) + ln(1 + e^(−|βx|))), and x above the threshold."""
    bx = x if beta == 1 else e.node("Mul", [x, e.const(beta)])
    if native(e):
        smooth = e.node("Softplus", [bx])
    else:
        tail = e.node("Log", [e.node("Add", [e.node("Exp", [e.node("Neg", [e.node("Abs", [bx])])]), e.const(1.0)])])
        smooth = e.node("Add", [e.node("Max", [bx, e.const(0.0)]), tail])
    smooth = smooth if beta == 1 else e.node("Div", [smooth, e.const(beta)])
    return e.node("Where", [e.node("Greater", [bx, e.const(threshold)]), x, smooth], out)


# Below the threshold the slope σ(βx) is 1 − e^(−β·out): no second exp, and exact where it is tiny.
_unary("softplus", _softplus, "np.where(beta * x > threshold, g, -g * np.expm1(-beta * out))",
       "ln(1 + e^(βx))/β, linear above threshold (∂/∂x = σ(βx), 1 above)",
       lambda e, i, o, a: onnx_softplus(e, i[0], o, a["beta"], a["threshold"]),
       torch="x: F.softplus(x, beta, threshold)", shape=lambda x, *, beta, threshold: positive(beta=beta) or x,
       examples=UNARY + [ex((2, 3), beta=2.0), ex((4,), threshold=1.0), ex((3,), beta=0.5, threshold=0.5)])


# GELU's tanh form, PyTorch's: Φ(x) ≈ ½(1 + tanh(√(2/π)·(x + 0.044715·x³)))
GELU_FORMS = ("none", "tanh")
TANH_SCALE, TANH_CUBIC = math.sqrt(2 / math.pi), 0.044715


def _gate(x, approximate: str):
    """Φ(x), the standard normal CDF that GELU weighs x by: exact (erf), or the tanh form."""
    if approximate == "tanh":
        return 0.5 * (1 + np.tanh(TANH_SCALE * (x + TANH_CUBIC * x * x * x)))
    return 0.5 * (1 + _erf(x / math.sqrt(2)))


def _gate_slope(x, approximate: str):
    """dΦ/dx: the normal density, or the tanh form's derivative."""
    if approximate == "tanh":
        t = np.tanh(TANH_SCALE * (x + TANH_CUBIC * x * x * x))
        return 0.5 * (1 - t * t) * TANH_SCALE * (1 + 3 * TANH_CUBIC * x * x)
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _gelu(x, *, approximate: str = "none"):
    """x·Φ(x), Φ the standard normal CDF; approximate="tanh" takes PyTorch's tanh form of Φ."""
    return x * _gate(x, approximate)


def _gelu_saving(x, *, approximate: str = "none"):
    """The output and Φ(x), which the gradient needs too: erf computed once."""
    gate = _gate(x, approximate)
    return x * gate, gate


def _check_gelu_form(shape, *, approximate):
    if approximate not in GELU_FORMS:
        raise ValueError(f"approximate must be one of {', '.join(GELU_FORMS)}, got '{approximate}'")
    return shape


def onnx_gelu(e, x: str, out: str, approximate: str) -> str:
    """Gelu (opset 20 on, float32), else x·Φ(x) from elementary nodes."""
    if native(e) and e.opset >= 20:
        return e.node("Gelu", [x], out, approximate=approximate)
    if approximate == "tanh":
        cubic = e.node("Mul", [e.node("Mul", [x, x]), e.node("Mul", [x, e.const(TANH_CUBIC)])])
        wave = e.node("Tanh", [e.node("Mul", [e.node("Add", [x, cubic]), e.const(TANH_SCALE)])])
    else:
        wave = onnx_erf(e, e.node("Mul", [x, e.const(1 / math.sqrt(2))]))
    return e.node("Mul", [e.node("Mul", [x, e.const(0.5)]), e.node("Add", [wave, e.const(1.0)])], out)


_unary("gelu", _gelu, "g * (out + x * _gate_slope(x, approximate))",  # `out` is saved: Φ(x)
       "x·Φ(x), Φ the normal CDF or its tanh form (∂/∂x = Φ(x) + x·Φ′(x))",
       lambda e, i, o, a: onnx_gelu(e, i[0], o, a["approximate"]), torch="x: F.gelu(x, approximate=approximate)",
       shape=_check_gelu_form, save=_gelu_saving, examples=UNARY + [ex((2, 3), approximate="tanh")])


_unary("softsign", "x: x / (1 + np.abs(x))", "g / np.square(1 + np.abs(x))", "x/(1 + |x|) (∂/∂x = 1/(1 + |x|)²)",
       onnx_native_or("Softsign", lambda e, x, out: e.node("Div", [x, e.node("Add", [e.node("Abs", [x]),
                                                                                   e.const(1.0)])], out)),
       torch="x: F.softsign(x)")


def onnx_hard_sigmoid(e, x: str, out: str, alpha: float, beta: float) -> str:
    """HardSigmoid in float32; in float64 alpha·x + beta clipped, as the node's alpha and beta are float32
    attributes (its 0.2 is off by 3e-9)."""
    if native(e):
        return e.node("HardSigmoid", [x], out, alpha=alpha, beta=beta)
    return onnx_clip(e, e.node("Add", [e.node("Mul", [x, e.const(alpha)]), e.const(beta)]), out, 0.0, 1.0)


_unary("hard_sigmoid", "x, *, alpha=0.2, beta=0.5: np.clip(alpha * x + beta, 0, 1)",
       "g * alpha * _inside(alpha * x + beta, 0, 1)",
       "max(0, min(1, alpha·x + beta)), as ONNX HardSigmoid (∂/∂x = alpha inside, bounds included as for clip)",
       lambda e, i, o, a: onnx_hard_sigmoid(e, i[0], o, a["alpha"], a["beta"]),
       torch="x: torch.clamp(alpha * x + beta, 0, 1)",  # F.hardsigmoid's alpha is 1/6
       examples=UNARY + [ex((2, 3), alpha=1 / 6), ex((4,), alpha=0.5, beta=0.2), ex((2, 3), alpha=1.0)])


# -- tests of values: booleans, no gradient ------------------------------------------------

_unary("isnan", "x: np.isnan(x)", None, "whether x is NaN (a bool)", "IsNaN", dtype=giving("bool"))
_unary("isinf", "x: np.isinf(x)", None, "whether x is infinite, either sign (a bool)", "IsInf", dtype=giving("bool"))
