"""Convolution ops, NCHW as in PyTorch and ONNX: x is [C, *spatial] after `batch_dims` sample axes (0: one sample).

Every op here slides a window over the last n (spatial) axes of x. A convolution is one matrix
product of its kernels with x's windows copied into rows (im2col, `_rows`); its gradient in w is a
product with the same rows, and its gradient in x (a transposed convolution) a correlation with the
flipped kernels, or for strides above 1 the product's columns added back where each window read
them (`_regions`: one strided slice of the padded input per kernel offset). The pooling ops
(pooling.py) visit windows with `_regions` too, and export to ONNX with the helpers of the ONNX section.

The numpy rules carry any leading axes through (the products broadcast over them), so they never
read batch_dims: the shape rule, the PyTorch expression and the ONNX mapping do. A batch adds one
more sample axis to x, as in batch_norm and group_norm. A batch of kernels is a kernel with a leading
axis, which lines up with x's batch when x has no sample axes of its own; else the op runs per sample.

ONNX export writes Conv and ConvTranspose where they compute what PyTorch does and
onnxruntime runs them (float32, one kernel for the batch); otherwise the op as an Einsum with
constant 0/1 tensors that place each window (see the ONNX section).
"""
import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import GraphDefError
from .batching import PER_SAMPLE, Lift
from .registry import MULTILINEAR, ShapeError, ex, register_op, show_shape, unbroadcast

Size = int | list[int]  # an attribute given once for every spatial axis, or once per axis


# -- window geometry ----------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """A window sliding over n spatial axes: per axis its size, stride, dilation, and the padding before and after."""
    size: tuple
    stride: tuple
    dilation: tuple
    before: tuple
    after: tuple

    def __post_init__(self):
        for name, values in (("kernel_size", self.size), ("stride", self.stride), ("dilation", self.dilation)):
            if any(v < 1 for v in values):
                raise ValueError(f"{name} must be 1 or more, got {list(values)}")
        if any(p < 0 for p in self.before + self.after):
            raise ValueError(f"padding must be 0 or more, got {list(self.before)}")

    @property
    def span(self) -> tuple:
        """How far each window reaches along each axis: its size, dilated."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.size, self.dilation))

    def padded(self, spatial) -> tuple:
        return tuple(n + b + a for n, b, a in zip(spatial, self.before, self.after))


def _ints(value, n: int, name: str) -> tuple:
    """An int-or-list attribute as n ints, one per spatial axis."""
    values = (value,) * n if isinstance(value, int) else tuple(value)
    if len(values) != n:
        raise ValueError(f"{name} {list(values)} needs one value per spatial axis ({n})")
    return values


@functools.lru_cache(maxsize=256)
def _conv_window(kernel, stride, padding, dilation) -> Window:
    """A convolution's window; padding 'same' splits the padding as PyTorch does (the odd one after)."""
    n = len(kernel)
    stride, dilation = _ints(stride, n, "stride"), _ints(dilation, n, "dilation")
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"padding 'same' needs stride 1 (as in PyTorch), got stride {list(stride)}")
        total = tuple(d * (k - 1) for k, d in zip(kernel, dilation))
        before = tuple(t // 2 for t in total)
        return Window(tuple(kernel), stride, dilation, before, tuple(t - b for t, b in zip(total, before)))
    if padding == "valid":
        padding = 0
    elif isinstance(padding, str):
        raise ValueError(f"padding must be sizes, 'same' or 'valid', got '{padding}'")
    pads = _ints(padding, n, "padding")
    return Window(tuple(kernel), stride, dilation, pads, pads)


def _positions(spatial, win: Window) -> tuple:
    """How many windows fit along each axis (None where the size is unknown)."""
    counts = []
    for axis, (length, k, d, span, s, b, a) in enumerate(zip(spatial, win.size, win.dilation, win.span, win.stride,
                                                             win.before, win.after)):
        if length is not None and span > length + b + a:
            reach = f"{k}" if d == 1 else f"{span} ({k} dilated by {d})"
            raise ShapeError(f"the kernel reaches {reach} along spatial axis {axis}, more than the padded input's "
                             f"{length + b + a} ({length}" + (f" + padding {b} + {a})" if b or a else ")"))
        counts.append(None if length is None else (length + b + a - span) // s + 1)
    return tuple(counts)


def _check_sample(x, n: int, op: str, batch_dims: int) -> None:
    """x is [C, *spatial] after batch_dims sample axes: a batch adds its own, the model declares the others."""
    if batch_dims < 0:
        raise ValueError(f"batch_dims must be 0 or more, got {batch_dims}")
    if len(x) != batch_dims + n + 1:
        layout = "C, L" if n == 1 else "C, H, W"
        raise ShapeError(f"{op} takes x [{layout}] after batch_dims={batch_dims} sample axes, got {show_shape(x)}: "
                         "declare the input per sample (a batch adds its own leading axis), or set batch_dims")


# -- the windows, one kernel offset at a time ----------------------------------------------

def _regions(win: Window, out: tuple):
    """For each kernel offset, in row-major order: the offset, and the strided slices of the padded input that
    it reads, one cell per window position (`out` of them along each spatial axis)."""
    for offset in np.ndindex(*win.size):
        yield offset, tuple(slice(o * d, o * d + s * (m - 1) + 1, s)
                            for o, d, s, m in zip(offset, win.dilation, win.stride, out))


def _interior(win: Window, spatial: tuple) -> tuple:
    """The slices of a padded array that hold the input itself."""
    return tuple(slice(b, b + length) for b, length in zip(win.before, spatial))


# -- convolution as matrix products ---------------------------------------------------------
# im2col is fastest channels last: x is copied once into a padded (*lead, *spatial, C) array, so that
# a window's channels sit side by side, and its windows are copied into rows, one per window position
# (columns: offsets, then channels). The output is made channel-major: kernels (O, columns) times the
# rows' transpose (BLAS reads a transpose without a copy) give (O, rows), which the ops return as a
# (*lead, O, *out) view. The values that follow (bias, batch norm, ReLU, pooling) keep that memory
# order, so their sums per channel run over contiguous memory, and the gradients coming back have it:
# as (O, rows) they are views, and ∂/∂w, ∂/∂x are products with them, without copies.
#
# `fold` leading axes of x (all of them, when one kernel serves them all) become more rows of one
# product; the others (a batch of kernels) stay leading axes of a stacked product. With groups, each
# group is a product of its own, on a leading axis of the stack: (*kept, groups, ...).

def _fold(x_ndim: int, w_ndim: int, n: int) -> int:
    """How many leading axes of x become rows of the products: all, unless the kernels have leading axes too."""
    return x_ndim - n - 1 if w_ndim == n + 2 else 0


def _channels_last(x, win: Window):
    """x (*lead, C, *spatial) as a contiguous (*lead, *padded, C) array, padded with zeros."""
    n = len(win.size)
    moved = np.moveaxis(x, -n - 1, -1)
    if not any(win.before + win.after):
        return np.ascontiguousarray(moved)
    padded = np.zeros(moved.shape[:-n - 1] + win.padded(moved.shape[-n - 1:-1]) + moved.shape[-1:], x.dtype)
    padded[(..., *_interior(win, x.shape[-n:]), slice(None))] = moved
    return padded


def _rows(x, win: Window, groups: int, fold: int):
    """im2col: the windows of x (*lead, C, *spatial) as matrices (*kept, groups, rows, offsets · C/groups), a row
    per window position of the last `fold` leading axes; the copy reads each window's channels side by side."""
    n, lead = len(win.size), x.ndim - len(win.size) - 1
    view = sliding_window_view(_channels_last(x, win), win.span, axis=tuple(range(lead, lead + n)))
    view = view[(..., *(slice(None, None, s) for s in win.stride), slice(None),
                 *(slice(None, None, d) for d in win.dilation))]  # (*lead, *out, C, *size)
    view = view.reshape(view.shape[:lead + n] + (groups, -1) + win.size)
    kept, group, channels = lead - fold, lead + n, lead + n + 1
    view = view.transpose(*range(kept), group, *range(kept, lead + n), *range(channels + 1, view.ndim), channels)
    return view.reshape(view.shape[:kept + 1] + (-1, math.prod(view.shape[-n - 1:])))


def _kernel_rows(w, groups: int, n: int):
    """w (*lead, O, C/groups, *size) as (*lead, groups, O/groups, offsets · C/groups): a kernel per row, its cells
    in the order of _rows' columns."""
    lead = w.ndim - n - 2
    w = np.moveaxis(w, lead + 1, -1)
    return w.reshape(w.shape[:lead] + (groups, -1, math.prod(w.shape[lead + 1:])))


def _channel_major(y, groups: int, fold: int, n: int):
    """y (*lead, O, *out) as (*kept, groups, O/groups, rows): a view when y is channel-major, as the ops make it."""
    lead = y.ndim - n - 1
    y = np.moveaxis(y, lead, lead - fold)
    return y.reshape(y.shape[:lead - fold] + (groups, -1, math.prod(y.shape[lead - fold + 1:])))


def _product(rows, w, x_shape: tuple, win: Window, groups: int, fold: int):
    """kernels · rows: the convolution of x (shape x_shape) whose rows these are, (*lead, O, *out)."""
    n = len(win.size)
    y = _kernel_rows(w, groups, n) @ np.swapaxes(rows, -1, -2)  # (*kept, groups, O/groups, rows)
    kept = y.ndim - 3
    y = y.reshape(y.shape[:kept] + (-1,) + x_shape[len(x_shape) - n - 1 - fold:-n - 1] + _positions(x_shape[-n:], win))
    return np.moveaxis(y, kept, kept + fold)


def _correlate(x, w, win: Window, groups: int):
    """Σ kernel · window at each window position: PyTorch's convolution, (*lead, O, *out)."""
    fold = _fold(x.ndim, w.ndim, len(win.size))
    return _product(_rows(x, win, groups, fold), w, x.shape, win, groups, fold)


def _correlate_adjoint(g, w, spatial: tuple, win: Window, groups: int):
    """The adjoint of _correlate in x: each position's g spread by the kernel over its window, summed where
    windows overlap. Sized (*lead, C, *spatial); the transposed convolution."""
    n = len(win.size)
    reach = tuple(s - 1 for s in win.span)
    if win.stride == (1,) * n and all(p <= r for p, r in zip(win.before + win.after, reach + reach)):
        # with stride 1, a correlation of g with the flipped kernels: one product, no scattering
        back = Window(win.size, win.stride, win.dilation, tuple(r - b for r, b in zip(reach, win.before)),
                      tuple(r - a for r, a in zip(reach, win.after)))
        return _correlate(g, _flipped(w, groups, n), back, groups)
    fold = _fold(g.ndim, w.ndim, n)
    cols = np.swapaxes(_kernel_rows(w, groups, n), -1, -2) @ _channel_major(g, groups, fold, n)
    kept, folded, out = cols.ndim - 3, g.shape[g.ndim - n - 1 - fold:-n - 1], g.shape[-n:]
    cols = cols.reshape(cols.shape[:kept + 1] + win.size + (-1,) + folded + out)  # (*kept, groups, *size, C/g, ...)
    padded = np.zeros(cols.shape[:kept + 1] + cols.shape[kept + n + 1:-n] + win.padded(spatial), cols.dtype)
    for offset, region in _regions(win, out):  # col2im: one strided add per kernel offset
        padded[(..., *region)] += cols[(slice(None),) * (kept + 1) + offset]
    x = padded[(..., *_interior(win, spatial))]
    x = x.reshape(x.shape[:kept] + (-1,) + x.shape[kept + 2:])
    return np.moveaxis(x, kept, kept + fold)


def _flipped(w, groups: int, n: int):
    """The kernels of the adjoint correlation: w (*lead, O, C/groups, *size) as (*lead, C, O/groups, *size), each
    kernel reversed along its spatial axes."""
    lead = w.ndim - n - 2
    w = w.reshape(w.shape[:lead] + (groups, -1) + w.shape[lead + 1:])
    w = np.swapaxes(w, lead + 1, lead + 2)[(..., *(slice(None, None, -1),) * n)]
    return w.reshape(w.shape[:lead] + (-1,) + w.shape[lead + 2:])


def _kernel_gradient(g, rows, w_shape: tuple, win: Window, groups: int, fold: int):
    """The adjoint of _correlate in w: Σ over window positions (and leading axes w lacks) of g times the rows of
    x's windows."""
    n = len(win.size)
    gw = _channel_major(g, groups, fold, n) @ rows  # (*kept, groups, O/groups, offsets · C/groups)
    gw = gw.reshape(gw.shape[:-3] + (-1,) + win.size + w_shape[-n - 1:-n])
    return unbroadcast(np.moveaxis(gw, -1, -n - 1), w_shape)


def _samples_first(shapes, batched, *, batch_dims, **attrs) -> Lift:
    """A batch of x is one more sample axis. A batch of kernels broadcasts against x's leading axes, so it lines
    up with x's batch only when x has no other sample axes (else the op runs per sample, as batch_norm does)."""
    if any(batched[1:]) and batch_dims:
        return PER_SAMPLE
    return Lift(((),) * len(shapes), {**attrs, "batch_dims": batch_dims + batched[0]})


def _on_samples(batch_dims: int, f, x, *args, **kwargs):
    """f, a PyTorch op on a batch [N, C, *spatial], on x with batch_dims sample axes (none, or several) as N.
    A kernel with leading axes of its own (a kernel per sample: what the batching rule gives when the kernels
    are batched) broadcasts them against x's sample axes, as the numpy forward does."""
    extra = args[0].ndim - (x.ndim - batch_dims + 1) if args and hasattr(args[0], "ndim") else 0
    if extra > 0:
        return _per_kernel(batch_dims, extra, f, x, *args, **kwargs)
    y = f(x.reshape(-1, *x.shape[batch_dims:]), *args, **kwargs)
    return y.reshape(*x.shape[:batch_dims], *y.shape[1:])


def _per_kernel(batch_dims: int, extra: int, f, x, w, *args, **kwargs):
    """f with one kernel per sample: the `extra` leading axes of w and x's sample axes broadcast together, and
    torch.vmap runs f on each (x, kernel) pair."""
    import torch
    lead = torch.broadcast_shapes(tuple(x.shape[:batch_dims]), tuple(w.shape[:extra]))
    xs = x.expand(*lead, *x.shape[batch_dims:]).reshape(-1, *x.shape[batch_dims:])
    ws = w.expand(*lead, *w.shape[extra:]).reshape(-1, *w.shape[extra:])
    y = torch.vmap(lambda xi, wi: f(xi.unsqueeze(0), wi, *args, **kwargs).squeeze(0))(xs, ws)
    return y.reshape(*lead, *y.shape[1:])


# -- ONNX ---------------------------------------------------------------------------------
# ONNX's Conv, ConvTranspose and AveragePool take one kernel for the whole batch, and onnxruntime runs them in
# float32 only. Elsewhere (a float64 model, a kernel per sample) an op is exported as the contraction it is: one
# Einsum of x, w and, per spatial axis, a 0/1 tensor saying which input cell each offset of each window reads.

CELLS, OFFSETS, PLACES = "ij", "kl", "uv"  # the Einsum letters of input cells, kernel offsets and windows per axis


def _onnx_native(e) -> bool:
    """Whether onnxruntime runs Conv, ConvTranspose and AveragePool: on float32 only."""
    return e.elem == e.onnx.TensorProto.FLOAT


def _static_shape(e, name: str, rank: int) -> tuple:
    """The last `rank` sizes of a node input's declared shape: those an ONNX node needs but the op's attributes
    do not give (a kernel's, for padding 'same' and the Einsum form)."""
    shape = e.model.graph.vertices[name].shape
    if shape is None or None in shape[-rank:]:
        raise GraphDefError(f"cannot export a convolution or pooling of '{name}' of shape {show_shape(shape)}: "
                            "its channels and spatial sizes must be declared")
    return shape[-rank:]


def _onnx_geometry(win: Window) -> dict:
    """Strides, dilations and pads as ONNX attributes ([top, left, bottom, right] for 2-D)."""
    return {"strides": list(win.stride), "dilations": list(win.dilation), "pads": list(win.before + win.after)}


def _onnx_on_batch(e, x: str, lead: int, node, out: str):
    """node(x, out): an ONNX operator that wants one leading batch axis, made of x's `lead` sample axes (none, or
    several) flattened together, and split again in its result."""
    if lead == 1:
        return node(x, out)
    y = node(e.node("Reshape", [x, e.node("Concat", [e.const([-1], np.int64), _onnx_sizes(e, x, lead)], axis=0)]),
             None)
    return e.node("Reshape", [y, e.node("Concat", [_onnx_sizes(e, x, 0, lead), _onnx_sizes(e, y, 1)], axis=0)], out)


def _onnx_sizes(e, x: str, start: int, stop: int = np.iinfo(np.int64).max) -> str:
    """x's sizes from axis start to stop, at run time."""
    return e.node("Slice", [e.node("Shape", [x]), e.const([start], np.int64), e.const([stop], np.int64)])


def _onnx_reshape(e, x: str, lead: int, sizes, out: str | None = None) -> str:
    """x with its first `lead` axes kept (a 0 copies a size in ONNX's Reshape) and the rest reshaped to `sizes`."""
    return e.node("Reshape", [x, e.const([0] * lead + list(sizes), np.int64)], out)


def _onnx_grouped(e, x: str, w: str, leads: tuple, x_shape: tuple, w_shape: tuple, groups: int) -> list[str]:
    """x [C, *spatial] as [groups, C/groups, *spatial] and w [A, B, *kernel] as [groups, A/groups, B, *kernel], for
    the Einsum; singleton leading axes for the one with fewer (onnxruntime's Einsum wants as many under each
    ellipsis)."""
    sizes = ((groups, x_shape[0] // groups, *x_shape[1:]), (groups, w_shape[0] // groups, *w_shape[1:]))
    return [_onnx_reshape(e, v, k, (1,) * (max(leads) - k) + s) for v, k, s in zip((x, w), leads, sizes)]


def _selections(e, spatial: tuple, win: Window, places: tuple) -> list[str]:
    """Per spatial axis, the constant A[u, k, i] = 1 where offset k of window u reads input cell i (a window's
    offsets in the padding read none): the windows as a tensor that an Einsum contracts with."""
    return [e.const(np.arange(length) == np.arange(m)[:, None, None] * s + np.arange(k)[:, None] * d - b)
            for length, m, k, s, d, b in zip(spatial, places, win.size, win.stride, win.dilation, win.before)]


def _selection_terms(n: int) -> str:
    return ",".join(PLACES[a] + OFFSETS[a] + CELLS[a] for a in range(n))


# -- conv1d, conv2d -----------------------------------------------------------------------

def _conv_shape(n: int, op: str):
    def shape(x, w, *, stride, padding, dilation, groups, batch_dims):
        if x is None or w is None:
            return None
        _check_sample(x, n, op, batch_dims)
        if len(w) != n + 2:
            raise ShapeError(f"{op} takes kernels w [C_out, C_in/groups, {', '.join(['k'] * n)}], got {show_shape(w)}")
        _check_channels(x[-n - 1], w[0], w[1], groups, x, w)
        kernel = w[-n:]
        if None in kernel:
            return x[:-n - 1] + (w[0],) + (None,) * n
        return x[:-n - 1] + (w[0],) + _positions(x[-n:], _conv_window(kernel, stride, padding, dilation))
    return shape


def _check_channels(channels, out_channels, per_group, groups: int, x, w) -> None:
    """The channels of x, in groups, are what each group of kernels w takes."""
    if groups < 1:
        raise ValueError(f"groups must be 1 or more, got {groups}")
    for count, what in ((channels, f"the {channels} channels of x {show_shape(x)}"),
                        (out_channels, f"the {out_channels} kernels of w {show_shape(w)}")):
        if count is not None and count % groups:
            raise ShapeError(f"groups={groups} does not divide {what}")
    if None not in (channels, per_group) and channels != per_group * groups:
        raise ShapeError(f"x {show_shape(x)} has {channels} channels, but w {show_shape(w)} takes {per_group} per "
                         f"group × {groups} group{'s' * (groups > 1)} = {per_group * groups}")


def _convolution(n: int):
    """conv1d or conv2d: forward, saving forward, vjp rules, jvp rules and ONNX mapping; the spatial rank n says
    which axes of x are spatial."""
    def forward(x, w, *, stride: Size = 1, padding: Size | str = 0, dilation: Size = 1, groups: int = 1,
                batch_dims: int = 0):
        return _correlate(x, w, _conv_window(w.shape[-n:], stride, padding, dilation), groups)

    def saving(x, w, *, stride, padding, dilation, groups, batch_dims):
        """The output, and x's windows as rows (im2col), which ∂/∂w multiplies g by: copied once, when training."""
        win, fold = _conv_window(w.shape[-n:], stride, padding, dilation), _fold(x.ndim, w.ndim, n)
        rows = _rows(x, win, groups, fold)
        return _product(rows, w, x.shape, win, groups, fold), rows

    def vjp_x(g, rows, x, w, *, stride, padding, dilation, groups, batch_dims):
        win = _conv_window(w.shape[-n:], stride, padding, dilation)
        return unbroadcast(_correlate_adjoint(g, w, x.shape[-n:], win, groups), x.shape)

    def vjp_w(g, rows, x, w, *, stride, padding, dilation, groups, batch_dims):
        return _kernel_gradient(g, rows, w.shape, _conv_window(w.shape[-n:], stride, padding, dilation), groups,
                                _fold(x.ndim, w.ndim, n))

    def jvp_x(t, rows, x, w, **attrs):
        """x's tangent convolved by the kernels: the convolution is linear in x."""
        return forward(t, w, **attrs)

    def jvp_w(t, rows, x, w, *, stride, padding, dilation, groups, batch_dims):
        """The kernels' tangent times the saved rows of x's windows: the product the forward made, without
        copying the windows again."""
        return _product(rows, t, x.shape, _conv_window(w.shape[-n:], stride, padding, dilation), groups,
                        _fold(x.ndim, w.ndim, n))

    def onnx(e, inputs, out, attrs):
        """Conv, or the Einsum Σ x[g, c, cells] · w[g, o, c, offsets] · A[place, offset, cell] per axis."""
        (x, w), (lead_x, lead_w) = inputs, (e.ranks[0] - n - 1, e.ranks[1] - n - 2)
        w_shape = _static_shape(e, w, n + 2)
        win, groups = _conv_window(w_shape[-n:], attrs["stride"], attrs["padding"], attrs["dilation"]), attrs["groups"]
        if lead_w == 0 and _onnx_native(e):
            return _onnx_on_batch(e, x, lead_x, lambda x, y: e.node("Conv", [x, w], y, group=groups,
                                                                    **_onnx_geometry(win)), out)
        x_shape = _static_shape(e, x, n + 1)
        places = _positions(x_shape[1:], win)
        operands = _onnx_grouped(e, x, w, (lead_x, lead_w), x_shape, w_shape, groups)
        y = e.node("Einsum", [*operands, *_selections(e, x_shape[1:], win, places)],
                   equation=f"...gc{CELLS[:n]},...goc{OFFSETS[:n]},{_selection_terms(n)}->...go{PLACES[:n]}")
        return _onnx_reshape(e, y, max(lead_x, lead_w), (w_shape[0], *places), out)
    return forward, saving, (vjp_x, vjp_w), (jvp_x, jvp_w), onnx


_CONV_DOC = ("{n}-D convolution of x [C, {dims}] (after batch_dims sample axes) with kernels "
             "w [O, C/groups, {kernel}], as F.conv{n}d (∂/∂x: the transposed convolution of g; ∂/∂w: g against "
             "x's windows)")

for _n, _examples in ((1, [ex((2, 7), (3, 2, 3)), ex((4, 9), (2, 2, 2), stride=2, padding=1, dilation=2, groups=2),
                           ex((2, 6), (2, 2, 4), padding="same"), ex((2, 5), (1, 2, 2), padding=[2], stride=[3]),
                           ex((3, 5), (3, 1, 3), padding="valid", groups=3),
                           ex((2, 2, 6), (3, 2, 2), stride=2, batch_dims=1),
                           ex((2, 1, 2, 5), (2, 1, 3), padding=1, groups=2, batch_dims=2)]),
                      (2, [ex((2, 5, 5), (3, 2, 3, 3)),
                           ex((2, 5, 6), (4, 1, 2, 3), stride=[2, 1], padding=[1, 0], groups=2),
                           ex((1, 5, 6), (2, 1, 2, 2), padding="same", dilation=[2, 1]),
                           ex((3, 4, 6), (2, 3, 2, 2), padding="valid", dilation=[1, 2], stride=2),
                           ex((2, 4, 4), (3, 2, 3, 3), padding=1),
                           ex((2, 2, 4, 5), (4, 1, 2, 3), padding=[1, 0], groups=2, batch_dims=1)])):
    _forward, _saving, _rules, _jvps, _onnx = _convolution(_n)
    register_op(f"conv{_n}d", _forward, _rules, jvp=_jvps, save=_saving, shape=_conv_shape(_n, f"conv{_n}d"),
                batch=_samples_first, examples=_examples, onnx=_onnx,
                torch=f"x, w: _on_samples(batch_dims, F.conv{_n}d, x, w, stride=stride, padding=padding, "
                      "dilation=dilation, groups=groups)",
                doc=_CONV_DOC.format(n=_n, dims="L" if _n == 1 else "H, W", kernel="k" if _n == 1 else "kh, kw"))


# -- conv_transpose2d -----------------------------------------------------------------------

def _transposed_size(spatial, win: Window, output_padding: tuple) -> tuple:
    """The size a transposed convolution makes: the input its convolution would shrink to `spatial`."""
    return tuple(None if length is None else (length - 1) * s - b - a + span + extra
                 for length, s, b, a, span, extra in zip(spatial, win.stride, win.before, win.after, win.span,
                                                         output_padding))


def _transposed_window(w_shape, stride, padding, output_padding, dilation) -> tuple[Window, tuple]:
    win = _conv_window(w_shape[-2:], stride, padding, dilation)
    extra = _ints(output_padding, 2, "output_padding")
    if any(not 0 <= e < s for e, s in zip(extra, win.stride)):
        raise ValueError(f"output_padding {list(extra)} must be 0 or more and less than the stride {list(win.stride)}")
    return win, extra


def _conv_transpose2d(x, w, *, stride: Size = 1, padding: Size = 0, output_padding: Size = 0, groups: int = 1,
                      dilation: Size = 1, batch_dims: int = 0):
    """The adjoint of conv2d in its input: each cell of x spreads its value by the kernel over a window."""
    win, extra = _transposed_window(w.shape, stride, padding, output_padding, dilation)
    return _correlate_adjoint(x, w, _transposed_size(x.shape[-2:], win, extra), win, groups)


def _conv_transpose2d_vjp_x(g, out, x, w, *, stride, padding, output_padding, groups, dilation, batch_dims):
    win, _ = _transposed_window(w.shape, stride, padding, output_padding, dilation)
    return unbroadcast(_correlate(g, w, win, groups), x.shape)


def _conv_transpose2d_vjp_w(g, out, x, w, *, stride, padding, output_padding, groups, dilation, batch_dims):
    win, _ = _transposed_window(w.shape, stride, padding, output_padding, dilation)
    fold = _fold(g.ndim, w.ndim, 2)
    return _kernel_gradient(x, _rows(g, win, groups, fold), w.shape, win, groups, fold)


def _conv_transpose2d_shape(x, w, *, stride, padding, output_padding, groups, dilation, batch_dims):
    if x is None or w is None:
        return None
    _check_sample(x, 2, "conv_transpose2d", batch_dims)
    if len(w) != 4:
        raise ShapeError(f"conv_transpose2d takes kernels w [C_in, C_out/groups, kh, kw], got {show_shape(w)}")
    if None not in (x[-3], w[0]) and x[-3] != w[0]:
        raise ShapeError(f"x {show_shape(x)} has {x[-3]} channels, but w {show_shape(w)} has kernels for {w[0]}")
    _check_channels(x[-3], None, None, groups, x, w)
    out_channels = None if w[1] is None else w[1] * groups
    if None in w[-2:]:
        return x[:-3] + (out_channels, None, None)
    win, extra = _transposed_window(w, stride, padding, output_padding, dilation)
    size = _transposed_size(x[-2:], win, extra)
    if any(s is not None and s < 1 for s in size):
        raise ShapeError(f"conv_transpose2d of x {show_shape(x)} would be {show_shape(size)}: less padding is needed")
    return x[:-3] + (out_channels,) + size


def _onnx_conv_transpose2d(e, inputs, out, attrs):
    """ConvTranspose, or the Einsum Σ x[g, c, places] · w[g, c, o, offsets] · A[place, offset, cell] per axis."""
    (x, w), (lead_x, lead_w) = inputs, (e.ranks[0] - 3, e.ranks[1] - 4)
    w_shape = _static_shape(e, w, 4)
    win, extra = _transposed_window(w_shape, attrs["stride"], attrs["padding"], attrs["output_padding"],
                                    attrs["dilation"])
    groups = attrs["groups"]
    if lead_w == 0 and _onnx_native(e):
        return _onnx_on_batch(e, x, lead_x, lambda x, y: e.node("ConvTranspose", [x, w], y, group=groups,
                                                                output_padding=list(extra), **_onnx_geometry(win)), out)
    x_shape = _static_shape(e, x, 3)
    spatial = _transposed_size(x_shape[1:], win, extra)
    operands = _onnx_grouped(e, x, w, (lead_x, lead_w), x_shape, w_shape, groups)
    y = e.node("Einsum", [*operands, *_selections(e, spatial, win, x_shape[1:])],
               equation=f"...gc{PLACES},...gco{OFFSETS},{_selection_terms(2)}->...go{CELLS}")
    return _onnx_reshape(e, y, max(lead_x, lead_w), (w_shape[1] * groups, *spatial), out)


register_op("conv_transpose2d", _conv_transpose2d, (_conv_transpose2d_vjp_x, _conv_transpose2d_vjp_w),
            shape=_conv_transpose2d_shape, batch=_samples_first,
            examples=[ex((2, 3, 3), (2, 3, 2, 2)),
                      ex((4, 2, 3), (4, 1, 3, 2), stride=[2, 1], padding=[1, 0], output_padding=[1, 0], groups=2,
                         dilation=[1, 2]),
                      ex((2, 3, 2), (2, 2, 3, 3), stride=2, padding=1, output_padding=1, dilation=2),
                      ex((2, 2, 3), (2, 2, 2, 2), stride=[1, 2], padding=[0, 1], output_padding=[0, 1]),
                      ex((2, 2, 3, 2), (2, 1, 2, 2), stride=2, padding=[1, 0], output_padding=1, groups=2,
                         batch_dims=1)],
            onnx=_onnx_conv_transpose2d,
            doc="Transposed 2-D convolution of x [C, H, W] (after batch_dims sample axes) by w [C, O/groups, kh, kw], "
                "as F.conv_transpose2d (∂/∂x: g convolved by w; ∂/∂w: x against g's windows)",
            torch="x, w: _on_samples(batch_dims, F.conv_transpose2d, x, w, stride=stride, padding=padding, "
                  "output_padding=output_padding, groups=groups, dilation=dilation)", jvp=MULTILINEAR)
