"""Normalization layers: layer_norm and group_norm (batch norm, whose statistics depend on the mode, is in modes.py).

Both normalize x within groups of its trailing axes, x̂ = (x − μ)/√(σ² + eps), then scale and shift it:
weight·x̂ + bias. layer_norm's group is its last normalized_ndim axes; group_norm's, a group of channels
with all their spatial axes. The backward is fused: with ĝ = g·weight, ∂L/∂x = (ĝ − mean ĝ − x̂·mean(ĝ·x̂))/σ
within each group, from the x̂ and 1/σ the forward saved. That map is x̂'s Jacobian in x, which is
symmetric, so forward mode applies it to x's tangent: the tangent of x̂, times weight.
"""
import numpy as np

from .batching import Lift, elementwise
from .nn import _matching
from .registry import ShapeError, ex, positive, register_op, unbroadcast


def _grouped(x, tail: int, groups: int):
    """x with its last `tail` axes as (groups, the rest): each group's statistics run along the last axis."""
    return x.reshape(x.shape[:x.ndim - tail] + (groups, -1))


def _normalize(x, scale, shift, tail: int, groups: int, eps: float):
    """scale·x̂ + shift, x̂ normalized within each group of x's last `tail` axes; and (x̂, 1/σ) for the backward."""
    view = _grouped(x, tail, groups)
    centered = view - view.mean(axis=-1, keepdims=True)
    inv_std = 1 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)
    normalized = (centered * inv_std).reshape(x.shape)
    return normalized * scale + shift, (normalized, inv_std)


def _through_normalization(v, saved, tail: int, groups: int):
    """v (a fresh array: it is overwritten) times x̂'s Jacobian in x, (v − mean v − x̂·mean(v·x̂))/σ within each
    group, from the saved (x̂, 1/σ), in three passes over v. The Jacobian is symmetric: J·v and Jᵀ·v alike."""
    normalized, inv_std = saved
    gv, xv = _grouped(v, tail, groups), _grouped(normalized, tail, groups)
    projection = (gv * xv).mean(axis=-1, keepdims=True)
    gv -= gv.mean(axis=-1, keepdims=True)
    gv -= xv * projection
    gv *= inv_std
    return gv.reshape(v.shape)


def _normalize_vjp(g_scaled, saved, x, tail: int, groups: int):
    """∂L/∂x from ĝ = g·scale (a fresh product: it is overwritten) and the saved (x̂, 1/σ)."""
    return unbroadcast(_through_normalization(g_scaled, saved, tail, groups), x.shape)


def _normalize_jvp(t, saved, scale, tail: int, groups: int):
    """The tangent of scale·x̂ + shift for a tangent t of x."""
    return _through_normalization(np.array(t, dtype=np.result_type(t, saved[0])), saved, tail, groups) * scale


def _check_affine(expected, weight, bias) -> None:
    for name, shape in (("weight", weight), ("bias", bias)):
        if shape is not None:
            _matching(name, shape, expected)


def _layer_norm_saving(x, weight, bias, *, normalized_ndim, eps):
    return _normalize(x, weight, bias, normalized_ndim, 1, eps)


def _layer_norm(x, weight, bias, *, normalized_ndim: int = 1, eps: float = 1e-5):
    """weight·(x − μ)/√(σ² + eps) + bias, μ and σ² over the last normalized_ndim axes (∂/∂x fused, from x̂ and 1/σ).

    weight and bias have the shape of those axes."""
    return _layer_norm_saving(x, weight, bias, normalized_ndim=normalized_ndim, eps=eps)[0]


def _layer_norm_shape(x, weight, bias, *, normalized_ndim, eps):
    positive(eps=eps)
    if normalized_ndim < 1:
        raise ValueError(f"normalized_ndim must be at least 1, got {normalized_ndim}")
    if x is None:
        return None
    if len(x) < normalized_ndim:
        raise ShapeError(f"layer_norm normalizes the last {normalized_ndim} axes, but x has rank {len(x)}")
    _check_affine(x[len(x) - normalized_ndim:], weight, bias)
    return x


def _trailing_axes(shapes, batched, **attrs) -> Lift:
    """layer_norm: the normalized axes are the last ones, so the inputs line up as for elementwise ops (the op
    is not elementwise: its rules sum their gradients to each input's shape themselves)."""
    return elementwise(shapes, batched, **attrs)


def _onnx_normalized(e, x: str, rank: int, tail: int, groups: int, eps: float) -> str:
    """x̂ as ONNX nodes: x normalized within each group of its last `tail` axes."""
    view = e.node("Reshape", [x, e.const([0] * (rank - tail) + [groups, -1], np.int64)])  # 0: that axis as it is
    centered = e.node("Sub", [view, e.reduce("ReduceMean", view, -1, True)])
    var = e.reduce("ReduceMean", e.node("Mul", [centered, centered]), -1, True)
    normalized = e.node("Div", [centered, e.node("Sqrt", [e.node("Add", [var, e.const(eps)])])])
    return e.node("Reshape", [normalized, e.node("Shape", [x])])


def _onnx_affine(e, normalized: str, weight: str, bias: str, out: str) -> str:
    return e.node("Add", [e.node("Mul", [normalized, weight]), bias], out)


def _onnx_layer_norm(e, inputs: list, out: str, a: dict) -> str:
    x, weight, bias = inputs
    return _onnx_affine(e, _onnx_normalized(e, x, e.ranks[0], a["normalized_ndim"], 1, a["eps"]), weight, bias, out)


register_op("layer_norm", _layer_norm,  # `out` is saved: (x̂, 1/σ)
            ("_normalize_vjp(g * weight, out, x, normalized_ndim, 1)", "unbroadcast(g * out[0], weight.shape)",
             "unbroadcast(g, bias.shape)"),
            jvp=("_normalize_jvp(t, out, weight, normalized_ndim, 1)", "t * out[0]", "t"),
            shape=_layer_norm_shape, batch=_trailing_axes, save=_layer_norm_saving,
            examples=[ex((4,), (4,), (4,)), ex((2, 3), (3,), (3,)), ex((2, 3, 4), (3, 4), (3, 4), normalized_ndim=2),
                      ex((3, 2), (2,), (2,), eps=0.1)],
            onnx=_onnx_layer_norm,
            torch="x, weight, bias: F.layer_norm(x, x.shape[x.ndim - normalized_ndim:], weight, bias, eps)")


# group_norm: x is [C, *spatial] per sample, after `batch_dims` leading sample axes (the batching rule adds one)

def _channel_shape(v, x, batch_dims: int) -> tuple:
    """The shape that lines a [C] vector up with x's channel axis (the one after batch_dims sample axes)."""
    return np.shape(v) + (1,) * (np.ndim(x) - batch_dims - 1)


def _group_norm_saving(x, weight, bias, *, num_groups, eps, batch_dims):
    return _normalize(x, np.reshape(weight, _channel_shape(weight, x, batch_dims)),
                      np.reshape(bias, _channel_shape(bias, x, batch_dims)), x.ndim - batch_dims, num_groups, eps)


def _group_norm(x, weight, bias, *, num_groups: int, eps: float = 1e-5, batch_dims: int = 0):
    """weight·x̂ + bias per channel, x̂ normalized over each of num_groups channel groups and space (∂/∂x fused).

    x is [C, *spatial] per sample, after batch_dims sample axes; weight and bias are [C]."""
    return _group_norm_saving(x, weight, bias, num_groups=num_groups, eps=eps, batch_dims=batch_dims)[0]


def _group_norm_shape(x, weight, bias, *, num_groups, eps, batch_dims):
    positive(eps=eps)
    if num_groups < 1:
        raise ValueError(f"num_groups must be at least 1, got {num_groups}")
    if batch_dims < 0:
        raise ValueError(f"batch_dims must be at least 0, got {batch_dims}")
    if x is None:
        return None
    if len(x) <= batch_dims:
        raise ShapeError(f"group_norm needs x with a channel axis after {batch_dims} sample axes, got rank {len(x)}")
    channels = x[batch_dims]
    if channels is not None and channels % num_groups:
        raise ShapeError(f"{channels} channels do not split into {num_groups} groups")
    _check_affine((channels,), weight, bias)
    return x


def _channels_after_samples(shapes, batched, *, batch_dims, **attrs) -> Lift:
    """group_norm: x gets one more leading sample axis (a singleton when only weight or bias is batched);
    batched weights get singletons to line up with x's sample axes."""
    line = tuple(range(1, 1 + batch_dims))
    expand = (() if batched[0] else (0,), *(line if b else () for b in batched[1:]))
    return Lift(expand, {**attrs, "batch_dims": batch_dims + 1})


def _onnx_group_norm(e, inputs: list, out: str, a: dict) -> str:
    x, weight, bias = inputs
    rank = e.ranks[0]
    spatial = tuple(range(a["batch_dims"] + 1 - rank, 0))  # the axes after the channel axis, from the end
    normalized = _onnx_normalized(e, x, rank, rank - a["batch_dims"], a["num_groups"], a["eps"])
    return _onnx_affine(e, normalized, e.unsqueeze(weight, spatial), e.unsqueeze(bias, spatial), out)


register_op("group_norm", _group_norm,  # `out` is saved: (x̂, 1/σ)
            ("_normalize_vjp(g * np.reshape(weight, _channel_shape(weight, x, batch_dims)), out, x,"
             " x.ndim - batch_dims, num_groups)",
             "unbroadcast(g * out[0], _channel_shape(weight, x, batch_dims)).reshape(weight.shape)",
             "unbroadcast(g, _channel_shape(bias, x, batch_dims)).reshape(bias.shape)"),
            jvp=("_normalize_jvp(t, out, np.reshape(weight, _channel_shape(weight, x, batch_dims)),"
                 " x.ndim - batch_dims, num_groups)",
                 "np.reshape(t, _channel_shape(t, x, batch_dims)) * out[0]",
                 "np.reshape(t, _channel_shape(t, x, batch_dims))"),
            shape=_group_norm_shape, batch=_channels_after_samples, save=_group_norm_saving,
            examples=[ex((4, 3), (4,), (4,), num_groups=2), ex((6, 2, 2), (6,), (6,), num_groups=3),
                      ex((4,), (4,), (4,), num_groups=2), ex((3, 2), (3,), (3,), num_groups=1),
                      ex((2, 4, 3), (4,), (4,), num_groups=4, batch_dims=1, eps=0.1)],
            onnx=_onnx_group_norm,
            torch="x, weight, bias: F.group_norm(x.reshape(-1, *x.shape[batch_dims:]), num_groups, weight, bias, "
                  "eps).reshape(x.shape)")
