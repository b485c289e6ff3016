"""The reference interpreter: the specification every compiled plan is tested against.

Forward is an environment dict and a loop over the nodes in order; backward walks the
same nodes in reverse, accumulating ∂of/∂vertex with `+` where a vertex feeds several
others, so every product is computed once. Forward mode (push_forward) walks them in order
again, carrying the tangent of each vertex: one pass per input direction. Run it instead of the compiled plans with
GRAPHDEF_REFERENCE=1 (or Model(..., reference=True)) to debug a plan.
"""
from __future__ import annotations

import numpy as np

from .lift import PER_SAMPLE, StepError, batched_vertices, call, jvp, lift_of, vjp

SAVED = "saved"  # env[SAVED, node]: what a node's op saved in the forward pass for its backward rules


def forward(graph, env: dict, batched_inputs=frozenset(), steps=None, context=None) -> dict:
    """env extended with the value of every node (of `steps`, default all), given its leaves.

    `context`: the mode and generator ({"training": bool, "rng": Generator}) for ops that take them.
    """
    env, batched = dict(env), batched_vertices(graph, batched_inputs)
    for step in graph.steps if steps is None else steps:
        args, lift = [env[a] for a in step.inputs], lift_of(graph, step, batched)
        if step.op.save is not None and lift is not PER_SAMPLE:  # kept for backward: ("saved", name)
            env[step.name], env[SAVED, step.name] = _guarded(
                step, lambda: call(step, lift, args, _flags(step, batched), context, rule=step.op.save))
        else:
            env[step.name] = _guarded(step, lambda: call(step, lift, args, _flags(step, batched), context))
    return env


def backward(graph, env: dict, of: str, wanted, batched_inputs=frozenset(), seed=None, context=None) -> dict:
    """∂of/∂v for every vertex v in `wanted` (the vertices on paths to `of`) that `of` depends on.

    `env` holds every value (see forward). The seed defaults to ones: for a non-scalar
    `of`, the gradient of its sum. An op with a random forward (dropout) gets its saved draw
    back through `env`'s values: the backward rules see the same mask the forward used.
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
                                               _flags(step, batched), context, env.get((SAVED, step.name))))
                grads[arg] = grads[arg] + d if arg in grads else d
    return grads


def push_forward(graph, env: dict, seeds: dict, steps, batched_inputs=frozenset(), context=None) -> dict:
    """Forward mode: the tangent of every vertex of `steps` that the tangents `seeds` (vertex -> tangent of
    its shape) reach, each node's being the sum of its op's jvp rules over the inputs that carry one.
    `env` holds every value (see forward)."""
    batched, tangents = batched_vertices(graph, batched_inputs), dict(seeds)
    for step in steps:
        moving = [k for k, a in enumerate(step.inputs) if a in tangents and step.op.jvp[k] is not None]
        if not moving:
            continue
        lift, args = lift_of(graph, step, batched), [env[a] for a in step.inputs]
        for k in moving:
            d = _guarded(step, lambda: jvp(step, lift, k, tangents[step.inputs[k]], env[step.name], args,
                                           _flags(step, batched), context, env.get((SAVED, step.name))))
            tangents[step.name] = tangents[step.name] + d if step.name in tangents else d
    return tangents


def _flags(step, batched) -> tuple:
    return tuple(a in batched for a in step.inputs)


def _guarded(step, compute):
    try:
        return compute()
    except StepError:
        raise
    except (ValueError, TypeError, ArithmeticError, IndexError, AttributeError) as e:
        raise StepError(step, e) from e
