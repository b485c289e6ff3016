"""Neural-network ops: softmax family and cross-entropy losses (lecture §5)."""
import math

import numpy as np

from .registry import PROBABILITY, REAL, broadcast_shape, ex, register_op
from .tensor import _axes

REDUCTIONS = ("mean", "sum", "none")


def _axis_shape(shape, *, axis):
    if shape is not None:
        _axes(axis, len(shape))
    return shape


def _softmax(x, *, axis: int = -1):
    """exp(x) / sum(exp(x)) along axis, computed stably."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax(x, *, axis: int = -1):
    """log(softmax(x)) along axis, computed stably."""
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


SOFTMAX_EXAMPLES = [ex((4,)), ex((2, 3)), ex((2, 3), axis=0)]

register_op("softmax", _softmax,
            lambda g, out, x, *, axis: out * (g - np.sum(g * out, axis=axis, keepdims=True)),
            shape=_axis_shape, examples=SOFTMAX_EXAMPLES)

register_op("log_softmax", _log_softmax,
            lambda g, out, x, *, axis: g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),
            shape=_axis_shape, examples=SOFTMAX_EXAMPLES)


# -- losses: per-sample sums over the class axis, then reduced over samples ----

def _reduce(per_sample, reduction):
    if reduction == "none":
        return per_sample
    total = per_sample.sum()  # sum / size: numpy's mean() costs twice as much on a batch
    return total / max(per_sample.size, 1) if reduction == "mean" else total


def _per_sample_grad(g, p, t, axis, reduction):
    """∂L/∂(per-sample loss), shaped to broadcast against the class axis."""
    if reduction == "none":
        return np.expand_dims(g, axis)
    if reduction == "mean":
        shape = p.shape if p.shape == t.shape else np.broadcast_shapes(p.shape, t.shape)
        g = g / max(math.prod(shape) // shape[axis], 1)
    return g


def _loss_shape(p, t, *, base=math.e, axis=-1, reduction="mean"):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    shape = broadcast_shape(p, t)
    if shape is None:
        return None if reduction == "none" else ()
    (axis,) = _axes(axis, len(shape))
    return shape[:axis] + shape[axis + 1:] if reduction == "none" else ()


def _cross_entropy(p, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean"):
    """−Σ t·log_base(p) over axis per sample, then mean (or sum, or none) over samples."""
    return _reduce((t * np.log(p)).sum(axis=axis) / -math.log(base), reduction)


def _cross_entropy_vjp_p(g, p, t, base, axis, reduction):
    return -_per_sample_grad(g, p, t, axis, reduction) / math.log(base) * t / p


def _cross_entropy_vjp_t(g, p, t, base, axis, reduction):
    return -_per_sample_grad(g, p, t, axis, reduction) / math.log(base) * np.log(p)


register_op("cross_entropy", _cross_entropy,
            (lambda g, out, p, t, *, base, axis, reduction: _cross_entropy_vjp_p(g, p, t, base, axis, reduction),
             lambda g, out, p, t, *, base, axis, reduction: _cross_entropy_vjp_t(g, p, t, base, axis, reduction)),
            shape=_loss_shape,
            examples=[ex((3,), (3,)), ex((4, 3), (4, 3)), ex((2, 3), (2, 3), base=2),
                      ex((3, 2), (3, 2), axis=0, reduction="sum"), ex((2, 3), (2, 3), reduction="none")],
            domain=[PROBABILITY, PROBABILITY])


def _softmax_cross_entropy(z, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean"):
    """cross_entropy(softmax(z), t) fused: stable for large logits, one cheap gradient."""
    return _reduce((t * _log_softmax(z, axis=axis)).sum(axis=axis) / -math.log(base), reduction)


def _softmax_cross_entropy_vjp_z(g, z, t, base, axis, reduction):
    gs = _per_sample_grad(g, z, t, axis, reduction) / math.log(base)
    return gs * (_softmax(z, axis=axis) * t.sum(axis=axis, keepdims=True) - t)


def _softmax_cross_entropy_vjp_t(g, z, t, base, axis, reduction):
    return -_per_sample_grad(g, z, t, axis, reduction) / math.log(base) * _log_softmax(z, axis=axis)


register_op("softmax_cross_entropy", _softmax_cross_entropy,
            (lambda g, out, z, t, *, base, axis, reduction: _softmax_cross_entropy_vjp_z(g, z, t, base, axis, reduction),
             lambda g, out, z, t, *, base, axis, reduction: _softmax_cross_entropy_vjp_t(g, z, t, base, axis, reduction)),
            shape=_loss_shape,
            examples=[ex((3,), (3,)), ex((4, 3), (4, 3)), ex((2, 3), (2, 3), base=2),
                      ex((3, 2), (3, 2), axis=0, reduction="sum"), ex((2, 3), (2, 3), reduction="none")],
            domain=[REAL, PROBABILITY])
