"""Parameter initializers, seeded through a numpy Generator.

Fans follow the x @ W convention for a matrix, [fan_in, fan_out], and PyTorch's and ONNX's
kernel layout for higher ranks, [out, in, *kernel]: fan_in = in × kernel size, fan_out =
out × kernel size (a vector's fans are its size).
"""
from __future__ import annotations

import math

import numpy as np

CHUNK = 2**18  # values drawn at a time: a parameter costs its own memory, not twice that in float64 first


def _fans(shape) -> tuple[int, int]:
    if len(shape) <= 2:
        return (shape[0] if shape else 1) or 1, (shape[-1] if shape else 1) or 1
    kernel = math.prod(shape[2:])
    return shape[1] * kernel or 1, shape[0] * kernel or 1


def _glorot_limit(shape) -> float:
    fan_in, fan_out = _fans(shape)
    return math.sqrt(6 / (fan_in + fan_out))


def _uniform(low: float, high: float):
    return lambda rng, n: rng.uniform(low, high, n)


def _normal(mean: float, std: float):
    return lambda rng, n: rng.normal(mean, std, n)


def _fill(value: float):
    return lambda rng, n: np.full(n, value)


def _orthogonal(shape):
    """A (semi-)orthogonal matrix of shape [shape[0], rest] (Saxe et al.), served in the order initialize asks:
    the QR decomposition of a Gaussian draw, signs fixed so the result is uniformly distributed."""
    served = {"values": None, "at": 0}

    def draw(rng, n):
        if served["values"] is None:
            rows, cols = shape[0] if shape else 1, math.prod(shape[1:])
            q, r = np.linalg.qr(rng.normal(size=(max(rows, cols), min(rows, cols))))
            q *= np.sign(np.diag(r))
            served["values"] = (q if rows >= cols else q.T).reshape(-1)
        start = served["at"]
        served["at"] += n
        return served["values"][start:start + n]
    return draw


# name -> (shape, settings) -> draw(rng, n): n values in float64, continuing the generator's stream
INITIALIZERS = {
    "zeros": lambda shape: _fill(0.0),
    "ones": lambda shape: _fill(1.0),
    "constant": lambda shape, value=0.0: _fill(float(value)),
    "normal": lambda shape, mean=0.0, std=1.0: _normal(mean, std),
    "uniform": lambda shape, low=-1.0, high=1.0: _uniform(low, high),
    "glorot_uniform": lambda shape: _uniform(-_glorot_limit(shape), _glorot_limit(shape)),
    "glorot_normal": lambda shape: _normal(0.0, _glorot_limit(shape) / math.sqrt(3)),
    "he_uniform": lambda shape: lambda rng, n: rng.uniform(-1, 1, n) * math.sqrt(6 / _fans(shape)[0]),
    "he_normal": lambda shape: _normal(0.0, math.sqrt(2 / _fans(shape)[0])),
    "orthogonal": _orthogonal,
}
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal"}
SETTINGS = {"constant": ("value",), "normal": ("mean", "std"), "uniform": ("low", "high")}


class InitializerError(ValueError):
    """An initializer setting no parameter can be drawn with; the message says which and why."""


def initialize(spec, shape, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Draw a parameter from an initializer spec: a name, or {type: name, ...settings}.

    Drawn in chunks straight into the `dtype` array: the same values as one float64 draw, at the
    memory of the result only. Settings are checked first and the values as they are stored."""
    settings = dict(spec) if isinstance(spec, dict) else {"type": spec}
    name = settings.pop("type")
    name = ALIASES.get(name, name)
    _check(name, settings)
    draw = INITIALIZERS[name](tuple(shape), **settings)
    out = np.empty(tuple(shape), dtype)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK):
        chunk = flat[start:start + CHUNK]
        with np.errstate(over="ignore", invalid="ignore"):
            chunk[...] = draw(rng, chunk.size)
        if not np.isfinite(chunk).all():
            raise InitializerError(f"the settings give values too large for {np.dtype(dtype).name}")
    return out


def _check(name: str, settings: dict) -> None:
    """Refuse what would draw nonsense: unknown or non-finite settings, a reversed range, a negative std."""
    if name not in INITIALIZERS:
        raise InitializerError(f"unknown initializer '{name}'")
    unknown = set(settings) - set(SETTINGS.get(name, ()))
    if unknown:
        allowed = ", ".join(SETTINGS.get(name, ())) or "none"
        raise InitializerError(f"{name} takes no setting {', '.join(sorted(unknown))} (its settings: {allowed})")
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InitializerError(f"setting {key} must be a finite number, got {value!r}")
    if settings.get("low", -1.0) > settings.get("high", 1.0):
        raise InitializerError(f"low ({settings.get('low', -1.0)}) is greater than high ({settings.get('high', 1.0)})")
    if settings.get("std", 1.0) < 0:
        raise InitializerError(f"std must not be negative, got {settings['std']}")
