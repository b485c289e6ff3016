"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer updates parameters in place. Its state is a flat dict of arrays
("param/slot" -> array, plus "step"), so a checkpoint can store it exactly.
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
    denom = np.sqrt(v)  # bias corrections folded into scalars, as PyTorch does: two array operations fewer
    denom /= math.sqrt(1 - beta2 ** t)
    denom += eps
    p -= (lr / (1 - beta1 ** t)) * m / denom


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
            self.state[key] = np.zeros_like(like)
        return self.state[key]


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
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm <= max_norm:
        return grads
    return {k: g * (max_norm / norm) for k, g in grads.items()}
