"""Built-in data sets that need no download: each returns {"x": features [N, ...], "y": class indices [N]}.

Generated ones are drawn from a fixed seed, so a name always means the same data. The
sequence tasks give integer token ids (or bits), for embeddings, attention and recurrence.
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


def majority(n: int = 3000, length: int = 16, vocabulary: int = 8) -> dict:
    """Sequences of token ids; the class is the token that occurs most (at least twice more than any other)."""
    rng = np.random.default_rng(DATA_SEED)
    y = rng.integers(vocabulary, size=n)
    x = np.empty((n, length), dtype=np.int64)
    for i, winner in enumerate(y):
        count = rng.integers(4, 9)
        others = [t for t in range(vocabulary) if t != winner]
        rest = rng.choice(np.repeat(others, count - 2), size=length - count, replace=False)
        x[i] = rng.permutation(np.r_[np.full(count, winner), rest])
    return {"x": x, "y": y}


def digit_sum(n: int = 4000, length: int = 8, base: int = 4) -> dict:
    """Sequences of digits 0..base-1 (token ids); the class is their sum, 0..length·(base−1)."""
    rng = np.random.default_rng(DATA_SEED)
    x = rng.integers(0, base, size=(n, length))
    return {"x": x, "y": x.sum(axis=1)}


WORDS = {"positive": "good great fine happy love nice best superb enjoy glad".split(),
         "negative": "bad awful poor sad hate nasty worst dull boring angry".split(),
         "neutral": ("the a movie film plot actor it was is and of to this that with story scene music "
                     "end start time very quite really so but just one".split())}
VOCABULARY = ["<pad>"] + WORDS["positive"] + WORDS["negative"] + WORDS["neutral"]


def sentiment(n: int = 2000, length: int = 12) -> dict:
    """Short 'reviews' as token ids into VOCABULARY: more positive than negative words is class 1.

    Each review has one to four words of its class's polarity, fewer of the other, and neutral
    words around them, shuffled: a bag of words decides it, which embedding + mean pooling learns."""
    rng = np.random.default_rng(DATA_SEED)
    ids = {kind: np.array([VOCABULARY.index(w) for w in words]) for kind, words in WORDS.items()}
    y = rng.integers(0, 2, size=n)
    x = np.empty((n, length), dtype=np.int64)
    for i, label in enumerate(y):
        strong = rng.integers(1, 5)
        weak = rng.integers(0, strong)
        mine, theirs = (ids["positive"], ids["negative"]) if label else (ids["negative"], ids["positive"])
        words = np.r_[rng.choice(mine, strong), rng.choice(theirs, weak), rng.choice(ids["neutral"], length - strong - weak)]
        x[i] = rng.permutation(words)
    return {"x": x, "y": y}


BUILTIN = {"xor": xor, "moons": moons, "spirals": spirals, "digits": digits, "majority": majority, "digit_sum": digit_sum,
           "sentiment": sentiment}
