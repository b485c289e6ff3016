"""Pooling ops, NCHW as in PyTorch and ONNX: max_pool2d, avg_pool2d, global_avg_pool; x is [C, *spatial] after
`batch_dims` sample axes (0: one sample).

max_pool2d and avg_pool2d visit the windows one kernel offset at a time (conv.py's `_regions`): the cells
that offset reads in every window are one strided slice of the padded input, so a pooling is a few
whole-array operations, one per offset, and so is its gradient, added back slice by slice. As in conv.py,
leading axes are carried through every rule, and a batch adds one more sample axis. ONNX export writes MaxPool,
and AveragePool where onnxruntime runs it and it counts the padding as PyTorch does; otherwise avg_pool2d
is conv.py's Einsum of x with the windows' 0/1 selections.
"""
import functools

import numpy as np

from .conv import (CELLS, PLACES, Size, Window, _check_sample, _interior, _ints, _onnx_native, _onnx_on_batch,
                   _positions, _regions, _samples_first, _selection_terms, _selections, _static_shape)
from .conv import _on_samples  # noqa: F401 - read by the PyTorch expressions
from .registry import LINEAR, ShapeError, ex, positive, register_op, show_shape


@functools.lru_cache(maxsize=256)
def _pool_window(spatial, kernel_size, stride, padding, dilation, ceil_mode) -> Window:
    """A pooling's window: the stride defaults to the kernel size; ceil_mode pads after each axis as far as
    the last window reaches (PyTorch's rule: a window starting in the padding after the input is dropped)."""
    n = len(spatial)
    size = _ints(kernel_size, n, "kernel_size")
    positive(kernel_size=min(size))
    stride = size if stride is None else _ints(stride, n, "stride")
    pads, dilation = _ints(padding, n, "padding"), _ints(dilation, n, "dilation")
    if any(2 * p > k for p, k in zip(pads, size)):
        raise ValueError(f"padding {list(pads)} is more than half the kernel size {list(size)} (PyTorch's limit)")
    win = Window(size, stride, dilation, pads, pads)
    if not ceil_mode:
        return win
    after = tuple(p if length is None else max(p, (_ceil_count(length, span, s, p) - 1) * s + span - length - p)
                  for length, span, s, p in zip(spatial, win.span, stride, pads))
    return Window(size, stride, dilation, pads, after)


def _ceil_count(length: int, span: int, stride: int, pad: int) -> int:
    """How many windows ceil_mode fits: rounding up, but none starting past the input and its padding before."""
    count = -(-(length + 2 * pad - span) // stride) + 1
    return count - 1 if (count - 1) * stride >= length + pad else count


def _pool_shape(op: str):
    def shape(x, *, kernel_size, stride, padding, dilation, ceil_mode, batch_dims, **_):
        if x is None:
            return None
        _check_sample(x, 2, op, batch_dims)
        return x[:-2] + _positions(x[-2:], _pool_window(x[-2:], kernel_size, stride, padding, dilation, ceil_mode))
    return shape


def _onnx_pool_window(e, x: str, attrs: dict) -> Window:
    """A pooling's window for ONNX, ceil_mode written as the padding after it amounts to (which needs the sizes of
    x): ONNX's ceil_mode keeps the windows PyTorch drops (those starting in the padding after the input), and
    ONNX's shape inference then disagrees with onnxruntime's kernels."""
    spatial = _static_shape(e, x, 2) if attrs["ceil_mode"] else (None, None)
    return _pool_window(spatial, attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs["dilation"],
                        attrs["ceil_mode"])


def _onnx_pool(e, op_type: str, x: str, out: str, win: Window, **extra):
    """MaxPool or AveragePool."""
    return _onnx_on_batch(e, x, e.ranks[0] - 3, lambda x, y: e.node(
        op_type, [x], y, kernel_shape=list(win.size), strides=list(win.stride), pads=list(win.before + win.after),
        **extra), out)


def _padded(x, win: Window, fill: float):
    """x with the window's padding around its spatial axes, holding `fill`, in x's memory order (x itself when
    there is none)."""
    if not any(win.before + win.after):
        return x
    padded = np.full_like(x, fill, shape=x.shape[:-2] + win.padded(x.shape[-2:]))
    padded[(..., *_interior(win, x.shape[-2:]))] = x
    return padded


def _offsets(padded, win: Window, out: tuple):
    """What each kernel offset reads in every window of a padded array: one strided view per offset."""
    return [padded[(..., *region)] for _, region in _regions(win, out)]


def _max_pool2d(x, *, kernel_size: Size, stride: Size | None = None, padding: Size = 0, dilation: Size = 1,
                ceil_mode: bool = False, batch_dims: int = 0):
    """The largest value in each window of x [C, H, W], as F.max_pool2d (∂/∂x: g goes to the first largest).

    x may hold batch_dims sample axes before C."""
    return _max_pool2d_saving(x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                              ceil_mode=ceil_mode, batch_dims=batch_dims)[0]


def _max_pool2d_saving(x, *, kernel_size, stride, padding, dilation, ceil_mode, batch_dims):
    """The maxima, and what the gradient compares them with: x padded with −inf (x itself without padding)."""
    win = _pool_window(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    padded = _padded(x, win, -np.inf)
    first, *others = _offsets(padded, win, _positions(x.shape[-2:], win))
    y = first.copy(order="K")
    for cells in others:
        np.maximum(y, cells, out=y)
    return y, (y, padded)


def _first_maxima(saved, win: Window):
    """For each kernel offset in order, the windows whose first largest cell it reads (booleans shaped like the
    output): the cell both rules differentiate through, as F.max_pool2d."""
    y, padded = saved
    unclaimed = np.ones(y.shape, bool)
    for cells in _offsets(padded, win, y.shape[-2:]):
        first = unclaimed & (cells == y)
        unclaimed ^= first
        yield first


def _max_pool2d_vjp(g, saved, x, *, kernel_size, stride, padding, dilation, ceil_mode, batch_dims):
    """g to the first largest cell of each window."""
    win = _pool_window(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    grad = np.zeros_like(saved[1], dtype=g.dtype)
    for first, into in zip(_first_maxima(saved, win), _offsets(grad, win, g.shape[-2:])):
        into += np.where(first, g, 0)
    return grad[(..., *_interior(win, x.shape[-2:]))]


def _max_pool2d_jvp(t, saved, x, *, kernel_size, stride, padding, dilation, ceil_mode, batch_dims):
    """The tangent at the first largest cell of each window."""
    win = _pool_window(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    y = saved[0]
    tangent = np.zeros_like(y, dtype=np.result_type(t))
    for first, cells in zip(_first_maxima(saved, win), _offsets(_padded(t, win, 0.0), win, y.shape[-2:])):
        np.copyto(tangent, cells, where=first)
    return tangent


def _onnx_max_pool2d(e, inputs, out, attrs):
    win = _onnx_pool_window(e, inputs[0], attrs)
    return _onnx_pool(e, "MaxPool", inputs[0], out, win, dilations=list(win.dilation))


register_op("max_pool2d", _max_pool2d, _max_pool2d_vjp, jvp=_max_pool2d_jvp, save=_max_pool2d_saving,
            shape=_pool_shape("max_pool2d"), batch=_samples_first,
            examples=[ex((2, 4, 4), kernel_size=2), ex((2, 5, 5), kernel_size=[3, 2], stride=[2, 1], padding=1),
                      ex((1, 5, 5), kernel_size=2, stride=2, ceil_mode=True),
                      ex((2, 6, 5), kernel_size=2, stride=1, padding=1, dilation=[2, 1]),
                      ex((1, 4, 4), kernel_size=3, stride=2, padding=1, ceil_mode=True),
                      ex((2, 2, 5, 4), kernel_size=[3, 2], stride=2, padding=1, ceil_mode=True, batch_dims=1)],
            onnx=_onnx_max_pool2d,
            torch="x: _on_samples(batch_dims, F.max_pool2d, x, kernel_size, stride, padding, dilation, "
                  "ceil_mode=ceil_mode)")


def _window_sums(padded, win: Window, out: tuple):
    """Σ over each window of a padded array: one add per kernel offset."""
    first, *others = _offsets(padded, win, out)
    total = first.copy(order="K")
    for cells in others:
        total += cells
    return total


@functools.lru_cache(maxsize=64)
def _divisors(spatial: tuple, win: Window, count_include_pad: bool, dtype=np.float64):
    """How many cells each window averages, as PyTorch counts them: the input's, the padding's when asked,
    never the cells ceil_mode adds past the padding."""
    counted = np.zeros(win.padded(spatial), dtype)
    counted[tuple(slice(0 if count_include_pad else b, b + n + (b if count_include_pad else 0))
                  for b, n in zip(win.before, spatial))] = 1
    divisors = _window_sums(counted, win, _positions(spatial, win))
    divisors.flags.writeable = False
    return divisors


def _avg_pool2d(x, *, kernel_size: Size, stride: Size | None = None, padding: Size = 0, ceil_mode: bool = False,
                count_include_pad: bool = True, dilation: Size = 1, batch_dims: int = 0):
    """The mean of each window of x [C, H, W], as F.avg_pool2d (∂/∂x: g shared equally over the window).

    x may hold batch_dims sample axes before C. A dilated window (ONNX's AveragePool has them, PyTorch's not)
    averages the cells it reads."""
    win = _pool_window(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    total = _window_sums(_padded(x, win, 0.0), win, _positions(x.shape[-2:], win))
    total /= _divisors(x.shape[-2:], win, count_include_pad, x.dtype)
    return total


def _avg_pool2d_vjp(g, out, x, *, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation, batch_dims):
    """g ÷ each window's count, added back to every cell the window read."""
    win = _pool_window(x.shape[-2:], kernel_size, stride, padding, dilation, ceil_mode)
    share = g / _divisors(x.shape[-2:], win, count_include_pad, g.dtype)
    grad = np.zeros_like(x, dtype=share.dtype, shape=x.shape[:-2] + win.padded(x.shape[-2:]))
    for into in _offsets(grad, win, g.shape[-2:]):
        into += share
    return grad[(..., *_interior(win, x.shape[-2:]))]


def _onnx_avg_pool2d(e, inputs, out, attrs):
    """AveragePool, or the Einsum Σ x[cells] · A[place, offset, cell] per axis · 1/divisor[places]. AveragePool
    counts either all the padding or none (PyTorch may count the padding but never ceil_mode's overhang), and
    dilates its windows from opset 19 on."""
    (x,) = inputs
    win = _onnx_pool_window(e, x, attrs)
    counts_padding = attrs["count_include_pad"] and any(win.before)
    dilations = {"dilations": list(win.dilation)} if e.opset >= 19 else {}
    if _onnx_native(e) and not (counts_padding and win.after != win.before) and (dilations or max(win.dilation) == 1):
        return _onnx_pool(e, "AveragePool", x, out, win, count_include_pad=int(counts_padding), **dilations)
    spatial = _static_shape(e, x, 2)
    places = _positions(spatial, win)
    return e.node("Einsum", [x, *_selections(e, spatial, win, places),
                             e.const(1 / _divisors(spatial, win, attrs["count_include_pad"]))], out,
                  equation=f"...{CELLS},{_selection_terms(2)},{PLACES}->...{PLACES}")


def _torch_avg_pool2d(x, F, kernel_size, stride, padding, ceil_mode, count_include_pad, dilation):
    """F.avg_pool2d, which has no dilation; else _torch_window_mean."""
    if _ints(dilation, 2, "dilation") == (1, 1):
        return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)
    win = _pool_window(tuple(x.shape[-2:]), kernel_size, stride, padding, dilation, ceil_mode)
    return _torch_window_mean(x, F, win, count_include_pad)


def _torch_window_mean(x, F, win: Window, count_include_pad: bool):
    """The mean of each window of x [N, C, H, W] in PyTorch: its sum over the cells it counts, both depthwise
    convolutions by ones, of x and of a mask of the counted cells (ceil_mode's overhang never counts)."""
    stated = [p for p in reversed(win.before) for _ in "ba"]  # F.pad's order: last axis first
    overhang = [w for b, a in zip(reversed(win.before), reversed(win.after)) for w in (0, a - b)]
    ones = x.new_ones(x.shape[-3], 1, *win.size)

    def sums(v):
        return F.conv2d(F.pad(v, overhang), ones, stride=win.stride, dilation=win.dilation, groups=x.shape[-3])
    return sums(F.pad(x, stated)) / sums(F.pad(x.new_ones(x.shape), stated, value=float(count_include_pad)))


register_op("avg_pool2d", _avg_pool2d, _avg_pool2d_vjp, shape=_pool_shape("avg_pool2d"), batch=_samples_first,
            examples=[ex((2, 4, 4), kernel_size=2), ex((2, 5, 5), kernel_size=3, stride=2, padding=1),
                      ex((1, 5, 5), kernel_size=2, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                      ex((1, 5, 4), kernel_size=[3, 2], stride=[2, 1], padding=[1, 0], ceil_mode=True),
                      ex((1, 4, 3), kernel_size=[2, 3], padding=[1, 1], count_include_pad=False),
                      ex((2, 2, 5, 4), kernel_size=3, stride=[2, 1], padding=1, count_include_pad=False,
                         batch_dims=1),
                      ex((2, 6, 5), kernel_size=2, padding=1, dilation=[2, 1], count_include_pad=False),
                      ex((1, 7, 6), kernel_size=[3, 2], stride=2, padding=1, dilation=[1, 3], ceil_mode=True,
                         count_include_pad=False)],
            onnx=_onnx_avg_pool2d,
            torch="x: _on_samples(batch_dims, _torch_avg_pool2d, x, F, kernel_size, stride, padding, ceil_mode, "
                  "count_include_pad, dilation)", jvp=LINEAR)


def _spatial_axes(rank: int, batch_dims: int) -> tuple:
    return tuple(range(batch_dims + 1, rank))


def _global_avg_pool(x, *, batch_dims: int = 0):
    """The mean over the spatial axes of x [C, *spatial], kept as size 1 (∂/∂x: g shared equally)."""
    return np.mean(x, axis=_spatial_axes(x.ndim, batch_dims), keepdims=True)


def _global_avg_pool_shape(x, *, batch_dims):
    if x is None:
        return None
    if batch_dims < 0 or len(x) < batch_dims + 2:
        raise ShapeError(f"global_avg_pool takes x [C, *spatial] after batch_dims={batch_dims} leading axes, "
                         f"got {show_shape(x)}")
    return x[:batch_dims + 1] + (1,) * (len(x) - batch_dims - 1)


register_op("global_avg_pool", _global_avg_pool, "np.broadcast_to(g * (np.size(out) / np.size(x)), np.shape(x))",
            shape=_global_avg_pool_shape,
            batch=_samples_first,
            examples=[ex((2, 3, 4)), ex((3, 5)), ex((2, 2, 3, 3), batch_dims=1)],
            onnx=lambda e, i, o, a: e.reduce("ReduceMean", i[0], _spatial_axes(e.ranks[0], a["batch_dims"]), True, o),
            torch="x: x.mean(dim=_spatial_axes(x.ndim, batch_dims), keepdim=True)",
            doc="The mean of each channel of x [C, *spatial], its spatial axes kept as size 1, as ONNX's "
                "GlobalAveragePool; batch_dims leading axes are kept too (∂/∂x: g shared equally)", jvp=LINEAR)
