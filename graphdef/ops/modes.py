"""Ops that behave differently in training and in inference: dropout, batch normalization.

They take the engine's `training` flag (and dropout its seeded generator `rng`), so the same
graph serves both modes: `graphdef train` runs training steps, every other command infers.
Batch norm's running statistics are state inputs: its `update` rule gives their new values
after each training step, and inference normalizes with them, so a sample gets the same
prediction alone as inside any batch.
"""
import numpy as np

from .batching import PER_SAMPLE, Lift, elementwise, ranks
from .registry import POSITIVE, REAL, ShapeError, broadcast_shape, ex, positive, register_op


# -- dropout --------------------------------------------------------------------------------

def _keep(rng, shape: tuple, p: float, dtype=np.float64) -> np.ndarray:
    """The inverted-dropout scale: 1/(1−p) where an element is kept (probability 1−p), else 0; in x's
    dtype, so a float32 model stays float32 through dropout and its gradient."""
    dtype = np.dtype(dtype)
    return np.where(rng.random(shape) >= p, dtype.type(1 / (1 - p)), dtype.type(0))


def _dropout_scaled(x, *, p: float = 0.5, training, rng):
    """The output, and the scale it applied (what the backward rule multiplies by)."""
    if not training or p == 0:
        return x, 1.0
    scale = _keep(rng, np.shape(x), p, np.result_type(x, np.float32))
    return x * scale, scale


def _dropout(x, *, p: float = 0.5, training, rng):
    """In training, x with each element zeroed with probability p, the rest scaled by 1/(1−p); else x.

    ∂/∂x is the same mask and scale, which `save` keeps from the forward pass."""
    return _dropout_scaled(x, p=p, training=training, rng=rng)[0]


def _torch_dropout(torch, x, p: float, training: bool, rng):
    """The PyTorch lowering: the mask drawn from the same numpy generator as the numpy forward (the same draws
    for the same seed), in x's dtype, moved to x's device, so the lowering runs on a GPU and in float32."""
    if not training or p == 0:
        return x
    dtype = np.dtype(str(x.dtype).removeprefix("torch."))
    return x * torch.from_numpy(_keep(rng, tuple(x.shape), p, dtype)).to(x.device)


def _probability(shape, *, p):
    if not 0 <= p < 1:
        raise ValueError(f"p must be in [0, 1), got {p}")
    return shape


register_op("dropout", _dropout, "g * out", save=_dropout_scaled, shape=_probability, batch=elementwise,
            examples=[ex((4,)), ex((2, 3), p=0.3, training=True), ex((3,), p=0.0, training=True),
                      ex((2, 2), p=0.9, training=True)],
            onnx=lambda e, i, o, a: e.node("Identity", i, o),  # an exported graph is an inference graph
            torch="x: _torch_dropout(torch, x, p, training, rng)")


# -- batch normalization --------------------------------------------------------------------
# x is [C, *spatial] per sample, after `batch_dims` leading sample axes (the batching rule adds
# one): statistics are over every axis but the channel axis.

def _channels(x, batch_dims: int):
    """The statistics' axes, and the shape that lines a [C] vector up with x's channel axis."""
    axes = tuple(a for a in range(np.ndim(x)) if a != batch_dims)
    return axes, (-1,) + (1,) * (np.ndim(x) - batch_dims - 1)


def _batch_norm_saving(x, weight, bias, running_mean, running_var, *, momentum: float = 0.1, eps: float = 1e-5,
                       batch_dims: int = 0, training):
    """The output, and (x̂, 1/σ) for the backward rules."""
    axes, line = _channels(x, batch_dims)
    if training:  # centred once, for the variance and the output (x.var would centre x again)
        normalized = x - x.mean(axis=axes, keepdims=True)
        var = np.mean(normalized * normalized, axis=axes, keepdims=True)
    else:
        normalized, var = x - np.reshape(running_mean, line), np.reshape(running_var, line)
    inv_std = 1 / np.sqrt(var + eps)
    normalized *= inv_std
    return normalized * np.reshape(weight, line) + np.reshape(bias, line), (normalized, inv_std)


def _batch_norm(x, weight, bias, running_mean, running_var, *, momentum: float = 0.1, eps: float = 1e-5,
                batch_dims: int = 0, training):
    """weight·(x − μ)/√(σ² + eps) + bias per channel (a sample's axis 0), μ and σ² the batch's or the running ones.

    Training normalizes with the batch's statistics (and ∂/∂x flows through them); inference with
    the running statistics, which `update` moves after each training step."""
    return _batch_norm_saving(x, weight, bias, running_mean, running_var, momentum=momentum, eps=eps,
                              batch_dims=batch_dims, training=training)[0]


def _through_batch_norm(v, out, axes: tuple, training: bool):
    """v times x̂'s Jacobian in x, from the saved (x̂, 1/σ): v/σ in inference; in training, where μ and σ are the
    batch's, (v − mean v − x̂·mean(v·x̂))/σ over the statistics' axes. The Jacobian is symmetric: J·v and Jᵀ·v alike."""
    normalized, inv_std = out
    if not training:
        return v * inv_std
    return inv_std * (v - v.mean(axis=axes, keepdims=True)
                      - normalized * (v * normalized).mean(axis=axes, keepdims=True))


def _batch_norm_vjp_x(g, out, x, weight, bias, running_mean, running_var, *, batch_dims, training, **_):
    axes, line = _channels(x, batch_dims)
    return _through_batch_norm(g * np.reshape(weight, line), out, axes, training)


def _batch_norm_jvp_x(t, out, x, weight, bias, running_mean, running_var, *, batch_dims, training, **_):
    axes, line = _channels(x, batch_dims)
    return _through_batch_norm(t, out, axes, training) * np.reshape(weight, line)


# The running statistics are read in inference only (training takes the batch's): there the output moves by
# ∂y/∂μ = −weight/σ and ∂y/∂σ² = −½·weight·x̂/(σ² + eps) per unit of a channel's statistic.

def _by_running_mean(out, x, weight, batch_dims):
    return -np.reshape(weight, _channels(x, batch_dims)[1]) * out[1]


def _by_running_var(out, x, weight, batch_dims):
    normalized, inv_std = out
    return -0.5 * np.reshape(weight, _channels(x, batch_dims)[1]) * normalized * inv_std ** 2


def _running_rules(partial, position: int):
    """The vjp and jvp rules of the running statistic at input `position`, whose effect on the output per unit
    is `partial` (zero in training)."""
    def vjp(g, out, *inputs, batch_dims, training, **_):
        if training:
            return np.zeros_like(inputs[position])
        return (g * partial(out, inputs[0], inputs[1], batch_dims)).sum(axis=_channels(inputs[0], batch_dims)[0])

    def jvp(t, out, *inputs, batch_dims, training, **_):
        if training:
            return np.zeros_like(out[0])
        return np.reshape(t, _channels(inputs[0], batch_dims)[1]) * partial(out, inputs[0], inputs[1], batch_dims)
    return vjp, jvp


_batch_norm_vjp_mean, _batch_norm_jvp_mean = _running_rules(_by_running_mean, 3)
_batch_norm_vjp_var, _batch_norm_jvp_var = _running_rules(_by_running_var, 4)


def _batch_norm_update(x, weight, bias, running_mean, running_var, *, momentum, eps, batch_dims, training):
    """The running statistics after a training step: (1 − momentum)·old + momentum·batch (unbiased
    variance, as PyTorch)."""
    axes, _ = _channels(x, batch_dims)
    n = np.prod([np.shape(x)[a] for a in axes])
    mean, var = x.mean(axis=axes), x.var(axis=axes) * (n / max(n - 1, 1))
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def _batch_norm_shape(x, weight, bias, mean, var, *, momentum, eps, batch_dims):
    if x is None:
        return None
    if len(x) < batch_dims + 1:
        raise ShapeError(f"batch_norm needs an input with a channel axis after {batch_dims} sample axes, "
                         f"got rank {len(x)}")
    channels = x[batch_dims]
    for name, shape in (("weight", weight), ("bias", bias), ("running_mean", mean), ("running_var", var)):
        if shape is not None and (len(shape) != 1 or None not in (shape[0], channels) and shape[0] != channels):
            raise ShapeError(f"batch_norm: {name} must be [{channels}] (one value per channel), "
                             f"got {list(shape)}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    positive(eps=eps)
    return broadcast_shape(x)


def _batch_norm_batch(shapes, batched, **attrs) -> Lift:
    """A batch of x: one more sample axis, over which training statistics are taken too."""
    ranks(shapes)
    if batched[1:] != (False,) * 4:
        return PER_SAMPLE
    return Lift(((),) * 5, {**attrs, "batch_dims": attrs["batch_dims"] + 1})


def _torch_batch_norm(F, x, weight, bias, mean, var, training, momentum, eps, batch_dims):
    """F.batch_norm wants one batch axis first (a lone sample is a batch of one, several sample axes are
    flattened into one); in inference, the formula itself, since PyTorch does not differentiate the running
    statistics."""
    if not training:
        line = (-1,) + (1,) * (x.ndim - batch_dims - 1)
        return (x - mean.reshape(line)) / (var.reshape(line) + eps).sqrt() * weight.reshape(line) + bias.reshape(line)
    samples = x.reshape(-1, *x.shape[batch_dims:])  # the sample axes as one (F.batch_norm's channel axis is 1)
    y = F.batch_norm(samples, mean.detach().clone(), var.detach().clone(), weight, bias, training, momentum, eps)
    return y.reshape(x.shape)


def _torch_batch_norm_update(torch, x, mean, var, momentum, batch_dims):
    """_batch_norm_update on tensors, on their device: the batch's statistics per channel (unbiased variance)."""
    samples = x.detach().reshape(-1, *x.shape[batch_dims:])  # the channel axis is 1
    axes = (0, *range(2, samples.ndim))
    n = samples.numel() // samples.shape[1]
    batch_var, batch_mean = torch.var_mean(samples, dim=axes, correction=1 if n > 1 else 0)
    return (1 - momentum) * mean + momentum * batch_mean, (1 - momentum) * var + momentum * batch_var


def _onnx_batch_norm(e, inputs, out, attrs):
    """The inference form, written out: ONNX BatchNormalization holds eps as a float32, which would
    change the results of a float64 model."""
    x, weight, bias, mean, var = inputs
    line = e.const([-1] + [1] * (e.ranks[0] - attrs["batch_dims"] - 1), np.int64)
    shaped = [e.node("Reshape", [v, line]) for v in (weight, bias, mean, var)]
    std = e.node("Sqrt", [e.node("Add", [shaped[3], e.const(attrs["eps"])])])
    normalized = e.node("Div", [e.node("Sub", [x, shaped[2]]), std])
    return e.node("Add", [e.node("Mul", [normalized, shaped[0]]), shaped[1]], out)


register_op("batch_norm", _batch_norm,
            (_batch_norm_vjp_x, "(g * out[0]).sum(axis=_channels(x, batch_dims)[0])",
             "g.sum(axis=_channels(x, batch_dims)[0])", _batch_norm_vjp_mean, _batch_norm_vjp_var),
            jvp=(_batch_norm_jvp_x, "np.reshape(t, _channels(x, batch_dims)[1]) * out[0]",
                 "np.reshape(t, _channels(x, batch_dims)[1])", _batch_norm_jvp_mean, _batch_norm_jvp_var),
            save=_batch_norm_saving, update=_batch_norm_update, state=(3, 4), shape=_batch_norm_shape,
            torch_update="x, weight, bias, running_mean, running_var: _torch_batch_norm_update(torch, x, "
                         "running_mean, running_var, momentum, batch_dims)",
            batch=_batch_norm_batch, domain=[REAL, REAL, REAL, REAL, POSITIVE],
            examples=[ex((3, 4, 4), (3,), (3,), (3,), (3,)), ex((2, 5), (2,), (2,), (2,), (2,), training=True),
                      ex((3, 2, 2), (3,), (3,), (3,), (3,), eps=0.1, training=True),
                      ex((4, 3), (3,), (3,), (3,), (3,), batch_dims=1, training=True),
                      ex((4, 3), (3,), (3,), (3,), (3,), batch_dims=1)],
            onnx=_onnx_batch_norm,
            torch="x, weight, bias, running_mean, running_var: _torch_batch_norm(F, x, weight, bias, running_mean, "
                  "running_var, training, momentum, eps, batch_dims)")
