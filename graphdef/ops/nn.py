"""Neural-network ops: softmax family and cross-entropy losses (lecture §5)."""
import math

import numpy as np

from .batching import along_axis, losses
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

register_op("softmax", _softmax, "out * (g - np.sum(g * out, axis=axis, keepdims=True))",
            shape=_axis_shape, batch=along_axis, examples=SOFTMAX_EXAMPLES,
            onnx=lambda e, i, o, a: e.node("Softmax", i, o, axis=a["axis"]), torch="x: torch.softmax(x, dim=axis)")

register_op("log_softmax", _log_softmax, "g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)",
            shape=_axis_shape, batch=along_axis, examples=SOFTMAX_EXAMPLES,
            onnx=lambda e, i, o, a: e.node("LogSoftmax", i, o, axis=a["axis"]), torch="x: torch.log_softmax(x, dim=axis)")


# -- losses: sums over the class axis, then reduced over the other axes ----------
# `batch_dims` leading axes are kept out of the reduction: each is its own loss. The
# batching rule adds one for the batch axis, so a per-sample loss gives one value per sample.

def _reduce(losses, reduction, scale, batch_dims):
    """scale × the losses, reduced over all but the first batch_dims axes (scaled after reducing: one op less)."""
    axes = tuple(range(batch_dims, losses.ndim))
    if reduction == "none" or not axes:  # nothing to reduce: one loss per sample already
        return losses * scale
    total = losses.sum(axis=axes) * scale if batch_dims else losses.sum() * scale  # sum / size beats mean()
    return total / max(math.prod(losses.shape[batch_dims:]), 1) if reduction == "mean" else total


def _loss_grad(g, p, t, axis, reduction, scale, batch_dims):
    """scale × ∂L/∂(each loss term), shaped to broadcast against the class axis."""
    if reduction == "none":
        return np.expand_dims(g * scale, axis)
    if reduction == "mean":
        shape = p.shape if p.shape == t.shape else np.broadcast_shapes(p.shape, t.shape)
        scale = scale / max(math.prod(shape[batch_dims:]) // shape[axis], 1)
    if batch_dims:  # g has one value per kept axis: line it up with the class axis and the reduced ones
        g = g.reshape(g.shape + (1,) * (max(p.ndim, t.ndim) - batch_dims))
    return g * scale


def _loss_shape(p, t, *, base=math.e, axis=-1, reduction="mean", batch_dims=0):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")
    shape = broadcast_shape(p, t)
    if shape is None:
        return None
    (axis,) = _axes(axis, len(shape))
    if not 0 <= batch_dims <= axis:
        raise ValueError(f"batch_dims must be between 0 and the class axis ({axis}), got {batch_dims}")
    return shape[:axis] + shape[axis + 1:] if reduction == "none" else shape[:batch_dims]


LOSS_EXAMPLES = [ex((3,), (3,)), ex((4, 3), (4, 3)), ex((2, 3), (2, 3), base=2),
                 ex((3, 2), (3, 2), axis=0, reduction="sum"), ex((2, 3), (2, 3), reduction="none"),
                 ex((2, 4, 3), (2, 4, 3), batch_dims=1), ex((2, 3), (3,), batch_dims=1, reduction="sum"),
                 ex((2, 3), (3,), axis=0), ex((3,), (2, 3))]


def _broadcast(x, other):
    """x at the broadcast shape of itself and `other` (a gradient for a target larger than the prediction)."""
    if x.shape == other.shape:
        return x
    shape = np.broadcast_shapes(x.shape, other.shape)
    return x if x.shape == shape else np.broadcast_to(x, shape)


def _cross_entropy(p, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean", batch_dims: int = 0):
    """−Σ t·log_base(p) over axis, then mean (or sum, or none) over the other axes but the first batch_dims."""
    return _cross_entropy_of_log(np.log(p), t, base, axis, reduction, batch_dims)


def _cross_entropy_of_log(log_p, t, base, axis, reduction, batch_dims):
    return _reduce((t * log_p).sum(axis=axis), reduction, -1 / math.log(base), batch_dims)


def torch_loss(per, reduction, batch_dims):
    """The per-term losses of a torch rule reduced as _reduce does."""
    dims = tuple(range(batch_dims, per.ndim))
    if reduction == "none" or not dims:
        return per
    return per.mean(dim=dims) if reduction == "mean" else per.sum(dim=dims)


def onnx_loss(e, logp: str, t: str, out: str, a: dict) -> str:
    """−Σ t·logp over the class axis, reduced over the axes after batch_dims, as ONNX nodes."""
    per = e.reduce("ReduceSum", e.node("Mul", [t, logp]), a["axis"], False)
    per = e.node("Div", [per, e.const(-math.log(a["base"]))])
    axes = tuple(range(a["batch_dims"], max(e.ranks) - 1))  # e.ranks: the ranks of this node's inputs
    if a["reduction"] == "none" or a["batch_dims"] and not axes:
        return e.node("Identity", [per], out)
    return e.reduce("ReduceMean" if a["reduction"] == "mean" else "ReduceSum", per, axes if a["batch_dims"] else None,
                    False, out)


register_op("cross_entropy", _cross_entropy,
            ("_loss_grad(g, p, t, axis, reduction, -1 / math.log(base), batch_dims) * t / p",
             "_broadcast(_loss_grad(g, p, t, axis, reduction, -1 / math.log(base), batch_dims) * np.log(p), t)"),
            shape=_loss_shape, batch=losses, examples=LOSS_EXAMPLES, domain=[PROBABILITY, PROBABILITY],
            fault="log of a zero probability: use softmax_cross_entropy on logits instead",
            onnx=lambda e, i, o, a: onnx_loss(e, e.node("Log", [i[0]]), i[1], o, a),
            torch="p, t: torch_loss(-(t * torch.log(p)).sum(dim=axis) / math.log(base), reduction, batch_dims)")


def _softmax_cross_entropy(z, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean",
                           batch_dims: int = 0):
    """cross_entropy(softmax(z), t) fused: stable for large logits, one cheap gradient."""
    return _cross_entropy_of_log(_log_softmax(z, axis=axis), t, base, axis, reduction, batch_dims)


def _softmax_cross_entropy_saving(z, t, *, base, axis, reduction, batch_dims):
    """The loss, and the softmax and log-softmax its gradients need: computed once, in the forward pass."""
    log_p, p = _shifted_exp(z, axis)
    total = p.sum(axis=axis, keepdims=True)
    log_p -= np.log(total)
    p /= total
    return _cross_entropy_of_log(log_p, t, base, axis, reduction, batch_dims), (p, log_p)


register_op("softmax_cross_entropy", _softmax_cross_entropy,  # `out` is saved: (softmax, log-softmax)
            ("_loss_grad(g, z, t, axis, reduction, -1 / math.log(base), batch_dims)"
             " * (t - out[0] * _broadcast(t, z).sum(axis, keepdims=True))",
             "_broadcast(_loss_grad(g, z, t, axis, reduction, -1 / math.log(base), batch_dims) * out[1], t)"),
            shape=_loss_shape, batch=losses, save=_softmax_cross_entropy_saving, examples=LOSS_EXAMPLES,
            domain=[REAL, PROBABILITY],
            onnx=lambda e, i, o, a: onnx_loss(e, e.node("LogSoftmax", [i[0]], axis=a["axis"]), i[1], o, a),
            torch="z, t: torch_loss(-(t * torch.log_softmax(z, dim=axis)).sum(dim=axis) / math.log(base), reduction, "
                  "batch_dims)")
