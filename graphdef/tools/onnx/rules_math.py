"""Import rules of ONNX's elementwise math, activations, reductions, matrix products and softmax.

One rule per ONNX op (or per family of ops that map the same way), attributes as keyword
arguments named as in ONNX's schema. Each emits graphdef ops through `imp.op`.
"""
from __future__ import annotations

import math

import numpy as np

from .importer import known, rule
from .proto import Malformed, Unsupported, quoted
from .rules_shape import axes_in_range, cast_to, static_ints

ELEMENTWISE = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "MatMul": "matmul",
    "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg",
    "Reciprocal": "reciprocal", "Sqrt": "sqrt", "Abs": "abs", "Erf": "erf", "Sin": "sin", "Cos": "cos",
    "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh",
    "Acosh": "acosh", "Atanh": "atanh", "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign",
    "Softsign": "softsign", "Equal": "equal", "Less": "less", "LessOrEqual": "less_equal",
    "Greater": "greater", "GreaterOrEqual": "greater_equal", "Not": "logical_not", "And": "logical_and",
    "Or": "logical_or", "Xor": "logical_xor",
}


def _same_op(op: str):
    def convert(imp, *xs):
        if len({x.kind for x in xs}) > 1:
            given = " and ".join(f"{quoted(n)} ({x.kind})" for n, x in zip(imp.node.input, xs))
            raise Malformed(f"reads {given}; its inputs must have one type",
                            "the file is damaged or was written wrongly: export it again")
        return imp.op(op, *xs)
    return convert


for _onnx_op, _op in ELEMENTWISE.items():
    rule(_onnx_op)(_same_op(_op))


@rule("Pow")
def pow_(imp, x, y):
    """Pow: an integer exponent of a float base is taken as a float (ONNX allows mixed types here)."""
    return imp.op("pow", x, cast_to(imp, y, x.kind) if x.kind == "float" else y)


@rule("Identity")
def identity(imp, x):
    return x


@rule("LeakyRelu")
def leaky_relu(imp, x, *, alpha):
    return imp.op("leaky_relu", x, negative_slope=alpha)


@rule("Elu")
def elu(imp, x, *, alpha):
    return imp.op("elu", x, alpha=alpha)


@rule("Selu")
def selu(imp, x, *, alpha, gamma):
    return imp.op("mul", imp.op("elu", x, alpha=alpha), gamma)


@rule("Celu")
def celu(imp, x, *, alpha):
    """α·elu(x/α): ONNX's continuously differentiable ELU."""
    return imp.op("mul", imp.op("elu", imp.op("div", x, alpha)), alpha)


@rule("Softplus")
def softplus(imp, x):
    return imp.op("softplus", x)


@rule("Mish")
def mish(imp, x):
    return imp.op("mul", x, imp.op("tanh", imp.op("softplus", x)))


@rule("HardSigmoid")
def hard_sigmoid(imp, x, *, alpha, beta):
    return imp.op("hard_sigmoid", x, alpha=alpha, beta=beta)


@rule("HardSwish")
def hard_swish(imp, x):
    return imp.op("mul", x, imp.op("hard_sigmoid", x, alpha=1 / 6, beta=0.5))


@rule("PRelu")
def prelu(imp, x, slope):
    """relu(x) − slope·relu(−x): x where positive, slope·x elsewhere (slope broadcasts, a learned parameter)."""
    return imp.op("sub", imp.op("relu", x), imp.op("mul", slope, imp.op("relu", imp.op("neg", x))))


@rule("ThresholdedRelu")
def thresholded_relu(imp, x, *, alpha):
    return imp.op("mul", x, imp.op("cast_like", imp.op("greater", x, known(np.asarray(alpha, np.float64))), x))


@rule("Gelu")
def gelu(imp, x, *, approximate):
    return imp.op("gelu", x, approximate=approximate)


@rule("Clip")
def clip(imp, x, low=None, high=None, *, min=None, max=None):
    """Clip: bounds as inputs (opset 11 on) or attributes (before). Known bounds are clip's attributes;
    a bound computed at run time makes both a maximum then a minimum, in ONNX's order (the upper bound wins)."""
    bounds = {"min": min if low is None else low, "max": max if high is None else high}
    known_now = all(b is None or not hasattr(b, "known") or b.known is not None for b in bounds.values())
    if known_now and x.kind == "float":
        fixed = {k: float(np.asarray(getattr(b, "known", b))) for k, b in bounds.items() if b is not None}
        return imp.op("clip", x, **fixed) if fixed else x
    for name, op in (("min", "maximum"), ("max", "minimum")):  # integers, or bounds computed at run time
        if bounds[name] is not None:
            x = imp.op(op, x, bounds[name] if hasattr(bounds[name], "known") else known(np.asarray(bounds[name])))
    return x


def _variadic(op: str):
    def convert(imp, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = imp.op(op, out, x)
        return out if len(xs) > 1 else imp.op("identity", out)
    return convert


rule("Sum")(_variadic("add"))
rule("Max")(_variadic("maximum"))
rule("Min")(_variadic("minimum"))


@rule("Mean")
def mean(imp, *xs):
    return imp.op("div", _variadic("add")(imp, *xs), float(len(xs)))


@rule("Gemm")
def gemm(imp, a, b, c=None, *, alpha, beta, transA, transB):
    for k, x in enumerate((a, b)):
        if x.rank not in (None, 2):
            raise Malformed(f"input #{k} has rank {x.rank}; Gemm multiplies matrices (rank 2)")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise Malformed(f"alpha {alpha} or beta {beta} is not a finite number")
    a = imp.op("transpose", a) if transA else a
    b = imp.op("transpose", b) if transB else b
    y = imp.op("matmul", a, b)
    y = imp.op("mul", y, alpha) if alpha != 1 else y
    if c is not None:
        y = imp.op("add", y, c if beta == 1 else imp.op("mul", c, beta))
    return y


@rule("Einsum")
def einsum(imp, *xs, equation):
    """Einsum of two operands is graphdef's; of one or more than two, graphdef's einsums in a chain, each
    keeping the letters later operands or the result still need (one operand: times the scalar 1)."""
    equation = equation.replace(" ", "")
    if any(len(set(t)) != len(t) for t in equation.replace("...", "").replace("->", ",").split(",")):
        raise Unsupported("Einsum taking a diagonal or a trace")
    if len(xs) == 2:
        return imp.op("einsum", *xs, equation=equation)
    if any(x.rank is None for x in xs):
        raise Unsupported(f"Einsum of {len(xs)} operands whose ranks are unknown")
    terms, out = _explicit_terms(equation, [x.rank for x in xs])
    if len(xs) == 1:
        return imp.op("einsum", xs[0], 1.0, equation=f"{terms[0]},->{out}")
    acc, held = xs[0], terms[0]
    for k in range(1, len(xs)):
        later = "".join(terms[k + 1:]) + out
        keep = out if k == len(xs) - 1 else "".join(dict.fromkeys(c for c in held + terms[k] if c in later))
        acc, held = imp.op("einsum", acc, xs[k], equation=f"{held},{terms[k]}->{keep}"), keep
    return acc


def _explicit_terms(equation: str, ranks: list) -> tuple[list, str]:
    """Each operand's subscripts with '...' spelled out in letters the equation does not use, and the output's
    (in implicit form: the letters used once, in alphabetical order, after the ellipsis)."""
    inputs, _, out = equation.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        raise Malformed(f"equation '{equation}' has {len(terms)} operands but the node has {len(ranks)}")
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation]
    widest = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ellipsis = "".join(free[:widest])
    spelled = [t.replace("...", ellipsis[widest - (r - len(t.replace("...", ""))):]) for t, r in zip(terms, ranks)]
    if "->" not in equation:
        letters = "".join(c for c in "".join(spelled) if c not in ellipsis)
        out = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return spelled, out.replace("...", ellipsis)


def _softmax(op: str):
    """Softmax/LogSoftmax: one axis from opset 13 on; before, the input flattened to 2-D at `axis`,
    which is graphdef's softmax only when that axis is the last."""
    def convert(imp, x, *, axis):
        if imp.opset >= 13:
            return imp.op(op, x, axis=axes_in_range([axis], x.rank)[0])
        axis = axes_in_range([axis], x.rank)[0]
        if not (axis == -1 or (axis == 1 if x.rank is None else axis % x.rank == x.rank - 1)):
            raise Unsupported(f"opset {imp.opset} softmax over axis {axis} (it flattens the trailing axes)")
        return imp.op(op, x, axis=-1)
    return convert


rule("Softmax")(_softmax("softmax"))
rule("LogSoftmax")(_softmax("log_softmax"))


def _reduction(build):
    """A ReduceX rule: axes from the input (ReduceSum from opset 13, the others from 18) or the attribute."""
    def convert(imp, x, axes_input=None, *, axes=None, keepdims, noop_with_empty_axes=0):
        given = static_ints(axes_input, "reduction axes") if axes_input is not None else list(axes or [])
        if not given and noop_with_empty_axes:
            return imp.op("identity", x)
        given = axes_in_range(given, x.rank, "reduction axis")
        return build(imp, x, axis=given or None, keepdims=bool(keepdims))
    return convert


def _reduce_with(op: str, before=None, after=None):
    def build(imp, x, **attrs):
        y = imp.op(op, imp.op(before, x) if before else x, **attrs)
        return imp.op(after, y) if after else y
    return build


rule("ReduceSum")(_reduction(_reduce_with("sum")))
rule("ReduceMean")(_reduction(_reduce_with("mean")))
rule("ReduceMax")(_reduction(_reduce_with("max")))
rule("ReduceMin")(_reduction(_reduce_with("min")))
rule("ReduceProd")(_reduction(_reduce_with("prod")))
rule("ReduceLogSumExp")(_reduction(_reduce_with("logsumexp")))
rule("ReduceSumSquare")(_reduction(_reduce_with("sum", before="square")))
rule("ReduceL1")(_reduction(_reduce_with("sum", before="abs")))
rule("ReduceL2")(_reduction(_reduce_with("sum", before="square", after="sqrt")))
rule("ReduceLogSum")(_reduction(_reduce_with("sum", after="log")))


def _arg_extreme(op: str):
    def convert(imp, x, *, axis, keepdims, select_last_index):
        return imp.op(op, x, axis=axes_in_range([axis], x.rank)[0], keepdims=bool(keepdims),
                      select_last_index=bool(select_last_index))
    return convert


rule("ArgMax")(_arg_extreme("argmax"))
rule("ArgMin")(_arg_extreme("argmin"))


@rule("CumSum")
def cumsum(imp, x, axis, *, exclusive, reverse):
    """Running sums; the reversed ones from the total (Σ_{j≥i} = total − Σ_{j<i})."""
    (axis,) = axes_in_range(static_ints(axis, "CumSum axis"), x.rank)
    y = imp.op("cumsum", x, axis=axis)
    before = imp.op("sub", y, x)  # the exclusive running sum
    if not reverse:
        return before if exclusive else y
    after = imp.op("sub", imp.op("sum", x, axis=axis, keepdims=True), y)
    return after if exclusive else imp.op("add", after, x)
