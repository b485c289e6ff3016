"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer updates parameters in place. Its state is a flat dict of arrays
("param/slot" -> array, plus "step"), so a checkpoint can store it exactly.

The rules are written once for any array kind with numpy's arithmetic: numpy arrays (the numpy
backend) and torch tensors (the torch backend, updated in place on their device). Only three
operations differ between the kinds (a square root, new zeros, a conversion); the helpers below
pick the array's own, so both backends run the same rule step for step, by construction. The
state a checkpoint stores is always numpy (`arrays`, `load`).
"""
from __future__ import annotations

import functools
import math

import numpy as np

DEFAULTS = {
    "sgd": {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "momentum": {"lr": 0.01, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
    "nesterov": {"lr": 0.01, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
    "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
}


def _sgd(p, g, slot, lr, t, *, momentum, nesterov, weight_decay):
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        v = slot("velocity")
        v *= momentum
        v += g
        g = g + momentum * v if nesterov else v
    p -= lr * g


def _adam(p, g, slot, lr, t, *, beta1, beta2, eps, weight_decay, decoupled=False):
    if weight_decay and decoupled:
        p -= lr * weight_decay * p
    elif weight_decay:
        g = g + weight_decay * p
    m, v = slot("m"), slot("v")
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    denom = _sqrt(v)  # bias corrections folded into scalars, as PyTorch does: two array operations fewer
    denom /= math.sqrt(1 - beta2 ** t)
    denom += eps
    p -= (lr / (1 - beta1 ** t)) * m / denom


def _sqrt(x):
    """The square root in the array's own library (a tensor's method; numpy's function for arrays)."""
    return x.sqrt() if hasattr(x, "sqrt") else np.sqrt(x)


def _zeros_like(x):
    """Zeros of x's shape, dtype and kind (a tensor on x's device)."""
    return x.new_zeros(x.shape) if hasattr(x, "new_zeros") else np.zeros_like(x)


def to_numpy(x) -> np.ndarray:
    """A numpy copy of an array or a tensor (on any device): what checkpoints store."""
    return x.detach().cpu().numpy().copy() if hasattr(x, "detach") else np.array(x)


def _as_kind(value: np.ndarray, like):
    """A saved (numpy) value as an array of `like`'s kind: a tensor on its device, or a numpy copy."""
    return like.new_tensor(value) if hasattr(like, "new_tensor") else np.array(value, dtype=like.dtype)


RULES = {"sgd": _sgd, "momentum": _sgd, "nesterov": _sgd, "adam": _adam,
         "adamw": lambda *a, **k: _adam(*a, decoupled=True, **k)}


class Optimizer:
    def __init__(self, name: str, **settings):
        self.name, self.settings = name, {**DEFAULTS[name], **settings}
        self.rule = functools.partial(RULES[name], **{k: v for k, v in self.settings.items() if k != "lr"})
        self.state = {"step": np.array(0)}
        self.slots = {}  # parameter name -> its slot accessor, made once

    @property
    def lr(self) -> float:
        return self.settings["lr"]

    def step(self, params: dict, grads: dict, lr: float) -> None:
        """One update of every parameter with its gradient, at learning rate lr."""
        t = int(self.state["step"]) + 1
        self.state["step"] = np.array(t)
        for name, p in params.items():
            slot = self.slots.get(name) or self.slots.setdefault(name, functools.partial(self._slot, name, p))
            self.rule(p, grads[name], slot, lr, t)

    def _slot(self, name: str, like: np.ndarray, slot: str) -> np.ndarray:
        key = f"{name}/{slot}"
        if key not in self.state:  # (not setdefault: that would make a zeros array on every step)
            self.state[key] = _zeros_like(like)
        return self.state[key]

    def arrays(self) -> dict:
        """The state as numpy arrays (what a checkpoint stores, whatever the backend)."""
        return {k: to_numpy(v) for k, v in self.state.items()}

    def load(self, arrays: dict, params: dict) -> None:
        """Restore a checkpoint's state, each slot as an array of its parameter's kind and device."""
        self.state = {k: v if k == "step" else _as_kind(v, params[k.rsplit("/", 1)[0]]) for k, v in arrays.items()}
        self.slots = {}


def scheduled_lr(base: float, epoch: int, epochs: int, schedule: dict) -> float:
    """The learning rate for a (0-based) epoch."""
    warmup = schedule.get("warmup_epochs", 0)
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    name, e, span = schedule.get("name", "constant"), epoch - warmup, max(epochs - warmup, 1)
    if name == "step":
        return base * schedule.get("gamma", 0.1) ** (e // schedule.get("step_size", 10))
    if name == "cosine":
        low = schedule.get("min_lr", 0.0)
        return low + (base - low) * (1 + math.cos(math.pi * e / span)) / 2
    return base


def clip_by_norm(grads: dict, max_norm: float | None) -> dict:
    """The gradients scaled so that their global L2 norm is at most max_norm."""
    if not max_norm:
        return grads
    norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))  # any array kind (a tensor on a GPU)
    if norm <= max_norm:
        return grads
    return {k: g * (max_norm / norm) for k, g in grads.items()}
