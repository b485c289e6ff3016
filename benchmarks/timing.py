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




def show(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.2f} ms"


def table(rows: list) -> None:
    """Print benchmark rows: times, the ratio to the reference with its quartiles, the target and the verdict."""
    print("reference: hand-written numpy unless the row names another; ratio: graphdef / reference, "
          "median [quartiles] of paired turns")
    print(f"{'workload':<82} {'graphdef':>12} {'reference':>12} {'pytorch':>12} {'ratio':>18} {'target':>7}")
    for r in rows:
        reference = r.get("reference", "numpy")
        times = "".join(show(r[k]) if r.get(k) is not None else f"{'':>12}" for k in ("graphdef", reference, "pytorch"))
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f} [{r['spread'][0]:.2f}–{r['spread'][1]:.2f}]"
        target = "" if r["target"] is None else f"≤{r['target']}" + ("s" if r["ratio"] is None else "×")
        verdict = "" if r["target"] is None else "ok" if r["ok"] else "MISSED"
        print(f"{r['workload']:<82} {times:} {ratio:>18} {target:>7}  {verdict}")
        if "peak memory ratio" in r:
            ok = r["peak memory ratio"] <= r["memory target"]
            print(f"{'   peak memory, graphdef / numpy':<82} {'':>36} {r['peak memory ratio']:>18.2f} "
                  f"{'≤' + str(r['memory target']) + '×':>7}  {'ok' if ok else 'MISSED'}")
