"""Tensor ops: matrix products, einsum, reductions, running sums, triangles and reshaping."""
import functools
import math
import string

import numpy as np

from .batching import Lift, along_axis, matrix_product, permutation, ranks, reduction, reshaping
from .registry import LINEAR, MULTILINEAR, SAME, ShapeError, broadcast_shape, ex, register_op, show_shape, unbroadcast


def _axes(axis, rank: int) -> tuple:
    """Normalize an axis attribute (None, int or list) to sorted non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    if any(not -rank <= a < rank for a in axes):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    if len({a % rank for a in axes}) < len(axes):
        raise ValueError(f"axis {axis} repeats an axis")
    return tuple(sorted(a % rank for a in axes))


# -- matmul -------------------------------------------------------------------

def _promoted(g, x, y):
    """x, y and g as matrices: numpy matmul's 1-D promotion made explicit (batch dims kept)."""
    x2 = x if x.ndim > 1 else x[None, :]
    y2 = y if y.ndim > 1 else y[:, None]
    return np.reshape(g, np.broadcast_shapes(x2.shape[:-2], y2.shape[:-2]) + (x2.shape[-2], y2.shape[-1])), x2, y2


def _rows_times(x, y):
    """x @ y for a stack of matrices x and one matrix (or vector) y, as one product of all of x's rows: one BLAS
    call instead of one per matrix of the stack."""
    return (x.reshape(-1, x.shape[-1]) @ y).reshape(x.shape[:-1] + y.shape[1:])


def _matmul_vjp_x(g, x, y):
    if y.ndim == 2 and x.ndim > 1:
        return g @ y.T if x.ndim == 2 else _rows_times(g, y.T)
    g2, x2, y2 = _promoted(g, x, y)
    return unbroadcast(g2 @ np.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)


def _matmul_vjp_y(g, x, y):
    if y.ndim == 2 and x.ndim > 1:  # summed over the stack of x: one product of all its rows
        return x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1])
    g2, x2, y2 = _promoted(g, x, y)
    return unbroadcast(np.swapaxes(x2, -1, -2) @ g2, y2.shape).reshape(y.shape)


def _matmul_shape(a, b):
    if a is None or b is None:
        return None
    if not a or not b:
        raise ValueError("matmul needs inputs of rank 1 or more; use mul for scalars")
    a2, b2 = (a if len(a) > 1 else (1,) + a), (b if len(b) > 1 else b + (1,))
    if None not in (a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise ValueError(f"matmul inner sizes differ: x is {list(a)}, y is {list(b)} ({a2[-1]} ≠ {b2[-2]})")
    rows = (a[-2],) if len(a) > 1 else ()
    cols = (b[-1],) if len(b) > 1 else ()
    return broadcast_shape(a2[:-2], b2[:-2]) + rows + cols


# The rules leave `out` unused, so the generated code can free the product early.
register_op("matmul", "x, y: x @ y if x.ndim < 3 or y.ndim > 2 else _rows_times(x, y)",
            ("_matmul_vjp_x(g, x, y)", "_matmul_vjp_y(g, x, y)"), shape=_matmul_shape, batch=matrix_product,
            onnx=lambda e, i, o, a: e.node("MatMul", i, o), torch="x, y: torch.matmul(x, y)",
            doc="matrix product x @ y (numpy matmul: 1-D promotion, batched leading dims)",
            examples=[ex((2, 3), (3, 4)), ex((3,), (3, 2)), ex((2, 3), (3,)), ex((4,), (4,)),
                      ex((2, 2, 3), (3, 2)), ex((2, 3), (2, 3, 4))], jvp=MULTILINEAR)


# -- einsum -------------------------------------------------------------------
# Subscripts are letters, one per axis; '...' stands for the axes no letter names, which broadcast
# (aligned from the right) as in torch.einsum. Rules work on the explicit form of an equation, where
# each '...' is spelled with letters the equation leaves free, for the operands' ranks.

@functools.cache
def _subscripts(equation: str) -> tuple[tuple[str, str], str | None]:
    """The two operands' subscripts and the output's (None when implicit), each '...' written '.'."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        raise ValueError(f"einsum equation '{equation}' has {len(terms)} operand(s); einsum takes two, "
                         "as in 'ij,jk->ik'")
    x, y = (_term(t, equation) for t in terms)
    out = _term(rhs, equation) if arrow else None
    for term in (x, y, out or ""):
        repeated = sorted({c for c in term if term.count(c) > 1})
        if repeated:
            raise ValueError(f"einsum equation '{equation}' repeats '{repeated[0]}' in one term: diagonals and "
                             "traces are not supported")
    missing = sorted(set(out or "") - set(x + y))
    if missing:
        raise ValueError(f"einsum equation '{equation}': the output's '{missing[0]}' names no axis of an operand")
    return (x, y), out


def _term(text: str, equation: str) -> str:
    if set(text.replace("...", "")) - set(string.ascii_letters) or text.count("...") > 1:
        raise ValueError(f"einsum equation '{equation}': '{text}' should be letters with at most one '...'")
    return text.replace("...", ".")


@functools.cache
def _explicit(equation: str, ranks: tuple) -> tuple[str, str, str]:
    """x's, y's and the output's subscripts for operands of these ranks, every axis named by a letter.
    An implicit output is '...' then the letters that appear once, in alphabetical order (as numpy, torch)."""
    (x, y), out = _subscripts(equation)
    widths = []
    for k, (term, rank) in enumerate(zip((x, y), ranks)):
        named = len(term.replace(".", ""))
        if rank < named or (rank > named and "." not in term):
            raise ShapeError(f"einsum equation '{equation}': operand {k + 1} has {rank} axes, its subscripts "
                             f"'{term.replace('.', '...')}' name {named}")
        widths.append(rank - named)
    dots = _free_letters(equation, max(widths))
    x, y = (term.replace(".", dots[len(dots) - w:]) for term, w in zip((x, y), widths))
    if out is None:
        out = "." + "".join(sorted(c for c in set(x + y) - set(dots) if (x + y).count(c) == 1))
    return x, y, out.replace(".", dots)


def _free_letters(used: str, n: int) -> str:
    free = [c for c in string.ascii_letters if c not in used]
    if n > len(free):
        raise ShapeError(f"einsum: {n} axes under '...' need more letters than are free")
    return "".join(free[:n])


def _einsum(x, y, *, equation: str):
    """Einstein summation of two operands (torch.einsum): letters missing from the output are summed over."""
    xs, ys, out = _explicit(equation, (np.ndim(x), np.ndim(y)))
    return _contract(xs, x, ys, y, out)


def _contract(xs: str, x, ys: str, y, out: str):
    """einsum xs,ys->out as one matrix product, stacked over the letters all three share (np.einsum's own path
    is several times slower on the stacks of small matrices attention makes). The product's rows are x's letters
    the output keeps, its columns y's, its inner axis the letters the output sums over."""
    x, xs = _sum_alone(x, xs, ys + out)
    y, ys = _sum_alone(y, ys, xs + out)
    inner = [c for c in xs if c in ys and c not in out]
    x, y = _sum_broadcast(x, xs, y, ys, inner)
    stack = [c for c in out if c in xs and c in ys]
    rows, cols = [c for c in out if c not in ys], [c for c in out if c not in xs]
    x = np.transpose(x, [xs.index(c) for c in stack + rows + inner])
    y = np.transpose(y, [ys.index(c) for c in stack + inner + cols])
    lead, row_sizes, col_sizes = len(stack), x.shape[len(stack):len(stack) + len(rows)], y.shape[y.ndim - len(cols):]
    k = math.prod(x.shape[lead + len(rows):])
    z = x.reshape(x.shape[:lead] + (math.prod(row_sizes), k)) @ y.reshape(y.shape[:lead] + (k, math.prod(col_sizes)))
    z = z.reshape(z.shape[:lead] + row_sizes + col_sizes)
    made = stack + rows + cols
    return np.transpose(z, [made.index(c) for c in out])


def _sum_alone(x, xs: str, others: str):
    """x summed over the letters only it has (nothing else reads them), and its remaining subscripts."""
    alone = tuple(i for i, c in enumerate(xs) if c not in others)
    if not alone:
        return x, xs
    return np.sum(x, axis=alone), "".join(c for c in xs if c in others)


def _sum_broadcast(x, xs: str, y, ys: str, inner: list):
    """A summed letter of size 1 in one operand (broadcast) and larger in the other: the larger one summed over it,
    kept as size 1, so that the product's inner sizes agree."""
    for c in inner:
        i, j = xs.index(c), ys.index(c)
        if np.shape(x)[i] == 1 and np.shape(y)[j] != 1:
            y = np.sum(y, axis=j, keepdims=True)
        elif np.shape(y)[j] == 1 and np.shape(x)[i] != 1:
            x = np.sum(x, axis=i, keepdims=True)
    return x, y


def _einsum_vjp(g, x, y, equation: str, wrt: int):
    """∂ of operand `wrt` (0: x, 1: y): the einsum of g with the other operand onto its subscripts. Axes only
    this operand has come back broadcast; axes it broadcast (size 1) are summed."""
    subscripts = _explicit(equation, (np.ndim(x), np.ndim(y)))
    own, other, out = subscripts[wrt], subscripts[1 - wrt], subscripts[2]
    target, partner = (x, y) if wrt == 0 else (y, x)
    kept = "".join(c for c in own if c in out + other)
    grad = _contract(out, g, other, partner, kept)
    grad = np.expand_dims(grad, tuple(i for i, c in enumerate(own) if c not in kept))
    return unbroadcast(np.broadcast_to(grad, np.broadcast_shapes(grad.shape, np.shape(target))), np.shape(target))


def _einsum_shape(x, y, *, equation):
    _subscripts(equation)
    if x is None or y is None:
        return None
    xs, ys, out = _explicit(equation, (len(x), len(y)))
    dims = {}
    for letter, d in [*zip(xs, x), *zip(ys, y)]:
        dims.setdefault(letter, []).append(d)
    sizes = {letter: _size(equation, letter, ds) for letter, ds in dims.items()}
    return tuple(sizes[letter] for letter in out)


def _size(equation: str, letter: str, dims: list):
    """The size a letter stands for: the sizes of the axes it names, broadcast (a 1 stretches)."""
    try:
        return broadcast_shape(*((d,) for d in dims))[0]
    except ShapeError:
        raise ShapeError(f"einsum equation '{equation}': '{letter}' names axes of sizes "
                         f"{' and '.join(map(str, dims))}") from None


def einsum_batch(shapes, batched, *, equation) -> Lift:
    """einsum on a batch: one more letter, first in the batched operands and in the output."""
    xs, ys, out = _explicit(equation, tuple(ranks(shapes)))
    b = _free_letters(xs + ys + out, 1)
    x, y = (b + term if is_batched else term for term, is_batched in zip((xs, ys), batched))
    return Lift(((), ()), {"equation": f"{x},{y}->{b}{out}"})


def onnx_einsum(e, inputs: list, out: str, equation: str) -> str:
    """Einsum (opset 12 on), its equation in the explicit form for the operands' ranks."""
    xs, ys, subscripts = _explicit(equation, tuple(e.ranks))
    return e.node("Einsum", inputs, out, equation=f"{xs},{ys}->{subscripts}")


register_op("einsum", _einsum, ("_einsum_vjp(g, x, y, equation, 0)", "_einsum_vjp(g, x, y, equation, 1)"),
            shape=_einsum_shape, batch=einsum_batch, torch="x, y: torch.einsum(equation, x, y)",
            doc="Einstein summation of two operands, e.g. 'qd,kd->qk' (∂: an einsum of g with the other operand)",
            onnx=lambda e, i, o, a: onnx_einsum(e, i, o, a["equation"]),
            examples=[ex((2, 3), (3, 4), equation="ij,jk->ik"), ex((2, 3), (4, 3), equation="qd,kd->qk"),
                      ex((3,), (3, 2), equation="i,ij"), ex((2, 3), (2, 3), equation="ij,ij->"),
                      ex((2, 3), (4,), equation="ij,k->ijk"), ex((2, 3), (3,), equation="ij,j->j"),
                      ex((2, 1, 3), (4, 3), equation="...d,kd->...k"), ex((2, 3), (1, 3), equation="ij,ij->ij"),
                      ex((2, 2, 3), (2, 3), equation="...i,...i->i"), ex((), (), equation=",->")], jvp=MULTILINEAR)


# -- reductions ---------------------------------------------------------------

def _unreduce(g, x, axis, keepdims):
    """Broadcast a reduction's output gradient back over the reduced axes."""
    if not keepdims:
        g = np.expand_dims(g, _axes(axis, np.ndim(x)))
    return np.broadcast_to(g, np.shape(x))  # (np.ndim, np.shape: x may be a Python float in a float plan)


def _reduce_shape(shape, *, axis=None, keepdims=False):
    if shape is None:
        return None
    axes = _axes(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


REDUCE_EXAMPLES = [ex((3,)), ex((2, 3)), ex((2, 3), axis=0), ex((2, 3, 4), axis=[0, 2]),
                   ex((2, 3), axis=-1, keepdims=True), ex(())]


def _sum(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """Sum of elements over axis (all by default)."""
    return np.sum(x, axis=axis, keepdims=keepdims)


def _mean(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """Mean of elements over axis (all by default)."""
    return np.mean(x, axis=axis, keepdims=keepdims)


def onnx_reduce(op_type: str):
    """The ONNX mapping of a reduction: one Reduce* node over the same axes."""
    return lambda e, inputs, out, attrs: e.reduce(op_type, inputs[0], attrs["axis"], attrs["keepdims"], out)


def _dims(axis):
    """An axis attribute as torch's `dim`: every axis when None."""
    return () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)


register_op("sum", _sum, "_unreduce(g, x, axis, keepdims)", shape=_reduce_shape, batch=reduction,
            torch="x: x if axis == () else x.sum() if axis is None and not keepdims else x.sum(dim=_dims(axis), keepdim=keepdims)",
            examples=REDUCE_EXAMPLES, onnx=onnx_reduce("ReduceSum"), jvp=LINEAR)
register_op("mean", _mean, "_unreduce(g, x, axis, keepdims) * (np.size(out) / np.size(x))", shape=_reduce_shape,
            torch="x: x if axis == () else x.mean() if axis is None and not keepdims else x.mean(dim=_dims(axis), keepdim=keepdims)",
            batch=reduction, examples=REDUCE_EXAMPLES, onnx=onnx_reduce("ReduceMean"), jvp=LINEAR)


def _max(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """Largest element over axis (all by default): torch.amax."""
    return np.max(x, axis=axis, keepdims=keepdims)


def _min(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """Smallest element over axis (all by default): torch.amin."""
    return np.min(x, axis=axis, keepdims=keepdims)


def _weighted_sum(t, weights, axis, keepdims):
    """J·t of a reduction whose ∂out/∂x is `weights`, one per element of x (max, logsumexp, prod): Σ weights·t over
    axis; their vjp rules spread g back times the same weights."""
    return np.sum(t * weights, axis=axis, keepdims=keepdims)


def _tie_shares(out, x, axis, keepdims, dtype):
    """∂out/∂x of a max (or min): 1 at the element equal to it, shared evenly among ties, as torch.amax and amin."""
    chosen = x == _unreduce(out, x, axis, keepdims)
    return chosen / np.sum(chosen, axis=_axes(axis, np.ndim(x)), keepdims=True, dtype=dtype)


def _to_extremes(g, out, x, axis, keepdims):
    """g to the elements equal to the max (or min), shared evenly among ties."""
    g = _unreduce(g, x, axis, keepdims)
    return g * _tie_shares(out, x, axis, keepdims, g.dtype)


def _from_extremes(t, out, x, axis, keepdims):
    """J·t of a max (or min): t at the extreme element, averaged over ties (the vjp's sharing, transposed)."""
    return _weighted_sum(t, _tie_shares(out, x, axis, keepdims, np.result_type(t)), axis, keepdims)


register_op("max", _max, "_to_extremes(g, out, x, axis, keepdims)", jvp="_from_extremes(t, out, x, axis, keepdims)",
            shape=_reduce_shape, batch=reduction, examples=REDUCE_EXAMPLES,
            doc="largest element over axis (∂ = 1 to it, shared evenly among ties)",
            torch="x: x if axis == () else torch.amax(x, dim=_dims(axis), keepdim=keepdims)", onnx=onnx_reduce("ReduceMax"))
register_op("min", _min, "_to_extremes(g, out, x, axis, keepdims)", jvp="_from_extremes(t, out, x, axis, keepdims)",
            shape=_reduce_shape, batch=reduction, examples=REDUCE_EXAMPLES,
            doc="smallest element over axis (∂ = 1 to it, shared evenly among ties)",
            torch="x: x if axis == () else torch.amin(x, dim=_dims(axis), keepdim=keepdims)", onnx=onnx_reduce("ReduceMin"))


def _logsumexp(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """log Σ exp(x) over axis (all by default), stable: the max is taken out before exp."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)  # all −inf (log 0) or some +inf: nothing to take out
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=_axes(axis, np.ndim(x)))


def _softmax_of(out, x, axis, keepdims):
    """∂ logsumexp / ∂x: the softmax of x over axis, exp(x − out) from the output."""
    return np.exp(x - _unreduce(out, x, axis, keepdims))


register_op("logsumexp", _logsumexp, "_unreduce(g, x, axis, keepdims) * _softmax_of(out, x, axis, keepdims)",
            jvp="_weighted_sum(t, _softmax_of(out, x, axis, keepdims), axis, keepdims)",
            shape=_reduce_shape, batch=reduction, examples=REDUCE_EXAMPLES,
            doc="log Σ exp(x) over axis, computed stably (∂/∂x = softmax(x) over axis)",
            torch="x: x if axis == () else torch.logsumexp(x, dim=tuple(range(x.ndim)) if axis is None else axis, "
                  "keepdim=keepdims)",
            onnx=onnx_reduce("ReduceLogSumExp"))


def _prod(x, *, axis: int | list[int] | None = None, keepdims: bool = False):
    """Product of elements over axis (all by default)."""
    return np.prod(x, axis=axis, keepdims=keepdims)


def _others(x, axis):
    """For each element, the product of the others it is multiplied with: running products from both ends of
    the reduced elements, exact where some are 0 (where out/x is not)."""
    x = np.asarray(x)
    axes = _axes(axis, x.ndim)
    last = tuple(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, last)
    kept = moved.shape[:x.ndim - len(axes)]
    rows = moved.reshape(kept + (math.prod(moved.shape[len(kept):]),))
    before, after = np.ones_like(rows), np.ones_like(rows)
    before[..., 1:] = np.cumprod(rows[..., :-1], axis=-1)
    after[..., :-1] = np.cumprod(rows[..., :0:-1], axis=-1)[..., ::-1]
    return np.moveaxis((before * after).reshape(moved.shape), last, axes)


def _torch_prod(x, axis, keepdims):
    """The PyTorch oracle: torch.prod one axis at a time (it takes one), the last first."""
    for a in sorted(_axes(axis, x.ndim), reverse=True):
        x = x.prod(a, keepdim=keepdims)
    return x


register_op("prod", _prod, "_unreduce(g, x, axis, keepdims) * _others(x, axis)",
            jvp="_weighted_sum(t, _others(x, axis), axis, keepdims)", shape=_reduce_shape,
            batch=reduction, doc="product of elements over axis (∂: the product of the others, exact at zeros)",
            examples=REDUCE_EXAMPLES + [ex((3, 4), axis=[0, 1], keepdims=True)],
            torch="x: _torch_prod(x, axis, keepdims)", onnx=onnx_reduce("ReduceProd"))


# -- along an axis ------------------------------------------------------------

def _axis_shape(shape, *, axis):
    if shape is not None:
        _axes(axis, len(shape))
    return shape


def _cumsum(x, *, axis: int):
    """Running sum along axis: torch.cumsum."""
    return np.cumsum(x, axis=axis)


# Each element adds to every later one along the axis, so the gradient is the running sum of g from the end.
register_op("cumsum", _cumsum, "np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)", shape=_axis_shape,
            batch=along_axis, doc="running sum along axis (∂: the running sum of the gradient from the end)",
            torch="x: torch.cumsum(x, dim=axis)",
            examples=[ex((4,), axis=0), ex((2, 3), axis=1), ex((2, 3), axis=0), ex((2, 3, 2), axis=-2)],
            onnx=lambda e, i, o, a: e.node("CumSum", [i[0], e.const(a["axis"], np.int64)], o), jvp=LINEAR)


# -- triangles of matrices ----------------------------------------------------

def _trilu(x, *, upper: bool = True, k: int = 0):
    """x's upper (or lower) triangle on its last two axes, zeros elsewhere, as ONNX Trilu (∂ masks g alike).

    The triangle's edge is the k-th diagonal above the main one (below it for k < 0): torch.triu and tril.
    """
    return np.triu(x, k) if upper else np.tril(x, k)


def _matrices_shape(x, **attrs):
    if x is not None and len(x) < 2:
        raise ShapeError(f"trilu takes a matrix, or a stack of them: its input's shape is {show_shape(x)}")
    return x


def onnx_trilu(e, x: str, out: str, upper: bool, k: int) -> str:
    if e.opset < 14:
        raise ValueError("trilu needs ONNX opset 14 or newer (Trilu)")
    return e.node("Trilu", [x, e.const(k, np.int64)], out, upper=int(upper))


register_op("trilu", _trilu, "_trilu(g, upper=upper, k=k)", shape=_matrices_shape, dtype=SAME,
            batch=lambda shapes, batched, **attrs: Lift(((),), attrs),  # the last two axes: the batch's is first
            torch="x: torch.triu(x, k) if upper else torch.tril(x, k)",
            onnx=lambda e, i, o, a: onnx_trilu(e, i[0], o, a["upper"], a["k"]),
            examples=[ex((3, 3)), ex((2, 4), k=1), ex((4, 2), upper=False), ex((2, 3, 3), upper=False, k=-1),
                      ex((3, 4), k=-2), ex((2, 2), k=5)], jvp=LINEAR)


# -- shape changes ------------------------------------------------------------

def _transpose(x, *, axes: list[int] | None = None):
    """Permute dimensions (reverse them by default)."""
    return np.transpose(x, axes)


def _transpose_shape(shape, *, axes=None):
    if shape is None:
        return None
    if axes is None:
        return tuple(reversed(shape))
    if sorted(axes) != list(range(len(shape))):
        raise ValueError(f"axes {list(axes)} is not a permutation of 0..{len(shape) - 1}")
    return tuple(shape[a] for a in axes)


register_op("transpose", _transpose, "np.transpose(g, None if axes is None else np.argsort(axes))",
            shape=_transpose_shape, batch=permutation, dtype=SAME,
            torch="x: x.permute(*(axes or reversed(range(x.ndim))))",
            examples=[ex((2, 3)), ex((2, 3, 4), axes=[1, 2, 0]), ex((3,))],
            onnx=lambda e, i, o, a: e.node("Transpose", i, o,
                                           **({} if a["axes"] is None else {"perm": list(a["axes"])})), jvp=LINEAR)


def _reshape(x, *, shape: list[int], batch_dims: int = 0):
    """Reshape to `shape` (one dimension may be -1: inferred), after `batch_dims` leading axes kept as they
    are: an imported model's batch and sequence, whose sizes are known only at run time."""
    return np.reshape(x, np.shape(x)[:batch_dims] + tuple(shape))


def _reshape_shape(x, *, shape, batch_dims=0):
    if list(shape).count(-1) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"shape {list(shape)}: only one dimension may be -1, and none below it")
    if batch_dims < 0 or x is not None and batch_dims > len(x):
        raise ValueError(f"batch_dims {batch_dims} must be from 0 to the input's rank "
                         f"({'unknown' if x is None else len(x)})")
    if batch_dims:
        return None if x is None else x[:batch_dims] + _reshape_shape(x[batch_dims:], shape=shape)
    if x is None or None in x:
        return tuple(None if d == -1 else d for d in shape)
    size, known = int(np.prod(x)), int(np.prod([d for d in shape if d != -1]))
    if (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and size != known):
        raise ValueError(f"cannot reshape {list(x)} ({size} elements) to {list(shape)}")
    return tuple(size // known if d == -1 else d for d in shape)


register_op("reshape", _reshape, "np.reshape(g, np.shape(x))", shape=_reshape_shape, batch=reshaping,
            dtype=SAME, torch="x: x.reshape(tuple(x.shape[:batch_dims]) + tuple(shape))",
            examples=[ex((2, 3), shape=[3, 2]), ex((6,), shape=[-1, 2]), ex((1,), shape=[]),
                      ex((2, 3, 4), shape=[12], batch_dims=1), ex((2, 3, 4), shape=[-1, 2], batch_dims=2)],
            onnx=lambda e, i, o, a: e.node("Reshape", [i[0], e.const([0] * a["batch_dims"] + list(a["shape"]),
                                                                     np.int64)], o),  # ONNX's 0: the size as is
            jvp=LINEAR)
