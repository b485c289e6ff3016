"""Built-in data sets that need no download: each returns {"x": features [N, F], "y": class indices [N]}.

Generated ones are drawn from a fixed seed, so a name always means the same data.
"""
from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

DATA_SEED = 1234


def xor(n: int = 400, noise: float = 0.1) -> dict:
    """The four corners of the unit square, class x1 XOR x2, with Gaussian noise."""
    rng = np.random.default_rng(DATA_SEED)
    corners = rng.integers(0, 2, size=(n, 2))
    return {"x": corners + rng.normal(0, noise, size=(n, 2)), "y": corners[:, 0] ^ corners[:, 1]}


def moons(n: int = 1000, noise: float = 0.1) -> dict:
    """Two interleaving half circles."""
    rng = np.random.default_rng(DATA_SEED)
    y = rng.integers(0, 2, size=n)
    t = rng.uniform(0, np.pi, size=n)
    x = np.where(y[:, None] == 0, np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)])
    return {"x": x + rng.normal(0, noise, size=(n, 2)), "y": y}


def spirals(n: int = 1500, classes: int = 3, turns: float = 1.75, noise: float = 0.04) -> dict:
    """Interleaved spiral arms, one per class: not linearly separable, wants depth and a good optimizer."""
    rng = np.random.default_rng(DATA_SEED)
    y = np.arange(n) % classes
    r = rng.uniform(0.05, 1, size=n)
    angle = 2 * np.pi * (turns * r + y / classes)
    x = np.c_[r * np.cos(angle), r * np.sin(angle)]
    return {"x": x + rng.normal(0, noise * r[:, None], size=(n, 2)), "y": y}


def digits() -> dict:
    """8×8 handwritten digits (1,797 samples), pixels scaled from 0..16 to 0..1."""
    raw = (resources.files("graphdef") / "training" / "data" / "digits.csv.gz").read_bytes()
    table = np.loadtxt(gzip.decompress(raw).decode().splitlines(), delimiter=",")
    return {"x": table[:, :64] / 16.0, "y": table[:, 64].astype(np.int64)}


BUILTIN = {"xor": xor, "moons": moons, "spirals": spirals, "digits": digits}
