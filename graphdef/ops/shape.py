"""Shape ops: joining arrays (concat, stack), reshaping them (squeeze, unsqueeze, expand, flatten), tiling
them, and cast_like, which changes only their dtype.

They move values without computing on them, so they take any dtype (floats, int64, bool) and
give it back unchanged; each gradient puts g back where its values came from (cut at a seam,
reshaped, summed over copies). Axes are a sample's, with PyTorch's and ONNX's semantics; the
batching rules here move them past the batch axis. The ops that read parts of an array are in
indexing.py, which uses the helpers below too.
"""
import math

import numpy as np

from .batching import PER_SAMPLE, Lift, ranks, shift
from .registry import LINEAR, SAME, ShapeError, broadcast_shape, ex, register_op, show_shape
from .registry import unbroadcast  # noqa: F401  (read by the gradient rules written as expressions)
from .tensor import _axes


def _axis(axis: int, rank: int) -> int:
    """One axis attribute, checked against the rank and made non-negative."""
    (a,) = _axes(axis, rank)
    return a


def _at(rank: int, axis: int, item) -> tuple:
    """The numpy index applying `item` (an int, a slice, an index array) to one axis of a rank-`rank` array."""
    return (slice(None),) * (axis % rank) + (item,)


def _axes_list(axis) -> list:
    """An axis attribute (int or list) as a list."""
    return [axis] if isinstance(axis, int) else list(axis)


def _int64(e, values) -> str:
    """An int64 ONNX constant (shapes, axes, indices)."""
    return e.const(values, np.int64)


# -- concat, stack: two inputs joined ----------------------------------------------------
# Two inputs, as ops have a fixed arity: more are joined by chaining.

def _joined_shape(x, y, what: str, skip=None) -> list:
    """The common per-sample shape of x and y, their sizes on axis `skip` excepted (a None size takes the other's)."""
    if len(x) != len(y):
        raise ShapeError(f"{what} needs inputs of one rank, got {show_shape(x)} and {show_shape(y)}")
    for i, (a, b) in enumerate(zip(x, y)):
        if i != skip and None not in (a, b) and a != b:
            but = "" if skip is None else f" but {skip}"
            raise ShapeError(f"{what} needs equal sizes on every axis{but}: {show_shape(x)} and {show_shape(y)} "
                             f"differ on axis {i}")
    return [b if a is None else a for a, b in zip(x, y)]


def _join_batch(shapes, batched, *, axis) -> Lift:
    """concat, stack: the axis moves past the batch axis; a shared input gets a size-1 batch axis, which the
    forward broadcasts."""
    return Lift(tuple(() if b else (0,) for b in batched), {"axis": shift(axis, ranks(shapes)[0])})


def _broadcast_except(axis: int, *arrays) -> list:
    """The arrays broadcast together on every axis but `axis`: a shared input's size-1 batch axis meets the batch."""
    axis %= arrays[0].ndim
    common = np.broadcast_shapes(*(a.shape[:axis] + (1,) + a.shape[axis + 1:] for a in arrays))
    return [np.broadcast_to(a, common[:axis] + a.shape[axis:axis + 1] + common[axis + 1:]) for a in arrays]


def _onnx_broadcast_except(e, inputs: list, axis: int, rank: int) -> list:
    """_broadcast_except as ONNX nodes: each input Expanded to the inputs' largest sizes, 1 (its own) on `axis`."""
    others = np.ones(rank, np.int64)
    others[axis % rank] = 0
    largest = e.node("Max", [e.node("Shape", [x]) for x in inputs])
    sizes = e.node("Add", [e.node("Mul", [largest, _int64(e, others)]), _int64(e, 1 - others)])
    return [e.node("Expand", [x, sizes]) for x in inputs]


def _concat(x, y, *, axis: int = 0):
    """x and y joined along axis (torch.cat; chain it to join more); ∂ cuts g back at the seam."""
    return np.concatenate(_broadcast_except(axis, x, y), axis)


def _concat_shape(x, y, *, axis=0):
    if x is None or y is None:
        return None
    if not x:
        raise ShapeError("concat joins along an axis, and scalars have none: use stack")
    a = _axis(axis, len(x))
    shape = _joined_shape(x, y, "concat", skip=a)
    shape[a] = None if None in (x[a], y[a]) else x[a] + y[a]
    return tuple(shape)


def _onnx_concat(e, inputs, out, attrs):
    return e.node("Concat", _onnx_broadcast_except(e, inputs, attrs["axis"], e.ranks[0]), out, axis=attrs["axis"])


register_op("concat", _concat, ("unbroadcast(g[_at(g.ndim, axis, slice(0, x.shape[axis]))], x.shape)",
                                "unbroadcast(g[_at(g.ndim, axis, slice(x.shape[axis], None))], y.shape)"),
            shape=_concat_shape, batch=_join_batch, dtype=SAME, onnx=_onnx_concat,
            torch="x, y: torch.cat([x, y], dim=axis)",
            examples=[ex((2,), (3,)), ex((2, 3), (2, 1), axis=1), ex((2, 2), (1, 2), axis=-2),
                      ex((1, 2, 2), (1, 2, 1), axis=-1)], jvp=LINEAR)


def _stack(x, y, *, axis: int = 0):
    """x and y stacked along a new axis (torch.stack); ∂ gives each its slice of g."""
    return np.stack(np.broadcast_arrays(x, y), axis)


def _stack_shape(x, y, *, axis=0):
    if x is None or y is None:
        return None
    shape = _joined_shape(x, y, "stack")
    shape.insert(_axis(axis, len(shape) + 1), 2)
    return tuple(shape)


def _onnx_stack(e, inputs, out, attrs):
    axis, rank = attrs["axis"], e.ranks[0] + 1
    columns = [e.unsqueeze(x, (axis,)) for x in inputs]
    return e.node("Concat", _onnx_broadcast_except(e, columns, axis, rank), out, axis=axis)


register_op("stack", _stack, ("unbroadcast(np.take(g, 0, axis), np.shape(x))",
                              "unbroadcast(np.take(g, 1, axis), np.shape(y))"),
            shape=_stack_shape, batch=_join_batch, dtype=SAME, onnx=_onnx_stack,
            torch="x, y: torch.stack([x, y], dim=axis)",
            examples=[ex((2,), (2,)), ex((2, 3), (2, 3), axis=1), ex((2, 2), (2, 2), axis=-1),
                      ex((3,), (3,), axis=-2)], jvp=LINEAR)


# -- squeeze, unsqueeze, expand, flatten: the same values in another shape -----------------

RESHAPED = "np.reshape(g, np.shape(x))"  # the gradient of any op that only changes the shape


def _squeeze(x, *, axis: int | list[int] | None = None):
    """x without the size-1 axes named (every one by default); ∂ reshapes g back.

    Unlike torch.squeeze, naming an axis of another size is an error (as in ONNX and numpy).
    """
    return np.squeeze(x, axis)


def _squeeze_shape(x, *, axis=None):
    if x is None or axis is None and None in x:
        return None  # which axes go depends on sizes not known yet
    dropped = _axes(axis, len(x)) if axis is not None else [i for i, d in enumerate(x) if d == 1]
    wrong = [a for a in dropped if x[a] not in (1, None)]
    if wrong:
        raise ShapeError(f"squeeze removes size-1 axes only: axis {wrong[0]} of {show_shape(x)} has size {x[wrong[0]]}")
    return tuple(d for i, d in enumerate(x) if i not in dropped)


def _squeeze_batch(shapes, batched, *, axis) -> Lift:
    """squeeze: the sample's size-1 axes named from its static shape, so that a batch of one keeps its axis."""
    (shape,) = shapes
    if axis is None:
        if shape is None or None in shape:
            raise ShapeError("squeeze without axis on a batch needs the sample's sizes: name the axes (axis: [...])")
        axis = tuple(i for i, d in enumerate(shape) if d == 1)
    return Lift(((),), {"axis": shift(axis, len(shape))})


def _onnx_squeeze(e, inputs, out, attrs):
    axis = attrs["axis"]
    if axis is None:
        return e.node("Squeeze", inputs, out)
    axes = _axes_list(axis)
    return e.node("Squeeze", [inputs[0], _int64(e, axes)], out) if axes else e.node("Identity", inputs, out)


register_op("squeeze", _squeeze, RESHAPED, shape=_squeeze_shape, batch=_squeeze_batch, dtype=SAME,
            onnx=_onnx_squeeze, torch="x: x.squeeze() if axis is None else x.squeeze(axis)",
            examples=[ex((1, 3, 1)), ex((2, 1), axis=1), ex((1, 2, 1), axis=[0, -1]), ex((1,))], jvp=LINEAR)


def _unsqueeze(x, *, axis: int | list[int]):
    """x with size-1 axes inserted at axis, positions in the result (ONNX Unsqueeze); ∂ reshapes g back."""
    return np.expand_dims(x, axis)


def _unsqueeze_shape(x, *, axis):
    if x is None:
        return None
    added = _axes(axis, len(x) + (1 if isinstance(axis, int) else len(axis)))
    shape = list(x)
    for a in added:
        shape.insert(a, 1)
    return tuple(shape)


def _torch_unsqueeze(x, axis):
    """The PyTorch oracle: torch.unsqueeze per axis, in increasing order of position in the result."""
    axes = (axis,) if isinstance(axis, int) else axis
    for a in sorted(a % (x.ndim + len(axes)) for a in axes):
        x = x.unsqueeze(a)
    return x


register_op("unsqueeze", _unsqueeze, RESHAPED, shape=_unsqueeze_shape, dtype=SAME,
            batch=lambda shapes, batched, *, axis: Lift(((),), {"axis": shift(axis, ranks(shapes)[0])}),
            onnx=lambda e, i, o, a: e.node("Unsqueeze", [i[0], _int64(e, _axes_list(a["axis"]))], o),
            torch="x: _torch_unsqueeze(x, axis)",
            examples=[ex((3,), axis=0), ex((2, 3), axis=-1), ex((2,), axis=[0, 2]), ex((2, 2), axis=[-1, 1])],
            jvp=LINEAR)


def _expand(x, *, shape: list[int]):
    """x broadcast to shape (torch expand: -1 keeps a size, new axes go first); ∂ sums g over the copies.

    The result is a read-only view of x, not a copy.
    """
    lead = len(shape) - x.ndim
    return np.broadcast_to(x, tuple(x.shape[i - lead] if d == -1 else d for i, d in enumerate(shape)))


def _expand_shape(x, *, shape):
    if x is None:
        return tuple(None if d == -1 else d for d in shape)
    lead = len(shape) - len(x)
    if lead < 0:
        raise ShapeError(f"expand cannot remove axes: shape {list(shape)} has fewer than the input's {show_shape(x)}")
    out = []
    for i, d in enumerate(shape):
        have = x[i - lead] if i >= lead else None
        if d < -1 or d == -1 and i < lead:
            raise ValueError(f"expand's shape {list(shape)}: sizes are 0 or more, or -1 to keep an axis of the input")
        if i >= lead and d != -1 and have not in (1, None, d):
            raise ShapeError(f"expand cannot stretch axis {i - lead} of {show_shape(x)} (size {have}) to {d}: "
                             "only size-1 axes expand")
        out.append(have if d == -1 else d)
    return tuple(out)


def _expand_batch(shapes, batched, *, shape) -> Lift:
    """expand: the sample's axes lined up under the new shape (size-1 axes after the batch axis), the batch kept."""
    (rank,) = ranks(shapes)
    return Lift((tuple(range(1, 1 + len(shape) - rank)),), {"shape": (-1, *shape)})


register_op("expand", _expand, "unbroadcast(g, np.shape(x))", shape=_expand_shape, batch=_expand_batch, dtype=SAME,
            # ONNX Expand broadcasts both ways: a 1 keeps the input's size, as -1 does here
            onnx=lambda e, i, o, a: e.node("Expand", [i[0], _int64(e, [1 if d == -1 else d for d in a["shape"]])], o),
            torch="x: x.expand(*shape)",
            examples=[ex((3,), shape=[2, 3]), ex((2, 1), shape=[-1, 3]), ex((1, 2), shape=[2, 2, -1]),
                      ex((1,), shape=[3])], jvp=LINEAR)


def _flattened(shape: tuple, start_axis: int, end_axis: int) -> tuple:
    """flatten's result shape (an unknown size makes the merged one unknown)."""
    if not shape:
        return (1,)
    start, end = _axis(start_axis, len(shape)), _axis(end_axis, len(shape))
    if start > end:
        raise ValueError(f"flatten's start_axis ({start_axis}) comes after its end_axis ({end_axis})")
    merged = shape[start:end + 1]
    return shape[:start] + (None if None in merged else math.prod(merged),) + shape[end + 1:]


def _flatten(x, *, start_axis: int = 0, end_axis: int = -1):
    """Axes start_axis..end_axis merged into one (torch.flatten: [C, H, W] gives [C·H·W]); ∂ reshapes g back.

    A scalar becomes [1].
    """
    return np.reshape(x, _flattened(np.shape(x), start_axis, end_axis))


def _flatten_batch(shapes, batched, *, start_axis, end_axis) -> Lift:
    """flatten: the axes move past the batch axis; a scalar sample gets the axis it becomes."""
    (rank,) = ranks(shapes)
    return Lift(((1,) if rank == 0 else (),),
                {"start_axis": shift(start_axis, rank), "end_axis": shift(end_axis, rank)})


def _onnx_flatten(e, inputs, out, attrs):
    """A Reshape: ONNX Flatten always makes a matrix. The axes before the merged ones are copied (0), those
    after it read from the input's shape."""
    rank = e.ranks[0]
    if rank == 0:
        return e.node("Reshape", [inputs[0], _int64(e, [1])], out)
    start, end = _axis(attrs["start_axis"], rank), _axis(attrs["end_axis"], rank)
    sizes = _int64(e, [0] * start + [-1])
    if end < rank - 1:
        after = e.node("Slice", [e.node("Shape", inputs), _int64(e, [end + 1]), _int64(e, [rank])])
        sizes = e.node("Concat", [sizes, after], axis=0)
    return e.node("Reshape", [inputs[0], sizes], out)


register_op("flatten", _flatten, RESHAPED, dtype=SAME, batch=_flatten_batch, onnx=_onnx_flatten,
            shape=lambda x, *, start_axis=0, end_axis=-1: None if x is None else _flattened(x, start_axis, end_axis),
            torch="x: torch.flatten(x, start_axis, end_axis)",
            examples=[ex((2, 3, 2)), ex((2, 3, 2), start_axis=1), ex((2, 2, 2, 2), start_axis=1, end_axis=2),
                      ex((3, 2), end_axis=0), ex((2, 3, 2), start_axis=-2, end_axis=-1)], jvp=LINEAR)


# -- tile: copies side by side ---------------------------------------------------------------

def _tile(x, *, repeats: list[int]):
    """x repeated repeats[i] times along each axis i, as ONNX Tile (∂ sums g's tiles).

    np.tile, with exactly one count per axis.
    """
    return np.tile(x, repeats)


def _untile(g, x, repeats):
    """tile's gradient: each axis of g split into (copies, the input's size), the copies summed."""
    shape = np.shape(x)
    tiles = np.reshape(g, [d for pair in zip(repeats, shape) for d in pair])
    return tiles.sum(axis=tuple(range(0, 2 * len(shape), 2)))


def _tile_shape(x, *, repeats):
    if min(repeats, default=0) < 0:
        raise ValueError(f"tile's repeats are counts, 0 or more: got {list(repeats)}")
    if x is None:
        return None
    if len(repeats) != len(x):
        raise ShapeError(f"tile needs one count per axis: repeats {list(repeats)} for an input of shape "
                         f"{show_shape(x)}")
    return tuple(None if d is None else d * r for d, r in zip(x, repeats))


register_op("tile", _tile, "_untile(g, x, repeats)", shape=_tile_shape, dtype=SAME,
            batch=lambda shapes, batched, *, repeats: Lift(((),), {"repeats": (1, *repeats)}),  # one copy per sample
            onnx=lambda e, i, o, a: e.node("Tile", [i[0], _int64(e, list(a["repeats"]))], o),
            torch="x: torch.tile(x, tuple(repeats))",
            examples=[ex((3,), repeats=[2]), ex((2, 3), repeats=[2, 1]), ex((1, 2), repeats=[3, 2]),
                      ex((2, 1, 2), repeats=[1, 3, 2]), ex((), repeats=[])], jvp=LINEAR)


# -- cast_like: the same values in another dtype ----------------------------------------------

def _cast_like(x, like):
    """x in like's dtype (only its dtype is read): integers or booleans made floats, floats rounded toward 0
    to integers (ONNX CastLike); ∂x is g in x's dtype, ∂like 0."""
    return np.asarray(x).astype(np.result_type(like))


def _cast_like_batch(shapes, batched) -> Lift:
    """A batch of x keeps its axis; a batch of `like` only would make one copy of x per sample."""
    return PER_SAMPLE if batched[1] else Lift(((), ()))


def _onnx_cast_like(e, inputs, out, attrs):
    if e.opset < 15:
        raise ValueError("cast_like needs ONNX opset 15 or newer (CastLike)")
    return e.node("CastLike", inputs, out)


register_op("cast_like", _cast_like, ("np.asarray(g).astype(np.result_type(x))", "np.zeros(np.shape(like))"),
            shape=lambda x, like: broadcast_shape(x), batch=_cast_like_batch, dtype=lambda x, like: like,
            onnx=_onnx_cast_like, torch="x, like: x.to(like.dtype)", examples=[ex((3,), (2,)), ex((2, 3), ())],
            jvp=("t.astype(out.dtype)", "np.zeros_like(out)"))
