"""Neural-network ops: the softmax family and the losses (lecture §5), which turn a classifier's scores into
probabilities and a training signal. Normalization layers are in norms.py."""
import math

import numpy as np

from .batching import Lift, along_axis, elementwise, losses, ranks, shift
from .registry import (FLOATS, MULTILINEAR, PROBABILITY, REAL, DTypeError, Integers, ShapeError, broadcast_shape, ex,
                       indexed_by, register_op, show_shape, unbroadcast)
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


def _softmax_vjp(g, out, axis: int):
    """out·(g − Σ g·out) along axis, from the softmax's output alone, the difference taken in place. The
    Jacobian, diag(out) − out·outᵀ, is symmetric: with a tangent for g this is the jvp too."""
    d = g * out
    d -= out * d.sum(axis=axis, keepdims=True)
    return d


SOFTMAX_EXAMPLES = [ex((4,)), ex((2, 3)), ex((2, 3), axis=0)]

register_op("softmax", _softmax, "_softmax_vjp(g, out, axis)", jvp="_softmax_vjp(t, out, axis)",
            shape=_axis_shape, batch=along_axis, examples=SOFTMAX_EXAMPLES,
            onnx=lambda e, i, o, a: e.node("Softmax", i, o, axis=a["axis"]), torch="x: torch.softmax(x, dim=axis)")

def _log_softmax_jvp(t, p, axis: int):
    """The tangent of log-softmax, t − Σ p·t along axis, given the softmax p (J = I − 1·pᵀ; the vjp is Jᵀ·g)."""
    return t - np.sum(p * t, axis=axis, keepdims=True)


register_op("log_softmax", _log_softmax, "g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)",
            jvp="_log_softmax_jvp(t, np.exp(out), axis)", shape=_axis_shape, batch=along_axis,
            examples=SOFTMAX_EXAMPLES,
            onnx=lambda e, i, o, a: e.node("LogSoftmax", i, o, axis=a["axis"]),
            torch="x: torch.log_softmax(x, dim=axis)")


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


def _spread(g, rank: int, reduction: str, batch_dims: int, total=1):
    """∂L/∂(each term) for terms of rank `rank` reduced over the axes after batch_dims: g lined up with
    the terms, ÷ `total` (what the mean divides by)."""
    if reduction == "none":
        return g
    g = np.reshape(g, np.shape(g) + (1,) * (rank - batch_dims))
    return g / total if reduction == "mean" else g


def _check_loss(reduction: str, base: float = math.e) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    if base <= 0 or base == 1:
        raise ValueError(f"base must be positive and not 1, got {base}")


def _class_axis(rank: int, axis: int, batch_dims: int) -> int:
    """The class axis, non-negative; the batch_dims kept axes come before it."""
    (axis,) = _axes(axis, rank)
    if not 0 <= batch_dims <= axis:
        raise ValueError(f"batch_dims must be between 0 and the class axis ({axis}), got {batch_dims}")
    return axis


def _matching(what: str, shape, expected) -> tuple:
    """`shape` checked against `expected` (dimensions may be None): the two merged."""
    if len(shape) != len(expected) or any(None not in (a, b) and a != b for a, b in zip(shape, expected)):
        raise ShapeError(f"{what} must be {show_shape(expected)}, got {show_shape(shape)}")
    return tuple(b if a is None else a for a, b in zip(shape, expected))


def _loss_shape(p, t, *, base=math.e, axis=-1, reduction="mean", batch_dims=0):
    _check_loss(reduction, base)
    shape = broadcast_shape(p, t)
    if shape is None:
        return None
    axis = _class_axis(len(shape), axis, batch_dims)
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


def _fit(d, x):
    """A gradient d of a broadcast result as x's: broadcast up where x is larger, summed over the axes x lacks
    (d and x may be Python floats: plans of scalars compute on them)."""
    shape = np.shape(x)
    if np.shape(d) == shape:
        return d
    return unbroadcast(np.broadcast_to(d, np.broadcast_shapes(np.shape(d), shape)), shape)


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
    return onnx_reduced(e, per, max(e.ranks) - 1, a["reduction"], a["batch_dims"], out)  # e.ranks: the inputs'


def onnx_reduced(e, per: str, rank: int, reduction: str, batch_dims: int, out: str, weights: str | None = None) -> str:
    """Per-term losses of rank `rank` reduced over the axes after batch_dims, as ONNX nodes: summed, or
    averaged (÷ the total of `weights` when given: the weights of class labels)."""
    axes = tuple(range(batch_dims, rank)) if batch_dims else None  # e.reduce: None is every axis, () none
    if reduction == "none":
        return e.node("Identity", [per], out)
    if reduction == "mean" and weights is not None:
        return e.node("Div", [e.reduce("ReduceSum", per, axes, False), e.reduce("ReduceSum", weights, axes, False)],
                      out)
    return e.reduce("ReduceMean" if reduction == "mean" else "ReduceSum", per, axes, False, out)


# The losses' jvp rules are functions, not expressions: an expression's tangent `t` would shadow the target t.
# The loss is linear in log p, whose tangent is dp/p, and in t.

def _cross_entropy_jvp_p(dp, out, p, t, *, base, axis, reduction, batch_dims):
    return _cross_entropy_of_log(dp / p, t, base, axis, reduction, batch_dims)


def _cross_entropy_jvp_t(dt, out, p, t, *, base, axis, reduction, batch_dims):
    return _cross_entropy_of_log(np.log(p), dt, base, axis, reduction, batch_dims)


register_op("cross_entropy", _cross_entropy,
            ("_loss_grad(g, p, t, axis, reduction, -1 / math.log(base), batch_dims) * t / p",
             "_broadcast(_loss_grad(g, p, t, axis, reduction, -1 / math.log(base), batch_dims) * np.log(p), t)"),
            jvp=(_cross_entropy_jvp_p, _cross_entropy_jvp_t),
            shape=_loss_shape, batch=losses, examples=LOSS_EXAMPLES, domain=[PROBABILITY, PROBABILITY],
            fault="log of a zero probability: use softmax_cross_entropy on logits instead",
            onnx=lambda e, i, o, a: onnx_loss(e, e.node("Log", [i[0]]), i[1], o, a),
            torch="p, t: torch_loss(-(t * torch.log(p)).sum(dim=axis) / math.log(base), reduction, batch_dims)")


# -- class labels: an int64 target of one class index per term, shaped like z without its class axis --
# As in PyTorch: a label equal to ignore_index adds nothing, `weight` weighs each class, and a
# mean divides by the total weight of the labels it covers (0/0, NaN, when all are ignored).

def _label_weights(t, classes: int, weight, ignore_index: int, dtype):
    """The labels with the ignored ones set to class 0 (safe to index with), and each label's weight:
    its class's (1 without `weight`), 0 where ignored."""
    kept = t != ignore_index
    labels = np.where(kept, t, 0)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)].flat[0]
        raise ValueError(f"class label {bad} is out of range for {classes} classes (0 to {classes - 1}, or "
                         f"ignore_index, {ignore_index})")
    if weight is None:
        return labels, kept.astype(dtype)
    if len(weight) != classes:
        raise ValueError(f"weight has {len(weight)} values for {classes} classes")
    return labels, np.asarray(weight, dtype)[labels] * kept


def _picked(x, labels, axis: int):
    """x at each label's class along axis."""
    return np.take_along_axis(x, np.expand_dims(labels, axis), axis).squeeze(axis)


def _one_hot(labels, classes: int, axis: int, ndim: int):
    """True at each label's class along axis: a boolean array of rank ndim."""
    axis %= ndim
    return np.expand_dims(labels, axis) == np.arange(classes).reshape((-1,) + (1,) * (ndim - 1 - axis))


def _label_loss(log_p, t, scale, weight, ignore_index, axis, reduction, batch_dims):
    """scale × weight·log p at each label, reduced over the axes after batch_dims (a mean over the labels' weight)."""
    labels, w = _label_weights(t, log_p.shape[axis], weight, ignore_index, log_p.dtype)
    terms = _picked(log_p, labels, axis) * w * scale
    if reduction == "none":
        return terms
    axes = tuple(range(batch_dims, terms.ndim))
    total = terms.sum(axis=axes)
    return total / w.sum(axis=axes) if reduction == "mean" else total


def _labels_vjp(g, x, t, weight, ignore_index, scale, axis, reduction, batch_dims, p=None):
    """∂L/∂x of scale·Σ weight·x at each label (x log-probabilities): scale·weight·g at the label's class;
    given p = softmax(z), ∂L/∂z through x = log p: scale·weight·g·(one-hot − p)."""
    classes = x.shape[axis]
    labels, w = _label_weights(t, classes, weight, ignore_index, x.dtype)
    total = w.sum(axis=tuple(range(batch_dims, w.ndim)), keepdims=True) if reduction == "mean" else 1
    coefficient = np.expand_dims(w * _spread(g, w.ndim, reduction, batch_dims, total) * scale, axis)
    hot = _one_hot(labels, classes, axis, x.ndim)
    return unbroadcast((hot if p is None else hot - p) * coefficient, x.shape)


def _label_loss_shape(z, t, *, base=math.e, axis=-1, reduction="mean", batch_dims=0, weight=None, ignore_index=-100):
    _check_loss(reduction, base)
    if z is None or t is None:
        return None
    axis = _class_axis(len(z), axis, batch_dims)
    labels = _matching(f"class labels (z's shape without its class axis {axis})", t, z[:axis] + z[axis + 1:])
    if weight is not None and z[axis] is not None and len(weight) != z[axis]:
        raise ShapeError(f"weight has {len(weight)} values for {z[axis]} classes")
    return labels if reduction == "none" else labels[:batch_dims]


def _labels_batch(shapes, batched, *, axis, batch_dims, **attrs) -> Lift:
    """Losses on class labels: each input gets the batch axis in front (a singleton when unbatched), so that
    the labels still line up with z without its class axis; one more leading axis is kept per sample."""
    rank = ranks(shapes)[0]
    return Lift(tuple(() if b else (0,) for b in batched),
                {**attrs, "axis": shift(axis, rank), "batch_dims": batch_dims + 1})


def torch_labels(loss, x, t, weight, ignore_index, axis, reduction, batch_dims):
    """A PyTorch loss on class labels (F.nll_loss, F.cross_entropy: classes on axis 1 after a batch axis, or
    axis 0 alone) in graphdef's layout: classes on `axis`, one loss per index of the first batch_dims axes."""
    import torch

    def per_sample(x, t):
        x = x.movedim(axis - batch_dims if axis >= 0 else axis, min(x.ndim - 1, 1))
        return loss(x, t, weight=None if weight is None else x.new_tensor(weight), ignore_index=ignore_index,
                    reduction=reduction)
    for _ in range(batch_dims):
        per_sample = torch.vmap(per_sample)
    return per_sample(x, t)


def _onnx_label_weights(e, t: str, a: dict) -> str:
    """Each label's weight as ONNX nodes: its class's (1 without weights), 0 where it is ignore_index."""
    kept = e.node("Not", [e.node("Equal", [t, e.const(a["ignore_index"], np.int64)])])
    if a["weight"] is None:
        return e.node("Cast", [kept], to=e.elem)
    safe = e.node("Where", [kept, t, e.const(0, np.int64)])
    return e.node("Where", [kept, e.node("Gather", [e.const(a["weight"]), safe]), e.const(0.0)])


def onnx_labels(e, op_type: str, inputs: list, out: str, a: dict, scale: float) -> str:
    """A loss on class labels as ONNX's op_type (NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss: classes
    on axis 1 after a batch axis), one term per label × scale, reduced as _label_loss does."""
    x, t = inputs
    rank = e.ranks[0]
    axis = a["axis"] % rank
    if rank == 1:  # one [C] and its label: a batch of one
        x, t = e.unsqueeze(x, (0,)), e.unsqueeze(t, (0,))
    elif axis != 1:
        others = [d for d in range(rank) if d != axis]
        x = e.node("Transpose", [x], perm=[others[0], axis, *others[1:]])
    weight = [] if a["weight"] is None else [e.const(a["weight"])]
    per = e.node(op_type, [x, t, *weight], reduction="none", ignore_index=a["ignore_index"])
    if rank == 1:
        per = e.squeeze(per, (0,), None)
    if scale != 1:
        per = e.node("Mul", [per, e.const(scale)])
    weights = _onnx_label_weights(e, inputs[1], a) if a["reduction"] == "mean" else None
    return onnx_reduced(e, per, rank - 1, a["reduction"], a["batch_dims"], out, weights)


CLASSES = 3  # the label examples' number of classes: a test domain is per op, so it is the same in all of them
LABEL_EXAMPLES = [ex((3,), ()), ex((4, 3), (4,)), ex((4, 3), (4,), weight=[0.5, 1.0, 2.0]),
                  ex((6, 3), (6,), ignore_index=1),
                  ex((4, 3), (4,), reduction="sum", weight=[0.5, 1.0, 2.0], ignore_index=2),
                  ex((4, 3), (4,), reduction="none", ignore_index=0),
                  ex((2, 4, 3), (2, 4), batch_dims=1, weight=[1.0, 2.0, 0.5]),
                  ex((3, 4), (4,), axis=0), ex((2, 3, 2), (2, 2), axis=1, reduction="sum", ignore_index=0)]
LABEL_FAULT = "a mean over class labels that are all ignore_index (or weigh 0) is 0/0: check the labels, or sum"


def _nll_loss(logp, target, *, weight: list[float] | None = None, ignore_index: int = -100, reduction: str = "mean",
              axis: int = -1, batch_dims: int = 0):
    """−weight[t]·logp[t] per int64 class label t; mean: ÷ the labels' total weight (∂/∂logp = −weight[t] at t).

    As PyTorch's: `axis` is logp's class axis, target has logp's shape without it, and labels equal to
    ignore_index add nothing."""
    return _label_loss(logp, target, -1.0, weight, ignore_index, axis, reduction, batch_dims)


register_op("nll_loss", _nll_loss,
            ("_labels_vjp(g, logp, target, weight, ignore_index, -1.0, axis, reduction, batch_dims)", None),
            shape=_label_loss_shape, batch=_labels_batch, dtype=indexed_by(1, rest=FLOATS), examples=LABEL_EXAMPLES,
            domain=[REAL, Integers(0, CLASSES)], fault=LABEL_FAULT,
            onnx=lambda e, i, o, a: onnx_labels(e, "NegativeLogLikelihoodLoss", i, o, a, 1.0),
            torch="logp, t: torch_labels(F.nll_loss, logp, t, weight, ignore_index, axis, reduction, batch_dims)",
            jvp=MULTILINEAR)


# -- softmax cross-entropy: t probabilities, or class labels by its dtype (its rank one short of z's) ----

def _softmax_cross_entropy(z, t, *, base: float = math.e, axis: int = -1, reduction: str = "mean",
                           batch_dims: int = 0, weight: list[float] | None = None, ignore_index: int = -100):
    """cross_entropy(softmax(z), t) fused, t probabilities or int64 labels: stable, one cheap gradient (p·Σt − t).

    Class labels have z's shape without the class axis; weight and ignore_index apply to them, as in PyTorch."""
    return _softmax_loss(_log_softmax(z, axis=axis), t, base, axis, reduction, batch_dims, weight, ignore_index)


def _softmax_cross_entropy_saving(z, t, *, base, axis, reduction, batch_dims, weight, ignore_index):
    """The loss, and what its gradients need, made once in the forward pass: the softmax, the log-softmax and,
    for probability targets, their total along the axis (∂/∂z ∝ p·Σt − t; None for class labels)."""
    log_p, p = _shifted_exp(z, axis)
    total = p.sum(axis=axis, keepdims=True)
    log_p -= np.log(total)
    p /= total
    loss = _softmax_loss(log_p, t, base, axis, reduction, batch_dims, weight, ignore_index)
    t_total = _broadcast(t, z).sum(axis=axis, keepdims=True) if t.dtype.kind == "f" else None
    return loss, (p, log_p, t_total)


def _softmax_loss(log_p, t, base, axis, reduction, batch_dims, weight, ignore_index):
    """The loss on log-probabilities: t class labels or probabilities, as its dtype says."""
    if _holds_labels(log_p, t, weight):
        return _label_loss(log_p, t, -1 / math.log(base), weight, ignore_index, axis, reduction, batch_dims)
    return _cross_entropy_of_log(log_p, t, base, axis, reduction, batch_dims)


def _holds_labels(z, t, weight) -> bool:
    """Whether t holds class labels (integers), not probabilities. Its rank must say the same: the shape and
    batching rules, which do not see dtypes, read the form from it."""
    if t.dtype.kind != "f":
        if t.ndim != z.ndim - 1:
            raise ValueError(f"class labels (int64) must have z's shape without its class axis: got "
                             f"{show_shape(t.shape)} for z {show_shape(z.shape)}")
        return True
    if t.ndim == z.ndim - 1:
        raise ValueError("t has one axis fewer than z, so it holds class labels: declare it `dtype: int64`, "
                         "or give probabilities with z's class axis")
    if weight is not None:
        raise ValueError("weight weighs class labels; for probability targets, multiply t by the class weights")
    return False


def _softmax_loss_shape(z, t, *, weight=None, ignore_index=-100, **attrs):
    """t one axis short of z holds class labels; otherwise probabilities, which broadcast against z."""
    if z is not None and t is not None and len(t) == len(z) - 1:
        return _label_loss_shape(z, t, weight=weight, ignore_index=ignore_index, **attrs)
    return _loss_shape(z, t, **attrs)


def _softmax_loss_batch(shapes, batched, **attrs) -> Lift:
    """Class labels (t one axis short of z) by their own rule; probabilities as the other losses."""
    z, t = ranks(shapes)
    return (_labels_batch if t == z - 1 else losses)(shapes, batched, **attrs)


def _logits_and_targets(z, t, **attrs) -> str:
    """The dtype rule: z floats; t probabilities (floats) or class labels (int64)."""
    if t != "int64" and not t.startswith("float"):
        raise DTypeError(f"t holds {t} values: give probabilities (floats) or class labels (int64)")
    return FLOATS(z) if t == "int64" else FLOATS(z, t)


def _onnx_softmax_cross_entropy(e, inputs: list, out: str, a: dict) -> str:
    """SoftmaxCrossEntropyLoss for class labels; −Σ t·LogSoftmax(z) for probabilities."""
    if e.ranks[1] == e.ranks[0] - 1:
        return onnx_labels(e, "SoftmaxCrossEntropyLoss", inputs, out, a, 1 / math.log(a["base"]))
    return onnx_loss(e, e.node("LogSoftmax", [inputs[0]], axis=a["axis"]), inputs[1], out, a)


def _softmax_cross_entropy_jvp_z(dz, out, z, t, *, base, axis, reduction, batch_dims, weight, ignore_index):
    """The loss is linear in log p = log_softmax(z): the loss of log p's tangent, from the saved softmax."""
    return _softmax_loss(_log_softmax_jvp(dz, out[0], axis), t, base, axis, reduction, batch_dims, weight,
                         ignore_index)


def _softmax_cross_entropy_jvp_t(dt, out, z, t, *, base, axis, reduction, batch_dims, weight, ignore_index):
    """Probability targets (labels have no tangent): the loss of the saved log p against dt."""
    return _cross_entropy_of_log(out[1], dt, base, axis, reduction, batch_dims)


# t one axis short of z holds class labels, so these probability targets of lower rank are two axes short
SOFT_TARGET_EXAMPLES = [(shapes, attrs) for shapes, attrs in LOSS_EXAMPLES if len(shapes[1]) != len(shapes[0]) - 1] + [
    ex((2, 2, 3), (3,), batch_dims=1, reduction="sum"), ex((3, 2, 2), (2,), axis=0)]

register_op("softmax_cross_entropy", _softmax_cross_entropy,  # `out` is saved: (softmax, log-softmax, Σ t)
            ("unbroadcast(_loss_grad(g, z, t, axis, reduction, -1 / math.log(base), batch_dims)"
             " * (t - out[0] * out[2]), z.shape) if out[2] is not None"
             " else _labels_vjp(g, z, t, weight, ignore_index, -1 / math.log(base), axis, reduction, batch_dims,"
             " out[0])",
             "_fit(_loss_grad(g, z, t, axis, reduction, -1 / math.log(base), batch_dims) * out[1], t)"),
            jvp=(_softmax_cross_entropy_jvp_z, _softmax_cross_entropy_jvp_t), shape=_softmax_loss_shape,
            batch=_softmax_loss_batch, save=_softmax_cross_entropy_saving,
            dtype=_logits_and_targets, examples=SOFT_TARGET_EXAMPLES, domain=[REAL, PROBABILITY], fault=LABEL_FAULT,
            onnx=_onnx_softmax_cross_entropy,
            torch="z, t: torch_loss(-(t * torch.log_softmax(z, dim=axis)).sum(dim=axis) / math.log(base), reduction, "
                  "batch_dims) if t.is_floating_point() else torch_labels(F.cross_entropy, z, t, weight, ignore_index, "
                  "axis, reduction, batch_dims) / math.log(base)")


# -- binary cross-entropy on logits: one loss per element, no class axis ----------------------------

def _sigmoid(x):
    return np.exp(-np.logaddexp(0, -x))


def _excess(pos_weight, z):
    """p − 1: how much more than a negative a positive target weighs (one weight, or one per class)."""
    return np.asarray(pos_weight, np.result_type(z)) - 1


def _bce_terms(z, t, pos_weight):
    """softplus(z) − z·t = max(z, 0) − z·t + log(1 + e^−|z|) per element, plus (p − 1)·t·softplus(−z) with
    pos_weight p: −p·t·log σ(z) − (1 − t)·log(1 − σ(z)) without overflow."""
    terms = np.logaddexp(0, z) - z * t
    return terms if pos_weight is None else terms + _excess(pos_weight, z) * t * np.logaddexp(0, -z)


def _bce_dz(z, t, pos_weight):
    """∂/∂z of each term: σ(z) − t, less (p − 1)·t·σ(−z) with pos_weight p."""
    dz = _sigmoid(z) - t
    return dz if pos_weight is None else dz - _excess(pos_weight, z) * t * _sigmoid(-z)


def _bce_dt(z, t, pos_weight):
    """∂/∂t of each term: −z, plus (p − 1)·softplus(−z) with pos_weight p."""
    return -z if pos_weight is None else _excess(pos_weight, z) * np.logaddexp(0, -z) - z


def _per_element_grad(g, z, t, reduction, batch_dims):
    """∂L/∂(each element's loss): g lined up with the elements, ÷ their number per loss for a mean."""
    shape = np.broadcast_shapes(np.shape(z), np.shape(t))
    return _spread(g, len(shape), reduction, batch_dims, max(math.prod(shape[batch_dims:]), 1))


def _bce_jvp_z(dz, out, z, t, *, reduction, pos_weight, batch_dims):
    return _reduce(_bce_dz(z, t, pos_weight) * dz, reduction, 1, batch_dims)


def _bce_jvp_t(dt, out, z, t, *, reduction, pos_weight, batch_dims):
    return _reduce(_bce_dt(z, t, pos_weight) * dt, reduction, 1, batch_dims)


def _binary_cross_entropy_with_logits(z, t, *, reduction: str = "mean", pos_weight: float | list[float] | None = None,
                                      batch_dims: int = 0):
    """−t·log σ(z) − (1 − t)·log(1 − σ(z)) per element, computed stably, then reduced (∂/∂z = σ(z) − t).

    pos_weight p (one value, or one per class of the last axis) weighs the positive term: −p·t·log σ(z)."""
    return _reduce(_bce_terms(z, t, pos_weight), reduction, 1, batch_dims)


def _bce_shape(z, t, *, reduction="mean", pos_weight=None, batch_dims=0):
    _check_loss(reduction)
    shape = broadcast_shape(z, t)
    if shape is None:
        return None
    if not 0 <= batch_dims <= len(shape):
        raise ValueError(f"batch_dims must be between 0 and the rank ({len(shape)}), got {batch_dims}")
    if isinstance(pos_weight, (list, tuple)) and (not shape or shape[-1] not in (None, len(pos_weight))):
        raise ShapeError(f"pos_weight needs one value per class, along the last axis of {show_shape(shape)}; "
                         f"got {len(pos_weight)}")
    return shape if reduction == "none" else shape[:batch_dims]


def _per_element_losses(shapes, batched, *, batch_dims, **attrs) -> Lift:
    """Losses without a class axis: the inputs line up as for elementwise ops; one more leading axis is kept."""
    return Lift(elementwise(shapes, batched).expand, {**attrs, "batch_dims": batch_dims + 1})


def _onnx_bce(e, inputs: list, out: str, a: dict) -> str:
    """From primitives: onnxruntime has no Softplus for doubles."""
    z, t = inputs
    tail = e.node("Log", [e.node("Add", [e.const(1.0), e.node("Exp", [e.node("Neg", [e.node("Abs", [z])])])])])
    per = e.node("Sub", [e.node("Add", [e.node("Relu", [z]), tail]), e.node("Mul", [z, t])])  # softplus(z) − z·t
    if a["pos_weight"] is not None:
        softplus_of_minus_z = e.node("Add", [e.node("Relu", [e.node("Neg", [z])]), tail])
        excess = e.node("Mul", [e.const(np.asarray(a["pos_weight"]) - 1), t])
        per = e.node("Add", [per, e.node("Mul", [excess, softplus_of_minus_z])])
    return onnx_reduced(e, per, max(e.ranks), a["reduction"], a["batch_dims"], out)


register_op("binary_cross_entropy_with_logits", _binary_cross_entropy_with_logits,
            ("_fit(_per_element_grad(g, z, t, reduction, batch_dims) * _bce_dz(z, t, pos_weight), z)",
             "_fit(_per_element_grad(g, z, t, reduction, batch_dims) * _bce_dt(z, t, pos_weight), t)"),
            jvp=(_bce_jvp_z, _bce_jvp_t), shape=_bce_shape, batch=_per_element_losses, domain=[REAL, PROBABILITY],
            onnx=_onnx_bce,
            examples=[ex((3,), (3,)), ex((), ()), ex((2, 3), (2, 3), reduction="sum"),
                      ex((2, 3), (2, 3), reduction="none"), ex((2, 3), (3,), pos_weight=2.0),
                      ex((2, 3), (2, 3), pos_weight=[1.0, 0.5, 3.0], batch_dims=1),
                      ex((3,), (2, 3), reduction="sum", pos_weight=0.5)],
            torch="z, t: torch_loss(F.binary_cross_entropy_with_logits(*torch.broadcast_tensors(z, t), "
                  "reduction='none', pos_weight=None if pos_weight is None else z.new_tensor(pos_weight)), "
                  "reduction, batch_dims)")
