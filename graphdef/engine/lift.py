"""One node on a batch: which vertices carry the batch axis, and how each op rule is called then.

A node reading a batched value is batched itself. Its op's batching rule (ops/batching.py)
gives a Lift: the node's inputs get singleton axes, the rules run with the lifted
attributes, and the output loses the axes the rule names. An op without a rule runs once
per sample. Both the reference interpreter and the compiled plans call rules this way.
"""
from __future__ import annotations

import numpy as np

from ..ops import ShapeError, unbroadcast
from ..ops.batching import PER_SAMPLE, Lift


class StepError(Exception):
    """An op rule failed on a node; the model turns this into a located GraphDefError."""

    def __init__(self, step, cause: Exception, line: str | None = None):
        super().__init__(f"{cause}")
        self.step, self.cause, self.line = step, cause, line


def batched_vertices(graph, batched_inputs) -> frozenset:
    """The vertices that carry the batch axis when these inputs do."""
    return frozenset(graph.reachable(batched_inputs)) if batched_inputs else frozenset()


def lift_of(graph, step, batched: frozenset) -> Lift | None:
    """None when no input of the node is batched; else its Lift, or PER_SAMPLE."""
    flags = tuple(a in batched for a in step.inputs)
    if not any(flags):
        return None
    if step.op.batch is None:
        return PER_SAMPLE
    try:
        return step.op.batch(tuple(graph.vertices[a].shape for a in step.inputs), flags, **step.attrs)
    except (ShapeError, ValueError, TypeError) as e:
        raise StepError(step, ValueError(f"cannot run on a batch: {e}")) from None


def expanded(args, lift: Lift) -> list:
    return [np.expand_dims(a, axes) if axes else a for a, axes in zip(args, lift.expand)]


INFERENCE = {"training": False, "rng": None}  # the context when none is given: inference draws nothing


def attrs_of(step, lift: Lift | None, context=None) -> dict:
    """The attributes the node's rules are called with: lifted to the batch, and the part of the engine's
    context (mode, generator) its op takes."""
    attrs = step.attrs if lift is None or lift is PER_SAMPLE else lift.attrs
    if not step.op.context:
        return attrs
    context = context or INFERENCE
    return {**attrs, **{k: context[k] for k in step.op.context}}


def call(step, lift: Lift | None, args: list, flags=(), context=None, rule=None):
    """The node's value (or, given `rule`, that rule: a state update) on (lifted) arguments."""
    rule, attrs = rule or step.op.forward, attrs_of(step, lift, context)
    if lift is None:
        return rule(*args, **attrs)
    if lift is PER_SAMPLE:
        return per_sample_forward(step.op, flags, attrs, *args, rule=rule)
    out = rule(*expanded(args, lift), **attrs)
    if not lift.squeeze:
        return out
    return (np.squeeze(out[0], lift.squeeze), out[1]) if rule is step.op.save else np.squeeze(out, lift.squeeze)


def vjp(step, lift: Lift | None, k: int, g, out, args: list, flags=(), context=None, saved=None):
    """∂L/∂(input k) given g = ∂L/∂out, summed back to the input's own shape; `saved`: what the op's
    save rule kept in the forward pass (else it is computed again)."""
    op, attrs = step.op, attrs_of(step, lift, context)
    if lift is PER_SAMPLE:
        return per_sample_vjp(op, k, flags, attrs, g, out, *args)
    xs = args if lift is None else expanded(args, lift)
    if lift is not None and lift.squeeze:
        g, out = np.expand_dims(g, lift.squeeze), np.expand_dims(out, lift.squeeze)
    d = op.backward[k](g, op.saved(out, *xs, **attrs) if saved is None else saved, *xs, **attrs)
    return np.reshape(unbroadcast(np.asarray(d), np.shape(xs[k])), np.shape(args[k]))


def jvp(step, lift: Lift | None, k: int, t, out, args: list, flags=(), context=None, saved=None):
    """The tangent of the node's output that a tangent t of input k makes (forward mode), of the output's
    shape; `saved` as for vjp."""
    op, attrs = step.op, attrs_of(step, lift, context)
    if lift is PER_SAMPLE:
        return np.stack([jvp(step, None, k, t[i] if flags[k] else t, out[i], _sample(args, flags, i), (), context)
                         for i in range(len(out))])
    xs, squeeze = args, ()
    if lift is not None:
        xs, t, squeeze = expanded(args, lift), expanded([t], Lift(lift.expand[k:k + 1]))[0], lift.squeeze
    full = np.expand_dims(out, squeeze) if squeeze else out
    d = np.broadcast_to(op.jvp[k](t, op.saved(full, *xs, **attrs) if saved is None else saved, *xs, **attrs),
                        np.shape(full))
    return np.squeeze(d, squeeze) if squeeze else d


def per_sample_forward(op, flags, attrs, *args, rule=None):
    """An op without a batching rule: its forward (or `rule`) on each sample, stacked."""
    n, rule = _batch_size(flags, args), rule or op.forward
    return np.stack([np.asarray(rule(*_sample(args, flags, i), **attrs)) for i in range(n)])


def per_sample_vjp(op, k, flags, attrs, g, out, *args):
    """An op without a batching rule: its rule k on each sample; stacked for a batched input, else summed."""
    parts = []
    for i in range(_batch_size(flags, args)):
        xs = _sample(args, flags, i)
        d = op.backward[k](g[i], op.saved(out[i], *xs, **attrs), *xs, **attrs)
        parts.append(unbroadcast(np.asarray(d), np.shape(xs[k])))
    return np.stack(parts) if flags[k] else np.sum(parts, axis=0)


def _batch_size(flags, args) -> int:
    return next(len(a) for a, batched in zip(args, flags) if batched)


def _sample(args, flags, i) -> list:
    return [a[i] if batched else a for a, batched in zip(args, flags)]
