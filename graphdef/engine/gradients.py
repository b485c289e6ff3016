"""The gradient methods other than reverse mode, and the check for NaN and infinity.

reverse (backpropagation) is the model's own; `forward` pushes tangents forward, one pass
per input element (cheap for few inputs, the lecture's counterpoint); `paths` sums
edge-derivative products over every path (the lecture's definition, scalar graphs only);
`numeric` takes central differences, the oracle the others are tested against.
"""
from __future__ import annotations

import numpy as np

from ..errors import GraphDefError, Problem
from . import interpret, paths
from .inputs import batched_inputs

METHODS = ("reverse", "forward", "paths", "numeric")
NUMERIC_EPS = 1e-6
FORWARD_LIMIT = 100_000  # forward-mode passes (one per input element) beyond which it refuses


def check_method(method: str) -> None:
    if method not in METHODS:
        raise GraphDefError(Problem(f"unknown gradient method '{method}'", hint=f"use one of: {', '.join(METHODS)}"))


def by_paths(model, env: dict, values: dict, of: str, wrt) -> dict:
    steps, wanted = model.backward_plan(of, tuple(wrt))
    return paths.path_gradients(model.graph.nx, steps, values, of, wrt, wanted)


def by_forward(model, values: dict, of: str, wrt) -> dict:
    """∂sum(of)/∂w by forward mode: a pass per element of each w, seeded with a one there, through the
    steps between wrt and of. `values`: a reference forward run (interpret.forward)."""
    passes = sum(int(np.size(values[w])) for w in wrt)
    if passes > FORWARD_LIMIT:
        raise GraphDefError(Problem(f"forward mode needs one pass per input element: {passes:,} passes here "
                                    f"(limit {FORWARD_LIMIT:,})",
                                    hint="use --method reverse, one pass for all of them (or fewer --wrt)"))
    steps, _ = model.backward_plan(of, tuple(wrt))
    batched, context = batched_inputs(model, values), model.context(model.training)
    grads = {}
    for w in wrt:
        x = np.asarray(values[w])
        g = np.zeros(x.shape, dtype=x.dtype if x.dtype.kind == "f" else model.dtype)
        for i in np.ndindex(x.shape):
            seed = np.zeros_like(g)
            seed[i] = 1
            tangents = model._guard(lambda: interpret.push_forward(model.graph, values, {w: seed}, steps,
                                                                   batched, context))
            g[i] = np.sum(tangents[of]) if of in tangents else 0
        grads[w] = g
    return grads


def numeric(model, env: dict, values: dict, of: str, wrt) -> dict:
    """Central differences of sum(of), one coordinate at a time, in float64 (integers left as they are).
    Every evaluation draws the same random numbers (dropout's masks), so the differences see one function."""
    env = {k: np.array(v, dtype=np.float64) if np.asarray(v).dtype.kind == "f" else v for k, v in env.items()}
    draws = model.rng.bit_generator.state

    def total():
        model.reseed(state=draws)
        return float(np.sum(model.run_unchecked(dict(env), outputs=(of,))[of]))

    grads = {}
    for w in wrt:
        x, g = env[w], np.zeros_like(env[w])
        for i in np.ndindex(x.shape):
            x[i] += NUMERIC_EPS
            up = total()
            x[i] -= 2 * NUMERIC_EPS
            down = total()
            x[i] += NUMERIC_EPS
            g[i] = (up - down) / (2 * NUMERIC_EPS)
        grads[w] = g.astype(model.dtype)
    return grads


BY_METHOD = {"paths": by_paths, "numeric": numeric}


def check_numerics(model, values: dict, grads: dict | None = None, of: str | None = None) -> None:
    """Raise at the first vertex (in run order) whose value is NaN or infinite, naming its op and the
    ranges of its inputs; then likewise for gradients."""
    for step in model.steps:
        value = values.get(step.name)
        if value is not None and not np.all(np.isfinite(value)):
            ranges = ", ".join(f"{a} in {_range(values[a])}" for a in step.inputs if a in values)
            raise GraphDefError(model.problem(step.name, f"node '{step.name}' ({step.op.name}) produced "
                                              f"{_kind_of(value)} from {ranges}", step.op.fault))
    for name, g in (grads or {}).items():
        if not np.all(np.isfinite(g)):
            raise GraphDefError(model.problem(name, f"the gradient ∂{of}/∂{name} is {_kind_of(g)}",
                                              "a rule divided by zero or overflowed on the way back"))


def _range(value) -> str:
    value = np.asarray(value)
    if not value.size or np.all(np.isnan(value)):
        return "[nan]"
    return f"[{np.nanmin(value):.4g}, {np.nanmax(value):.4g}]"


def _kind_of(value) -> str:
    return "NaN" if np.any(np.isnan(np.asarray(value))) else "infinity"
