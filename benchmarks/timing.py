"""Timing shared by the benchmarks: implementations interleaved in one process, medians and paired ratios.

The machine is shared and noisy: a workload's sides take turns, so noise hits them alike,
and what is reported is the median of ratios of close-in-time samples.
"""
from __future__ import annotations

import statistics
import time

import numpy as np


def per_call(fn, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved(fns: dict, repeats: int, number: int) -> dict:
    """Seconds per call of each function in each turn; turns interleave them so that machine noise hits all alike.

    The first two (graphdef and numpy) swap places every turn and the others (PyTorch) run
    last, so each of the two follows PyTorch equally often: its threads keep spinning for a
    while after it returns, which slows whatever runs next.
    """
    for fn in fns.values():
        fn()  # warm up: compile plans, fill caches
    samples, names = {name: [] for name in fns}, list(fns)
    for turn in range(repeats):
        for name in (names[:2] if turn % 2 == 0 else names[1::-1]) + names[2:]:
            samples[name].append(per_call(fns[name], number))
    return samples


def agree(name: str, ours: dict, theirs: dict, rtol: float):
    for k in theirs:
        np.testing.assert_allclose(np.asarray(ours[k], dtype=np.float64), np.asarray(theirs[k], dtype=np.float64),
                                   rtol=rtol, atol=rtol * 1e-3, err_msg=f"{name}: gradient of {k} differs")


def row(label: str, samples: dict, target: float) -> dict:
    """Median times, and the median of the ratios graphdef / numpy over pairs of consecutive turns.

    Ratios of close-in-time samples are robust to drifting load; taking turns in pairs, in
    which each side ran first once (see interleaved), cancels what running first costs.
    """
    times = {k: statistics.median(v) for k, v in samples.items()}
    g, n = samples["graphdef"], samples["numpy"]
    ratio = statistics.median(sum(g[i:i + 2]) / sum(n[i:i + 2]) for i in range(0, max(len(g) - 1, 1), 2))
    return {"workload": label, **times, "ratio": ratio, "target": target, "ok": ratio <= target, "unit": "s"}


