"""Indexing ops: reading parts of an array (slice, select, split, gather), choosing between two (where),
padding one (pad).

Like the shape ops, they move values without computing on them, so they take any dtype (floats,
int64, bool) and give it back unchanged; each gradient puts g back where its values came from
(placed in zeros, scatter-added, summed onto what the padding copies). Axes are a sample's, with
PyTorch's and ONNX's semantics; the batching rules here move them past the batch axis.
"""
import numpy as np

from .batching import PER_SAMPLE, Lift, along_axis, elementwise, ranks, shift
from .registry import (CONDITION, LINEAR, MULTILINEAR, REAL, SAME, Integers, ShapeError, condition_first, ex,
                       indexed_by, register_op, show_shape)
from .shape import _at, _axis, _int64
from .tensor import _axes


def _placed(g, x, index):
    """g at x[index], zeros elsewhere: the gradient of any x[index] that reads each element at most once."""
    grad = np.zeros_like(x)
    grad[index] = g
    return grad


# -- split: one output per part ----------------------------------------------------------

def _part(size: int, sections, output: int) -> slice:
    """Where part `output` lies on an axis of `size`: one of `sections` equal parts (an int), or of the listed sizes."""
    if isinstance(sections, int):
        step = size // sections
        return slice(output * step, (output + 1) * step)
    start = sum(sections[:output])
    return slice(start, start + sections[output])


def _split(x, *, sections: int | list[int], axis: int = 0, output: int):
    """x cut along axis into parts (outputs NODE, NODE/1, ...); ∂ puts g back in zeros.

    The loader makes one vertex per part, each computing part `output`. sections: an int is the number of
    equal parts, which must divide the axis (np.split; not torch.split's chunk size, as the number of outputs
    must follow from the attributes); a list gives the parts' sizes (torch.split).
    """
    return x[_at(x.ndim, axis, _part(x.shape[axis], sections, output))]


def _split_count(*, sections, **attrs) -> int:
    """How many parts, hence outputs."""
    return sections if isinstance(sections, int) else len(sections)


def _split_shape(x, *, sections, axis=0, output=0):
    parts = isinstance(sections, int)
    if parts and sections < 1 or not parts and (not sections or min(sections) < 0):
        raise ValueError(f"sections must be a number of parts (1 or more) or a list of sizes (0 or more), got "
                         f"{sections if parts else list(sections)}")
    if x is None:
        return None
    a = _axis(axis, len(x))
    size = x[a]
    if parts:
        if size is not None and size % sections:
            raise ShapeError(f"split cannot cut axis {axis} (size {size}) into {sections} equal parts: list the "
                             "parts' sizes instead (sections: [...])")
        part = None if size is None else size // sections
    else:
        if size is not None and sum(sections) != size:
            raise ShapeError(f"split's sections {list(sections)} add up to {sum(sections)}, but axis {axis} has "
                             f"size {size}")
        part = sections[output]
    return x[:a] + (part,) + x[a + 1:]


def _onnx_split(e, inputs, out, attrs):
    """ONNX Split makes every part: the chosen one is a Slice instead, its bounds computed from the axis's size at
    run time for equal parts."""
    (x,), axis, sections, k = inputs, attrs["axis"], attrs["sections"], attrs["output"]
    if isinstance(sections, int):
        size = e.node("Div", [e.node("Gather", [e.node("Shape", [x]), _int64(e, [axis])]), _int64(e, [sections])])
        start, end = (e.node("Mul", [size, _int64(e, [i])]) for i in (k, k + 1))
    else:
        start, end = _int64(e, [sum(sections[:k])]), _int64(e, [sum(sections[:k + 1])])
    return e.node("Slice", [x, start, end, _int64(e, [axis])], out)


register_op("split", _split, "_placed(g, x, _at(x.ndim, axis, _part(x.shape[axis], sections, output)))",
            outputs=_split_count, shape=_split_shape, batch=along_axis, dtype=SAME, onnx=_onnx_split,
            torch="x: (torch.chunk(x, sections, dim=axis) if isinstance(sections, int) "
                  "else torch.split(x, list(sections), dim=axis))[output]",
            examples=[ex((4,), sections=2), ex((2, 5), sections=[2, 0, 3], axis=1),
                      ex((3, 2), sections=[1, 2], axis=-2), ex((2, 6), sections=3, axis=-1)], jvp=LINEAR)


# -- slice, select -----------------------------------------------------------------------

def _bounds(size: int, start: int, end: int, step: int) -> slice:
    """One axis of an ONNX Slice as a Python slice. ONNX counts negative bounds from the end and clamps them,
    as Python does, except a negative-step start below the first element: ONNX clamps it to 0, Python to 'none'."""
    start, end = (i + size if i < 0 else i for i in (start, end))
    if step > 0:
        return slice(min(max(start, 0), size), min(max(end, 0), size), step)
    end = min(max(end, -1), size - 1)
    return slice(min(max(start, 0), size - 1), None if end < 0 else end, step)


def _per_axis(starts, ends, axes, steps):
    """(axis, start, end, step) for each sliced axis, with ONNX's defaults (axes 0, 1...; steps 1)."""
    axes = range(len(starts)) if axes is None else axes
    return zip(axes, starts, ends, (1,) * len(starts) if steps is None else steps)


def _slicing(shape, starts, ends, axes, steps) -> tuple:
    """The numpy index of an ONNX Slice on an array of `shape`."""
    index = [slice(None)] * len(shape)
    for a, start, end, step in _per_axis(starts, ends, axes, steps):
        index[a] = _bounds(shape[a], start, end, step)
    return tuple(index)


def _slice(x, *, starts: list[int], ends: list[int], axes: list[int] | None = None, steps: list[int] | None = None):
    """x[start:end:step] on each of axes, as ONNX Slice; ∂ puts g back in zeros.

    Negative bounds count from the end, bounds out of range are clamped, steps may be negative; axes
    default to 0, 1..., steps to 1.
    """
    return x[_slicing(x.shape, starts, ends, axes, steps)]


def _slice_shape(x, *, starts, ends, axes=None, steps=None):
    n = len(starts)
    if len(ends) != n or axes is not None and len(axes) != n or steps is not None and len(steps) != n:
        raise ValueError(f"slice needs one start, end, axis and step per sliced axis: starts {list(starts)}, "
                         f"ends {list(ends)}, axes {axes and list(axes)}, steps {steps and list(steps)}")
    if steps is not None and 0 in steps:
        raise ValueError(f"slice steps cannot be 0, got {list(steps)}")
    if x is None:
        return None
    axes = range(n) if axes is None else axes
    _axes(tuple(axes), len(x))  # in range, none repeated
    shape = list(x)
    for a, start, end, step in _per_axis(starts, ends, axes, steps):
        if x[a] is not None:
            shape[a] = len(range(x[a])[_bounds(x[a], start, end, step)])
    return tuple(shape)


def _slice_batch(shapes, batched, *, axes, starts, **attrs) -> Lift:
    """slice: the axes, named even when defaulted, move past the batch axis."""
    axes = range(len(starts)) if axes is None else axes
    return Lift(((),), {**attrs, "starts": starts, "axes": shift(axes, ranks(shapes)[0])})


def _torch_slice(x, starts, ends, axes, steps):
    """The PyTorch oracle: an index_select per axis (torch slicing takes no negative steps)."""
    for a, start, end, step in _per_axis(starts, ends, axes, steps):
        kept = range(x.shape[a])[_bounds(x.shape[a], start, end, step)]
        x = x.index_select(a, x.new_tensor(list(kept)).long())
    return x


def _onnx_slice(e, inputs, out, attrs):
    starts, ends, axes, steps = (attrs[k] for k in ("starts", "ends", "axes", "steps"))
    extra = [] if axes is None and steps is None else [_int64(e, list(axes or range(len(starts))))]
    extra += [] if steps is None else [_int64(e, list(steps))]
    return e.node("Slice", [inputs[0], _int64(e, list(starts)), _int64(e, list(ends)), *extra], out)


register_op("slice", _slice, "_placed(g, x, _slicing(x.shape, starts, ends, axes, steps))",
            shape=_slice_shape, batch=_slice_batch, dtype=SAME, onnx=_onnx_slice,
            torch="x: _torch_slice(x, starts, ends, axes, steps)",
            examples=[ex((5,), starts=[1], ends=[4]),
                      ex((3, 4), starts=[-2, 10], ends=[100, 0], axes=[0, 1], steps=[1, -2]),
                      ex((4, 3), starts=[-10], ends=[-20], axes=[-2], steps=[-1]),
                      ex((2, 3, 4), starts=[0, 1], ends=[4, 3], axes=[2, 0], steps=[3, 1])], jvp=LINEAR)


def _select(x, *, axis: int, index: int, size: int | None = None):
    """x at `index` (negative: from the end) on axis, which is dropped (torch.select); ∂ puts g back in zeros.

    `size`, if given, is the size the axis must have, checked when the model loads: a repeat's steps
    read the items of its `over` sequences this way, and must read every one of them.
    """
    return x[_at(x.ndim, axis, index)]


def _select_shape(x, *, axis, index, size=None):
    if x is None:
        return None
    a = _axis(axis, len(x))
    if size is not None and x[a] is not None and x[a] != size:
        raise ShapeError(f"a sequence of {x[a]} items (axis {axis}) is read in {size} steps: a repeat over it "
                         f"must run as many steps as it has items (times: {x[a]})")
    if x[a] is not None and not -x[a] <= index < x[a]:
        raise ShapeError(f"index {index} is out of range for axis {axis} of size {x[a]}")
    return x[:a] + x[a + 1:]


register_op("select", _select, "_placed(g, x, _at(x.ndim, axis, index))",
            shape=_select_shape, batch=along_axis, dtype=SAME, torch="x: x.select(axis, index)",
            onnx=lambda e, i, o, a: e.node("Gather", [i[0], _int64(e, a["index"])], o, axis=a["axis"]),
            examples=[ex((3,), axis=0, index=1), ex((2, 3), axis=1, index=-1), ex((2, 3, 2), axis=-3, index=0),
                      ex((4, 2), axis=0, index=3, size=4)], jvp=LINEAR)


# -- pad ---------------------------------------------------------------------------------

PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "edge": "edge"}  # numpy's, ONNX's


def _padded_axes(rank: int, pads) -> list:
    """(axis, before, after) per padded axis: F.pad's pads name the last axis first."""
    return [(rank - 1 - i, pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)]


def _sources(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each position of a padded axis, the position of the input it copies (none in 0..size-1: the constant)."""
    at = np.arange(-before, size + after)
    if mode == "reflect":
        at = np.abs(at)
        return np.where(at >= size, 2 * (size - 1) - at, at)
    return at if mode == "constant" else np.clip(at, 0, size - 1)


def _pad(x, *, pads: list[int], mode: str = "constant", value: float = 0.0):
    """x padded on its last axes by a value, its reflection or its edge (F.pad); ∂ sums g back onto what is copied.

    pads: [before, after] of the last axis, then of the one before... (F.pad's order); mode constant (with
    value), reflect or replicate (alias edge, ONNX's name); negative pads crop, in constant mode.
    """
    crop, widths = [slice(None)] * x.ndim, [(0, 0)] * x.ndim
    for axis, before, after in _padded_axes(x.ndim, pads):
        crop[axis] = slice(max(-before, 0), x.shape[axis] - max(-after, 0))
        widths[axis] = (max(before, 0), max(after, 0))
    fill = {"constant_values": value} if mode == "constant" else {}
    return np.pad(x[tuple(crop)], widths, PAD_MODES[mode], **fill)


def _pad_vjp(g, x, pads, mode):
    """Per padded axis, g added onto the input position each position copies (the constant's copy nothing)."""
    for axis, before, after in _padded_axes(x.ndim, pads):
        size, rows = x.shape[axis], np.moveaxis(g, axis, 0)
        sources = _sources(size, before, after, mode)
        copies = (sources >= 0) & (sources < size)
        grad = np.zeros((size, *rows.shape[1:]), g.dtype)
        np.add.at(grad, sources[copies], rows[copies])
        g = np.moveaxis(grad, 0, axis)
    return g


def _pad_shape(x, *, pads, mode="constant", value=0.0):
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {', '.join(PAD_MODES)}, got '{mode}'")
    if len(pads) % 2:
        raise ValueError(f"pads holds [before, after] pairs, last axis first: {list(pads)} has an odd length")
    if mode != "constant" and min(pads, default=0) < 0:
        raise ValueError(f"negative pads crop, in constant mode only: pads {list(pads)} with mode '{mode}'")
    if x is None:
        return None
    if len(pads) // 2 > len(x):
        raise ShapeError(f"pads {list(pads)} pad {len(pads) // 2} axes, but the input {show_shape(x)} has {len(x)}")
    shape = list(x)
    for axis, before, after in _padded_axes(len(x), pads):
        size = x[axis]
        if size is None:
            continue
        if size + min(before, 0) + min(after, 0) < 0:
            raise ShapeError(f"pads {list(pads)} crop more than axis {axis} holds ({size})")
        if mode == "reflect" and max(before, after) >= size or mode != "constant" and size == 0 and before + after:
            raise ShapeError(f"{mode} padding by {max(before, after)} needs a longer axis {axis} (it has {size})")
        shape[axis] = size + before + after
    return tuple(shape)


def _onnx_pad(e, inputs, out, attrs):
    """ONNX Pad lists every axis's begins, then every axis's ends."""
    rank = e.ranks[0]
    begins, ends = [0] * rank, [0] * rank
    for axis, before, after in _padded_axes(rank, attrs["pads"]):
        begins[axis], ends[axis] = before, after
    value = [e.const(attrs["value"])] if attrs["mode"] == "constant" else []
    return e.node("Pad", [inputs[0], _int64(e, begins + ends), *value], out, mode=PAD_MODES[attrs["mode"]])


register_op("pad", _pad, "_pad_vjp(g, x, pads, mode)", shape=_pad_shape, dtype=SAME, onnx=_onnx_pad,
            batch=lambda shapes, batched, **attrs: Lift(((),), attrs),  # pads name the last axes: the batch's is first
            torch="x: F.pad(x, pads, mode='replicate' if mode == 'edge' else mode, "
                  "**({'value': value} if mode == 'constant' else {}))",
            examples=[ex((3,), pads=[2, 1], value=1.5), ex((2, 3), pads=[0, 1, -1, 2]),
                      ex((2, 4), pads=[1, 3], mode="reflect"), ex((2, 3, 3), pads=[1, 0, 2, 1], mode="replicate"),
                      ex((2, 3), pads=[2, 1], mode="edge")], jvp="_pad(t, pads=pads, mode=mode)")


# -- gather, where -----------------------------------------------------------------------

def _gather(x, indices, *, axis: int = 0):
    """x's entries at indices along axis (np.take; an embedding lookup at axis 0); ∂x scatter-adds g back.

    The indices' shape replaces the axis: torch.index_select for indices of any shape. As in ONNX,
    an index may count from the end (-1 is the last entry); one outside the axis is an error.
    """
    size = np.shape(x)[axis]
    if np.size(indices) and not -size <= np.min(indices) <= np.max(indices) < size:
        bad = np.min(indices) if np.min(indices) < -size else np.max(indices)
        raise IndexError(f"index {bad} is outside axis {axis} of size {size} (for an embedding: a token id "
                         f"beyond its vocabulary); indices must lie in 0..{size - 1}")
    return x[_at(x.ndim, axis, indices)]


def _scattered(g, x, indices, axis):
    """gather's gradient: g added into zeros at the entries read, an entry read twice getting both."""
    grad = np.zeros_like(x)
    np.add.at(grad, _at(x.ndim, axis, indices), g)
    return grad


def _gather_shape(x, indices, *, axis=0):
    if x is None or indices is None:
        return None
    a = _axis(axis, len(x))
    return x[:a] + tuple(indices) + x[a + 1:]


def _gather_batch(shapes, batched, *, axis) -> Lift:
    """gather: a batch of x, or a batch of indices into a shared x at its first axis, is np.take itself (the axis
    shifted for x). Other batches need the batch axis moved: they run per sample."""
    x_rank = ranks(shapes)[0]
    if batched == (True, False):
        return Lift(((), ()), {"axis": shift(axis, x_rank)})
    if batched == (False, True) and axis % x_rank == 0:
        return Lift(((), ()), {"axis": axis})
    return PER_SAMPLE


def _torch_gather(x, indices, axis):
    """The PyTorch oracle: index_select with the indices flattened (negative ones counted from the end, as numpy
    and ONNX count them), then their shape restored."""
    axis %= x.ndim
    indices = indices + (indices < 0) * x.shape[axis]
    return x.index_select(axis, indices.reshape(-1)).reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1:])


register_op("gather", _gather, ("_scattered(g, x, indices, axis)", None), shape=_gather_shape, batch=_gather_batch,
            dtype=indexed_by(1), domain=[REAL, Integers(0, 3)], torch="x, indices: _torch_gather(x, indices, axis)",
            onnx=lambda e, i, o, a: e.node("Gather", i, o, axis=a["axis"]),
            examples=[ex((4, 2), (3,)), ex((3,), (2, 2)), ex((2, 3), (2, 2), axis=1), ex((3, 4), (), axis=-1),
                      ex((2, 3, 2), (4,), axis=1)], jvp=MULTILINEAR)


register_op("where", "condition, x, y: np.where(condition, x, y)",
            (None, "np.where(condition, g, 0)", "np.where(condition, 0, g)"), batch=elementwise, dtype=condition_first,
            domain=[CONDITION], onnx=lambda e, i, o, a: e.node("Where", i, o),
            torch="condition, x, y: torch.where(condition, x, y)",
            doc="x where condition holds, else y, broadcasting (∂/∂x = condition, ∂/∂y = not condition)",
            examples=[ex((3,), (3,), (3,)), ex((2, 3), (3,), ()), ex((2, 1), (1, 3), (2, 3)), ex((), (2,), (2,))])
