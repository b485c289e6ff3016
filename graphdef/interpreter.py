"""The interpreter: a forward visitor and a backward visitor applying the registered op rules.

Both walk one flat list of steps (the graph in topological order, compiled once):
forward fills an environment dict vertex -> value; backward walks the list in reverse,
accumulating ∂of/∂vertex so that every product along the paths is computed once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ops import Op, unbroadcast


@dataclass(frozen=True)
class Step:
    name: str
    op: Op
    args: tuple[str, ...]
    attrs: dict


class StepError(Exception):
    """An op rule failed at run time; the model turns this into a located GraphDefError."""

    def __init__(self, step: Step, cause: Exception):
        super().__init__(f"{cause}")
        self.step, self.cause = step, cause


def forward(steps, env: dict) -> dict:
    """Evaluate each step on the values of its arguments."""
    step = None
    try:
        for step in steps:
            env[step.name] = step.op.forward(*[env[a] for a in step.args], **step.attrs)
    except (ValueError, TypeError, ArithmeticError, IndexError) as e:
        raise StepError(step, e) from e
    return env


def backward(steps, env: dict, of: str, wanted) -> dict:
    """∂of/∂v for each vertex v in `wanted` (a seed of ones: the gradient of sum(of))."""
    grads = {of: np.ones_like(env[of])}
    step = None
    try:
        for step in reversed(steps):
            g = grads.get(step.name)
            if g is None:
                continue
            local = step.op.backward(g, env[step.name], *[env[a] for a in step.args], **step.attrs)
            for a, ga in zip(step.args, local):
                if ga is not None and a in wanted:
                    ga = unbroadcast(np.asarray(ga), np.shape(env[a]))
                    grads[a] = grads[a] + ga if a in grads else ga
    except (ValueError, TypeError, ArithmeticError, IndexError) as e:
        raise StepError(step, e) from e
    return grads
