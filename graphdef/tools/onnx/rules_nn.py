"""Import rules of ONNX's convolution, pooling, normalization and loss ops.

Sliding windows (Conv, ConvTranspose, MaxPool, AveragePool, LRN) keep ONNX's geometry in `Axis` and become
one graphdef window op each, with batch_dims=1: an ONNX tensor holds its batch as axis 0, whose size stays
free. The op pads (a transposed convolution: crops) the same before and after each axis itself; what ONNX
does beyond that (asymmetric padding, SAME_*, ceil_mode's overhang) is a graphdef `pad` before the op (after
it, for a transposed convolution). 1-D windows are 2-D ones of height 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .importer import known, rule
from .proto import Malformed, Unsupported
from .rules_shape import axes_in_range, cast_to, reshaped

LOWEST = float(np.finfo(np.float32).min)  # max pooling's padding: below any value a model holds, finite in float32
SAME = ("SAME_UPPER", "SAME_LOWER")


@dataclass(frozen=True)
class Axis:
    """One spatial axis of sliding windows, as ONNX places them: the input's length, the kernel's size,
    stride and dilation, the padding stated before and after it, and how many windows fit."""
    length: int
    size: int
    stride: int = 1
    dilation: int = 1
    before: int = 0
    after: int = 0
    count: int = 1

    @property
    def span(self) -> int:
        return self.dilation * (self.size - 1) + 1

    @property
    def past(self) -> int:
        """How far the last window reaches past the input (negative: it stops short of the input's end)."""
        return (self.count - 1) * self.stride + self.span - self.length - self.before

    def counted(self, include_pad: bool) -> np.ndarray:
        """How many cells each window averages: the input's, and the stated padding's with include_pad;
        never those past it, which ceil_mode reads."""
        low, high = (-self.before, self.length + self.after) if include_pad else (0, self.length)
        taps = np.arange(self.count)[:, None] * self.stride - self.before + np.arange(self.size) * self.dilation
        return ((taps >= low) & (taps < high)).sum(axis=1)


UNIT = Axis(1, 1)  # the height of a 1-D input


def _windows(spatial, kernel, auto_pad, pads, strides, dilations, ceil_mode=0) -> list[Axis]:
    """The windows along each spatial axis, from ONNX's attributes (Conv's, MaxPool's, AveragePool's)."""
    n = len(spatial)
    strides, dilations, pads = strides or [1] * n, dilations or [1] * n, pads or [0] * 2 * n
    _check_lengths(n, kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads)
    if min(*kernel, *strides, *dilations) < 1 or min(pads) < 0:
        raise Malformed(f"kernel {list(kernel)}, strides {list(strides)} and dilations {list(dilations)} must be "
                        f"1 or more and pads {list(pads)} 0 or more")
    axes = []
    for i, (length, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
        span = d * (k - 1) + 1
        if auto_pad in SAME:
            count = -(-length // s)
            total = max((count - 1) * s + span - length, 0)
            before = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            after = total - before
        elif auto_pad == "VALID":
            before, after, count = 0, 0, (length - span) // s + 1
        elif auto_pad == "NOTSET":
            before, after = pads[i], pads[i + n]
            room = length + before + after - span
            count = (-(-room // s) if ceil_mode else room // s) + 1
            if ceil_mode and (count - 1) * s >= length + before:  # no window starts past the input
                count -= 1
        else:
            raise Malformed(f"auto_pad {auto_pad!r} is none of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        if count < 1:
            raise Malformed(f"its window spans {span} along spatial axis {i}, more than the padded input's "
                            f"{length + before + after}")
        axes.append(Axis(length, k, s, d, before, after, count))
    return axes


def _check_lengths(n: int, **values) -> None:
    for name, value in values.items():
        if len(value) != (2 * n if name == "pads" else n):
            raise Malformed(f"{name} {list(value)} does not have {'two values' if name == 'pads' else 'one'} "
                            f"per spatial axis ({n})")


def _image(x, op_type: str) -> tuple:
    """x's sizes [N, C, *spatial] for a window op: channels and 1 or 2 spatial sizes known now (the batch may not)."""
    if x.shape is None or not all(isinstance(d, int) for d in x.shape[1:]):
        raise Unsupported(f"{op_type} of an input whose channels or spatial sizes are known only at run time")
    if x.rank > 4:
        raise Unsupported(f"{op_type} over {x.rank - 2} spatial axes (graphdef slides windows over 1 or 2)")
    if x.rank < 3:
        raise Malformed(f"its input has shape {list(x.shape)}; {op_type} takes [N, C, *spatial sizes]")
    return x.shape


def _kernel(w, kernel_shape, rank: int) -> list:
    """The kernel's spatial sizes, from the weights' shape; kernel_shape, when given, must agree."""
    if w.shape is None or not all(isinstance(d, int) for d in w.shape):
        raise Unsupported("weights whose sizes are known only at run time")
    if len(w.shape) != rank:
        raise Malformed(f"its weights have shape {list(w.shape)}, not rank {rank} as its input")
    sizes = list(w.shape[2:])
    if kernel_shape is not None and list(kernel_shape) != sizes:
        raise Malformed(f"kernel_shape {list(kernel_shape)} differs from the weights' spatial sizes {sizes}")
    return sizes


def _static_sizes(sizes, what: str) -> list:
    if not all(isinstance(d, int) for d in sizes):
        raise Unsupported(f"{what} known only at run time")
    return list(sizes)


def _padded(imp, x, pads: list, fill: float = 0.0):
    """graphdef's pad (F.pad's order: last axis first; a negative width crops), left out when it does nothing."""
    return imp.op("pad", x, pads=pads, value=fill) if any(pads) else x


def _tall(imp, v):
    """A 1-D input [N, C, L] (or kernels [O, I, k]) as 2-D of height 1."""
    return imp.op("unsqueeze", v, axis=[2])


def _split_padding(a: Axis, most: int) -> tuple[int, int, int]:
    """(the padding a graphdef window op applies itself, at most `most`; what a pad adds before it, and after): the
    op pads the same on both sides and floors its count of windows, so its padding may reach up to a stride − 1
    cells past the last window."""
    own = max(0, min(a.before, a.past + a.stride - 1, most))
    return own, a.before - own, max(a.past - own, 0)


def _slide(imp, x, axes: list, fill: float, run, pooling: bool = False):
    """run(x′, kernel_size, stride, dilation, padding), a graphdef window op with batch_dims=1, on x [N, C, *spatial]
    padded ONNX's way with `fill`: by the op as far as it can (a pooling op at most half its kernel, PyTorch's
    limit), the rest by a pad."""
    flat = len(axes) == 1
    x, (h, w) = (_tall(imp, x), [UNIT, *axes]) if flat else (x, axes)
    (own_h, *pad_h), (own_w, *pad_w) = (_split_padding(a, a.size // 2 if pooling else a.before) for a in (h, w))
    y = run(_padded(imp, x, [*pad_w, *pad_h], fill), [h.size, w.size], [h.stride, w.stride], [h.dilation, w.dilation],
            [own_h, own_w])
    return imp.op("squeeze", y, axis=[2]) if flat else y


def _with_bias(imp, y, b, spatial_rank: int):
    """y [N, O, *spatial] plus a bias per output channel."""
    return y if b is None else imp.op("add", y, imp.op("unsqueeze", b, axis=list(range(1, 1 + spatial_rank))))


@rule("Conv")
def conv(imp, x, w, b=None, *, auto_pad, dilations=None, group, kernel_shape=None, pads=None, strides=None):
    shape = _image(x, "Conv")
    axes = _windows(shape[2:], _kernel(w, kernel_shape, x.rank), auto_pad, pads, strides, dilations)
    kernels = _tall(imp, w) if len(axes) == 1 else w
    y = _slide(imp, x, axes, 0.0, lambda v, size, stride, dilation, padding: imp.op(
        "conv2d", v, kernels, stride=stride, padding=padding, dilation=dilation, groups=group, batch_dims=1))
    return _with_bias(imp, y, b, len(axes))


@rule("MaxPool")
def max_pool(imp, x, *, auto_pad, ceil_mode, dilations=None, kernel_shape, pads=None, strides=None):
    """storage_order is left out: it orders only the Indices output, which graphdef does not compute.
    Integers are pooled as floats, and back: the largest of a window is one of its values."""
    if len(imp.node.output) > 1 and imp.node.output[1]:
        raise Unsupported("MaxPool's Indices output")
    shape = _image(x, "MaxPool")
    axes = _windows(shape[2:], kernel_shape, auto_pad, pads, strides, dilations, ceil_mode)
    y = _slide(imp, cast_to(imp, x, "float"), axes, LOWEST, lambda v, size, stride, dilation, padding: imp.op(
        "max_pool2d", v, kernel_size=size, stride=stride, padding=padding, dilation=dilation, batch_dims=1),
        pooling=True)
    return cast_to(imp, y, x.kind)


def _window_mean(imp):
    """run for _slide: avg_pool2d, the mean of each whole window (the padding counted)."""
    return lambda x, size, stride, dilation, padding: imp.op(
        "avg_pool2d", x, kernel_size=size, stride=stride, padding=padding, dilation=dilation, batch_dims=1)


@rule("AveragePool")
def average_pool(imp, x, *, auto_pad, ceil_mode, count_include_pad, dilations=None, kernel_shape, pads=None,
                 strides=None):
    """The mean over each whole window, rescaled where ONNX averages fewer cells (the padding, unless
    count_include_pad, and always what ceil_mode reads past it)."""
    shape = _image(x, "AveragePool")
    axes = _windows(shape[2:], kernel_shape, auto_pad, pads, strides, dilations, ceil_mode)
    y = _slide(imp, x, axes, 0.0, _window_mean(imp), pooling=True)
    counted = math.prod(np.ix_(*(a.counted(bool(count_include_pad)) for a in axes)))
    area = math.prod(a.size for a in axes)
    return y if np.all(counted == area) else imp.op("mul", y, known(area / counted))


@rule("ConvTranspose")
def conv_transpose(imp, x, w, b=None, *, auto_pad, dilations=None, group, kernel_shape=None, output_padding=None,
                   output_shape=None, pads=None, strides=None):
    """graphdef's transposed convolution, cropping what it can of ONNX's output (pads, output_shape), then a pad
    for the rest."""
    shape = _image(x, "ConvTranspose")
    kernel = _kernel(w, kernel_shape, x.rank)
    axes, crops = _transposed(shape[2:], kernel, auto_pad, pads, strides, dilations, output_padding, output_shape)
    flat = len(axes) == 1
    if flat:
        x, w, axes, crops = _tall(imp, x), _tall(imp, w), [UNIT, *axes], [(0, 1), *crops]
    h, wide = axes
    (own_h, extra_h, *crop_h), (own_w, extra_w, *crop_w) = (_split_crop(a, *c) for a, c in zip(axes, crops))
    y = imp.op("conv_transpose2d", x, w, stride=[h.stride, wide.stride], padding=[own_h, own_w],
               output_padding=[extra_h, extra_w], dilation=[h.dilation, wide.dilation], groups=group, batch_dims=1)
    y = _padded(imp, y, [-crop_w[0], crop_w[1], -crop_h[0], crop_h[1]])
    y = imp.op("squeeze", y, axis=[2]) if flat else y
    return _with_bias(imp, y, b, len(shape) - 2)


def _split_crop(a: Axis, start: int, stop: int) -> tuple[int, int, int, int]:
    """ONNX's output [start, stop) of the whole transposed convolution along an axis (zeros past its end) as
    graphdef's padding p and output_padding e, which keep [p, end − p + e) with e less than the stride; then what
    a pad crops before, and adds after (negative: crops)."""
    end = (a.length - 1) * a.stride + a.span
    own = max(0, min(start, end - stop + a.stride - 1))
    extra = min(max(stop - end + own, 0), a.stride - 1)
    return own, extra, start - own, stop - (end - own + extra)


def _transposed(spatial, kernel, auto_pad, pads, strides, dilations, output_padding, output_shape):
    """Per spatial axis, the windows each input cell spreads over (an Axis), and the [start, stop) of the whole
    transposed convolution that ONNX's output keeps: by pads, or, given output_shape or SAME_*, centred (the odd
    cell cut before, or after for SAME_UPPER) as ONNX's spec says."""
    n = len(spatial)
    strides, dilations = strides or [1] * n, dilations or [1] * n
    pads, extra = pads or [0] * 2 * n, output_padding or [0] * n
    target = None if output_shape is None else list(output_shape)[-n:]
    _check_lengths(n, strides=strides, dilations=dilations, pads=pads, output_padding=extra)
    if min(*kernel, *strides, *dilations) < 1 or min(*pads, *extra) < 0:
        raise Malformed("kernel, strides and dilations must be 1 or more, pads and output_padding 0 or more")
    axes, crops = [], []
    for i, (length, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations)):
        axis = Axis(length, k, s, d)
        full = (length - 1) * s + axis.span + extra[i]
        if target is not None or auto_pad in SAME:
            out = target[i] if target is not None else length * s
            total = max(full - out, 0)  # a longer output is zeros after, as onnxruntime has it
            start = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad in ("NOTSET", "VALID"):
            start, out = pads[i], full - pads[i] - pads[i + n]
        else:
            raise Malformed(f"auto_pad {auto_pad!r} is none of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        if out < 1:
            raise Malformed(f"its output would have {out} cells along spatial axis {i}")
        axes.append(axis)
        crops.append((start, start + out))
    return axes, crops


@rule("GlobalAveragePool")
def global_average_pool(imp, x):
    if x.rank is not None and x.rank < 3:
        raise Malformed(f"its input has rank {x.rank}; GlobalAveragePool takes [N, C, *spatial sizes]")
    return imp.op("global_avg_pool", x, batch_dims=1)


@rule("GlobalMaxPool")
def global_max_pool(imp, x):
    if x.rank is None:
        raise Unsupported("GlobalMaxPool of an input whose rank is unknown")
    if x.rank < 3:
        raise Malformed(f"its input has rank {x.rank}; GlobalMaxPool takes [N, C, *spatial sizes]")
    return imp.op("max", x, axis=list(range(2, x.rank)), keepdims=True)


@rule("LRN")
def lrn(imp, x, *, alpha, beta, bias, size):
    """x / (bias + alpha·mean of x² over `size` channels around each)^beta: the mean is a window mean
    along the channels (zeros past them), the spatial axes laid side by side."""
    if x.shape is None:
        raise Unsupported("LRN of an input whose rank is unknown")
    if x.rank < 2 or size < 1:
        raise Malformed(f"LRN takes an input [N, C, ...] and a size of 1 or more, not {list(x.shape)} and {size}")
    shape = [x.shape[0], *_static_sizes(x.shape[1:], "channels or spatial sizes")]
    channels, cells = shape[1], math.prod(shape[2:])
    squares = reshaped(imp, imp.op("square", x), [shape[0], 1, channels, cells])
    around = Axis(channels, size, before=(size - 1) // 2, after=size // 2, count=channels)
    mean = _slide(imp, squares, [around, Axis(cells, 1, count=cells)], 0.0, _window_mean(imp), pooling=True)
    scale = imp.op("add", imp.op("mul", reshaped(imp, mean, shape), alpha), bias)
    return imp.op("div", x, imp.op("pow", scale, beta))


# -- normalization ---------------------------------------------------------------------------

@rule("BatchNormalization")
def batch_normalization(imp, x, scale, b, mean, var, *, epsilon, momentum, training_mode=0):
    """graphdef's batch_norm, which infers with the running statistics as ONNX does and trains as batch norm
    does. ONNX's momentum m keeps m of the running value, PyTorch's and graphdef's keep 1 − m (m is a float32:
    1 − m to the 7 decimals it holds)."""
    if training_mode or sum(1 for o in imp.node.output if o) > 1:
        raise Unsupported("BatchNormalization in training mode (training_mode=1, or its statistics as outputs)")
    if x.rank is not None and x.rank < 2:
        raise Malformed(f"its input has rank {x.rank}; BatchNormalization takes [N, C, ...]")
    taken = {scale.vertex, b.vertex}
    statistics = [_statistic(imp, v, taken) for v in (mean, var)]
    return imp.op("batch_norm", x, scale, b, *statistics, momentum=round(1 - momentum, 7), eps=epsilon, batch_dims=1)


def _statistic(imp, value, taken: set):
    """A running statistic: the model's own initializer becomes state, updated by training steps. One that
    shares its initializer with another input (exporters merge equal initializers: an untrained running
    variance is the scale's ones) is read now, as a constant; one given at run time is only read."""
    if value.vertex not in imp.initial:
        return value
    if value.vertex in taken:
        return known(imp.static(value, "a running statistic"))
    taken.add(value.vertex)
    return imp.state(value)


@rule("LayerNormalization")
def layer_normalization(imp, x, scale, b=None, *, axis, epsilon, stash_type):
    """graphdef's layer_norm over the axes from `axis` on (computed in the model's dtype whatever stash_type
    says); a Scale or B that only broadcasts to those axes multiplies or adds after it. Mean and InvStdDev,
    when the node asks for them, are computed apart: layer_norm keeps its own for its gradient."""
    if x.rank is None:
        raise Unsupported("LayerNormalization of an input whose rank is unknown")
    (axis,) = axes_in_range([axis], x.rank)
    shape = _static_sizes(x.shape[axis:], "normalized sizes")
    fits = [v is not None and v.shape is not None and list(v.shape) == shape for v in (scale, b)]
    y = imp.op("layer_norm", x, scale if fits[0] else known(np.ones(shape)), b if fits[1] else known(np.zeros(shape)),
               normalized_ndim=x.rank - axis, eps=epsilon)
    y = y if fits[0] else imp.op("mul", y, scale)
    y = y if fits[1] or b is None else imp.op("add", y, b)
    if not any(imp.node.output[1:]):
        return y
    axes = list(range(axis, x.rank))
    mean = imp.op("mean", x, axis=axes, keepdims=True)
    var = imp.op("mean", imp.op("square", imp.op("sub", x, mean)), axis=axes, keepdims=True)
    return y, mean, imp.op("reciprocal", imp.op("sqrt", imp.op("add", var, epsilon)))


def _channels(x, op_type: str) -> int:
    if x.shape is None or len(x.shape) < 2 or not isinstance(x.shape[1], int):
        raise Unsupported(f"{op_type} of an input whose channels are known only at run time")
    return x.shape[1]


@rule("GroupNormalization")
def group_normalization(imp, x, scale, bias, *, epsilon, num_groups, stash_type=1):
    """graphdef's group_norm; before opset 21, scale and bias hold one value per group, repeated here for
    each channel of the group."""
    channels = _channels(x, "GroupNormalization")
    if num_groups < 1 or channels % num_groups:
        raise Malformed(f"num_groups {num_groups} does not divide the {channels} channels")
    if imp.opset < 21:
        index = known(np.repeat(np.arange(num_groups), channels // num_groups))
        scale, bias = (imp.op("gather", v, index, axis=0) for v in (scale, bias))
    return imp.op("group_norm", x, scale, bias, num_groups=num_groups, eps=epsilon, batch_dims=1)


@rule("InstanceNormalization")
def instance_normalization(imp, x, scale, b, *, epsilon):
    """Group normalization with a group per channel."""
    channels = _channels(x, "InstanceNormalization")
    return imp.op("group_norm", x, scale, b, num_groups=channels, eps=epsilon, batch_dims=1)


@rule("LpNormalization")
def lp_normalization(imp, x, *, axis, p):
    """x over its L1 or L2 norm along axis; 0 where the norm is 0 (x is 0 there, divided by 1)."""
    if p not in (1, 2):
        raise Malformed(f"p is {p}; LpNormalization takes 1 or 2")
    (axis,) = axes_in_range([axis], x.rank)
    norm = imp.op("sum", imp.op("abs" if p == 1 else "square", x), axis=axis, keepdims=True)
    norm = norm if p == 1 else imp.op("sqrt", norm)
    return imp.op("div", x, imp.op("add", norm, imp.op("cast_like", imp.op("equal", norm, 0.0), norm)))


@rule("MeanVarianceNormalization")
def mean_variance_normalization(imp, x, *, axes):
    """(x − mean) / (standard deviation + 1e-9) over axes, as ONNX's function body."""
    axes = axes_in_range(list(axes), x.rank)
    centered = imp.op("sub", x, imp.op("mean", x, axis=axes, keepdims=True))
    std = imp.op("sqrt", imp.op("mean", imp.op("square", centered), axis=axes, keepdims=True))
    return imp.op("div", centered, imp.op("add", std, 1e-9))


# -- losses on class labels ------------------------------------------------------------------

def _label_loss(imp, op: str, x, labels, weights, ignore_index, reduction: str):
    """graphdef's loss on class labels, classes on axis 1, is ONNX's when the class weights are known at
    import. Weights computed at run time are applied as ONNX defines them: each label's term times its class's
    weight (0 where ignored), a mean divided by the sum of those weights."""
    ignored = {} if ignore_index is None else {"ignore_index": ignore_index}
    if reduction not in ("none", "sum", "mean"):
        raise Malformed(f"reduction {reduction!r} is none of none, sum, mean")
    try:
        fixed = None if weights is None else imp.static(weights, "class weights")
    except Unsupported:
        fixed = None
    if weights is None or fixed is not None:
        weight = {} if fixed is None else {"weight": [float(v) for v in np.ravel(fixed)]}
        return imp.op(op, x, labels, axis=1, reduction=reduction, **ignored, **weight)
    logp = x if op == "nll_loss" else imp.op("log_softmax", x, axis=1)
    terms = imp.op("nll_loss", logp, labels, axis=1, reduction="none", **ignored)
    if ignore_index is not None:
        kept = imp.op("logical_not", imp.op("equal", labels, known(np.int64(ignore_index))))
        labels = imp.op("where", kept, labels, known(np.int64(0)))
    each = imp.op("gather", weights, labels, axis=0)
    if ignore_index is not None:
        each = imp.op("mul", each, imp.op("cast_like", kept, each))
    terms = imp.op("mul", terms, each)
    if reduction == "none":
        return terms
    total = imp.op("sum", terms)
    return total if reduction == "sum" else imp.op("div", total, imp.op("sum", each))


@rule("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(imp, x, target, weight=None, *, ignore_index=None, reduction):
    return _label_loss(imp, "nll_loss", x, target, weight, ignore_index, reduction)


@rule("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(imp, scores, labels, weights=None, *, ignore_index=None, reduction):
    """The loss, and the log-probabilities when the node asks for them (its second output)."""
    loss = _label_loss(imp, "softmax_cross_entropy", scores, labels, weights, ignore_index, reduction)
    if len(imp.node.output) > 1 and imp.node.output[1]:
        return loss, imp.op("log_softmax", scores, axis=1)
    return loss


# -- moving channels to space and back -----------------------------------------------------------

def _blocks(x, blocksize: int, op_type: str) -> tuple:
    """x's sizes [N, C, H, W] and the block size, checked: C, H and W known now."""
    if x.shape is None:
        raise Unsupported(f"{op_type} of an input whose rank is unknown")
    if len(x.shape) != 4:
        raise Malformed(f"its input has shape {list(x.shape)}; {op_type} takes [N, C, H, W]")
    n, *sizes = x.shape
    _static_sizes(sizes, "channels or spatial sizes")
    if blocksize < 1:
        raise Malformed(f"blocksize {blocksize} must be 1 or more")
    return n, *sizes


def _rearranged(imp, x, split: list, perm: list, final: list):
    """x reshaped to `split`, its axes permuted, reshaped to `final` (the batch, first, may be known only at
    run time)."""
    return reshaped(imp, imp.op("transpose", reshaped(imp, x, split), axes=perm), final)


def _mode(mode: str) -> str:
    if mode not in ("DCR", "CRD"):
        raise Malformed(f"mode {mode!r} is neither DCR nor CRD")
    return mode


@rule("DepthToSpace")
def depth_to_space(imp, x, *, blocksize, mode="DCR"):
    n, c, h, w = _blocks(x, blocksize, "DepthToSpace")
    b = blocksize
    if c % (b * b):
        raise Malformed(f"{c} channels do not split into blocks of {b}×{b}")
    if _mode(mode) == "DCR":
        split, perm = [n, b, b, c // b ** 2, h, w], [0, 3, 4, 1, 5, 2]
    else:
        split, perm = [n, c // b ** 2, b, b, h, w], [0, 1, 4, 2, 5, 3]
    return _rearranged(imp, x, split, perm, [n, c // b ** 2, h * b, w * b])


@rule("SpaceToDepth")
def space_to_depth(imp, x, *, blocksize, mode="DCR"):
    n, c, h, w = _blocks(x, blocksize, "SpaceToDepth")
    b = blocksize
    if h % b or w % b:
        raise Malformed(f"spatial sizes {h}×{w} do not split into blocks of {b}×{b}")
    perm = [0, 3, 5, 1, 2, 4] if _mode(mode) == "DCR" else [0, 1, 3, 5, 2, 4]
    return _rearranged(imp, x, [n, c, h // b, b, w // b, b], perm, [n, c * b * b, h // b, w // b])

