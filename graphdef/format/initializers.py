"""Parameter initializers, seeded through a numpy Generator.

Fans follow the x @ W convention: a weight of shape [fan_in, fan_out]
(for other ranks, fan_out is the last dimension and fan_in the product of the rest).
"""
from __future__ import annotations

import math

import numpy as np


def _fans(shape) -> tuple[int, int]:
    if not shape:
        return 1, 1
    return (math.prod(shape[:-1]) if len(shape) > 1 else shape[0]) or 1, shape[-1] or 1


def _glorot_limit(shape) -> float:
    fan_in, fan_out = _fans(shape)
    return math.sqrt(6 / (fan_in + fan_out))


INITIALIZERS = {
    "zeros": lambda shape, rng: np.zeros(shape),
    "ones": lambda shape, rng: np.ones(shape),
    "constant": lambda shape, rng, value=0.0: np.full(shape, float(value)),
    "normal": lambda shape, rng, mean=0.0, std=1.0: rng.normal(mean, std, shape),
    "uniform": lambda shape, rng, low=-1.0, high=1.0: rng.uniform(low, high, shape),
    "glorot_uniform": lambda shape, rng: rng.uniform(-_glorot_limit(shape), _glorot_limit(shape), shape),
    "glorot_normal": lambda shape, rng: rng.normal(0.0, _glorot_limit(shape) / math.sqrt(3), shape),
    "he_uniform": lambda shape, rng: rng.uniform(-1, 1, shape) * math.sqrt(6 / _fans(shape)[0]),
    "he_normal": lambda shape, rng: rng.normal(0.0, math.sqrt(2 / _fans(shape)[0]), shape),
}
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal"}


def initialize(spec, shape, rng: np.random.Generator) -> np.ndarray:
    """Draw a parameter from an initializer spec: a name, or {type: name, ...settings}."""
    settings = dict(spec) if isinstance(spec, dict) else {"type": spec}
    name = settings.pop("type")
    return np.asarray(INITIALIZERS[ALIASES.get(name, name)](tuple(shape), rng, **settings), dtype=np.float64)
