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


def _shifted_exp(x, axis: int):
    """x − max(x) along axis, and its exp: the stable start of softmax and log-softmax."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted, np.exp(shifted)


def _softmax(x, *, axis: int = -1):
    """exp(x) / sum(exp(x)) along axis, computed stably."""
    _, e = _shifted_exp(x, axis)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def _log_softmax(x, *, axis: int = -1):
    """log(softmax(x)) along axis, computed stably."""
    shifted, e = _shifted_exp(x, axis)
    shifted -= np.log(e.sum(axis=axis, keepdims=True))
    return shifted


SOFTMAX_EXAMPLES = [ex((4,)), ex((2, 3)), ex((2, 3), axis=0)]

register_op("softmax", _softmax,
            lambda g, out, x, *, axis: out * (g - np.sum(g * out, axis=axis, keepdims=True)),
            shape=_axis_shape, examples=SOFTMAX_EXAMPLES)

register_op("log_softmax", _log_softmax,
            lambda g, out, x, *, axis: g - np.exp(out) * np.sum(g, axis=axis, keepdims=True),
            shape=_axis_shape, examples=SOFTMAX_EXAMPLES)


# -- losses: per-sample sums over the class axis, then reduced over samples ----

def _reduce(per_sample, reduction, scale):
    """scale × the per-sample losses, reduced over samples (scaled after reducing: one op less on a batch)."""
    if reduction == "none":
        return per_sample * scale
    total = per_sample.sum() * scale  # sum / size: numpy's mean() costs twice as much on a batch
    return total / max(per_sample.size, 1) if reduction == "mean" else total


def _per_sample_grad(g, p, t, axis, reduction, scale):
    """scale × ∂L/∂(per-sample loss), shaped to broadcast against the class axis."""
    if reduction == "none":
        return np.expand_dims(g * scale, axis)
    if reduction == "mean":
        shape = p.shape if p.shape == t.shape else np.broadcast_shapes(p.shape, t.shape)
        scale = scale / max(math.prod(shape) // shape[axis], 1)
    return g * scale


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
    return _cross_entropy_of_log(np.log(p), t, base, axis, reduction)


def _cross_entropy_of_log(log_p, t, base, axis, reduction):
    return _reduce((t * log_p).sum(axis=axis), reduction, -1 / math.log(base))


register_op("cross_entropy", _cross_entropy,
            (lambda g, out, p, t, *, base, axis, reduction:
                _per_sample_grad(g, p, t, axis, reduction, -1 / math.log(base)) * t / p,
             lambda g, out, p, t, *, base, axis, reduction:
                _per_sample_grad(g, p, t, axis, reduction, -1 / math.log(base)) * np.log(p)),
            shape=_loss_shape,
            examples=[ex((3,), (3,)), ex((4, 3), (4, 3)), ex((2, 3), (2, 3), base=2),
                      ex((3, 2), (3, 2), axis=0, reduction="sum"), ex((2, 3), (2, 3), reduction="none")],
            domain=[PROBABILITY, PROBABILITY])


def _softmax_cross_entropy(z, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean"):
    """cross_entropy(softmax(z), t) fused: stable for large logits, one cheap gradient."""
    return _cross_entropy_of_log(_log_softmax(z, axis=axis), t, base, axis, reduction)


def _softmax_cross_entropy_saving(z, t, *, base, axis, reduction):
    """The loss, and the softmax and log-softmax its gradients need: computed once, in the forward pass."""
    log_p, p = _shifted_exp(z, axis)
    total = p.sum(axis=axis, keepdims=True)
    log_p -= np.log(total)
    p /= total
    return _cross_entropy_of_log(log_p, t, base, axis, reduction), (p, log_p)


register_op("softmax_cross_entropy", _softmax_cross_entropy,
            (lambda g, saved, z, t, *, base, axis, reduction:  # saved: (softmax, log-softmax)
                _per_sample_grad(g, z, t, axis, reduction, -1 / math.log(base))
                * (t - saved[0] * t.sum(axis, keepdims=True)),
             lambda g, saved, z, t, *, base, axis, reduction:
                _per_sample_grad(g, z, t, axis, reduction, -1 / math.log(base)) * saved[1]),
            shape=_loss_shape, save=_softmax_cross_entropy_saving,
            examples=[ex((3,), (3,)), ex((4, 3), (4, 3)), ex((2, 3), (2, 3), base=2),
                      ex((3, 2), (3, 2), axis=0, reduction="sum"), ex((2, 3), (2, 3), reduction="none")],
            domain=[REAL, PROBABILITY])
