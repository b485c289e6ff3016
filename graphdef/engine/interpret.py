"""The reference interpreter: the specification every compiled plan is tested against.

Forward is an environment dict and a loop over the nodes in order; backward walks the
same nodes in reverse, accumulating ∂of/∂vertex with `+` where a vertex feeds several
others, so every product is computed once. Run it instead of the compiled plans with
GRAPHDEF_REFERENCE=1 (or Model(..., reference=True)) to debug a plan.
"""
from __future__ import annotations

import numpy as np

from .lift import StepError, batched_vertices, call, lift_of, vjp


def forward(graph, env: dict, batched_inputs=frozenset(), steps=None) -> dict:
    """env extended with the value of every node (of `steps`, default all), given its leaves."""
    env, batched = dict(env), batched_vertices(graph, batched_inputs)
    for step in graph.steps if steps is None else steps:
        args = [env[a] for a in step.inputs]
        env[step.name] = _guarded(step, lambda: call(step, lift_of(graph, step, batched), args, _flags(step, batched)))
    return env


def backward(graph, env: dict, of: str, wanted, batched_inputs=frozenset(), seed=None) -> dict:
    """∂of/∂v for every vertex v in `wanted` (the vertices on paths to `of`) that `of` depends on.

    `env` holds every value (see forward). The seed defaults to ones: for a non-scalar
    `of`, the gradient of its sum.
    """
    batched = batched_vertices(graph, batched_inputs)
    grads = {of: np.ones_like(env[of]) if seed is None else seed}
    for step in reversed(graph.steps):
        if step.name not in grads or step.name not in wanted:
            continue
        lift, args = lift_of(graph, step, batched), [env[a] for a in step.inputs]
        for k, arg in enumerate(step.inputs):
            if arg in wanted and step.op.backward[k] is not None:
                d = _guarded(step, lambda: vjp(step, lift, k, grads[step.name], env[step.name], args,
                                               _flags(step, batched)))
                grads[arg] = grads[arg] + d if arg in grads else d
    return grads


def _flags(step, batched) -> tuple:
    return tuple(a in batched for a in step.inputs)


def _guarded(step, compute):
    try:
        return compute()
    except StepError:
        raise
    except (ValueError, TypeError, ArithmeticError, IndexError, AttributeError) as e:
        raise StepError(step, e) from e
