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


def interleaved(fns: dict, repeats: int, number: int, warm: bool = True) -> dict:
    """Seconds per call of each function in each turn; turns interleave them so that machine noise hits all alike.

    The first two (graphdef and numpy) swap places every turn and the others (PyTorch) run
    last, so each of the two follows PyTorch equally often: its threads keep spinning for a
    while after it returns, which slows whatever runs next. `warm`: call each once first (compile
    plans, fill caches); off for what is slow and always cold (loading a big file).
    """
    for fn in fns.values() if warm else ():
        fn()
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
    """Median times, and the median of the ratios graphdef / reference over pairs of consecutive turns.

    The reference is the second entry of `samples` (hand-written numpy, or PyYAML's parser for
    a load). Ratios of close-in-time samples are robust to drifting load; taking turns in
    pairs, in which each side ran first once (see interleaved), cancels what running first costs.
    """
    times = {k: statistics.median(v) for k, v in samples.items()}
    reference = list(samples)[1]
    g, n = samples["graphdef"], samples[reference]
    ratios = sorted(sum(g[i:i + 2]) / sum(n[i:i + 2]) for i in range(0, max(len(g) - 1, 1), 2))
    ratio = statistics.median(ratios)
    spread = [ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]]  # quartiles of the pairs' ratios
    return {"workload": label, **times, "reference": reference, "ratio": ratio, "spread": spread,
            "target": target, "ok": ratio <= target, "unit": "s"}


