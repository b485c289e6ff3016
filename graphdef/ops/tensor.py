"""Tensor ops: matrix product, reductions and reshaping."""
import numpy as np

from .batching import matrix_product, permutation, reduction, reshaping
from .registry import SAME, broadcast_shape, ex, register_op, unbroadcast


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


def _matmul_vjp_x(g, x, y):
    if x.ndim == 2 and y.ndim == 2:
        return g @ y.T
    g2, x2, y2 = _promoted(g, x, y)
    return unbroadcast(g2 @ np.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)


def _matmul_vjp_y(g, x, y):
    if x.ndim == 2 and y.ndim == 2:
        return x.T @ g
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
register_op("matmul", "x, y: x @ y", ("_matmul_vjp_x(g, x, y)", "_matmul_vjp_y(g, x, y)"),
            shape=_matmul_shape, batch=matrix_product, onnx=lambda e, i, o, a: e.node("MatMul", i, o),
            torch="x, y: torch.matmul(x, y)",
            doc="matrix product x @ y (numpy matmul: 1-D promotion, batched leading dims)",
            examples=[ex((2, 3), (3, 4)), ex((3,), (3, 2)), ex((2, 3), (3,)), ex((4,), (4,)),
                      ex((2, 2, 3), (3, 2)), ex((2, 3), (2, 3, 4))])


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


def _dims(axis):
    """An axis attribute as torch's `dim`: every axis when None."""
    return () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)


register_op("sum", _sum, "_unreduce(g, x, axis, keepdims)", shape=_reduce_shape, batch=reduction,
            torch="x: x.sum() if axis is None and not keepdims else x.sum(dim=_dims(axis), keepdim=keepdims)",
            examples=REDUCE_EXAMPLES, onnx=lambda e, i, o, a: e.reduce("ReduceSum", i[0], a["axis"], a["keepdims"], o))
register_op("mean", _mean, "_unreduce(g, x, axis, keepdims) * (np.size(out) / np.size(x))", shape=_reduce_shape,
            torch="x: x.mean() if axis is None and not keepdims else x.mean(dim=_dims(axis), keepdim=keepdims)",
            batch=reduction, examples=REDUCE_EXAMPLES,
            onnx=lambda e, i, o, a: e.reduce("ReduceMean", i[0], a["axis"], a["keepdims"], o))


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
            shape=_transpose_shape, batch=permutation, dtype=SAME, torch="x: x.permute(*(axes or reversed(range(x.ndim))))",
            examples=[ex((2, 3)), ex((2, 3, 4), axes=[1, 2, 0]), ex((3,))],
            onnx=lambda e, i, o, a: e.node("Transpose", i, o, **({} if a["axes"] is None else {"perm": list(a["axes"])})))


def _reshape(x, *, shape: list[int]):
    """Reshape to `shape` (one dimension may be -1: inferred)."""
    return np.reshape(x, shape)


def _reshape_shape(x, *, shape):
    if list(shape).count(-1) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"shape {list(shape)}: only one dimension may be -1, and none below it")
    if x is None or None in x:
        return tuple(None if d == -1 else d for d in shape)
    size, known = int(np.prod(x)), int(np.prod([d for d in shape if d != -1]))
    if (-1 in shape and (known == 0 or size % known)) or (-1 not in shape and size != known):
        raise ValueError(f"cannot reshape {list(x)} ({size} elements) to {list(shape)}")
    return tuple(size // known if d == -1 else d for d in shape)


register_op("reshape", _reshape, "np.reshape(g, np.shape(x))", shape=_reshape_shape, batch=reshaping,
            dtype=SAME, torch="x: x.reshape(shape)",
            examples=[ex((2, 3), shape=[3, 2]), ex((6,), shape=[-1, 2]), ex((1,), shape=[])],
            onnx=lambda e, i, o, a: e.node("Reshape", [i[0], e.const(list(a["shape"]), np.int64)], o))
