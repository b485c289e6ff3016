"""Batching rules: how an op written for one sample runs on a whole batch at once.

A model's declared shapes describe one sample. Fed a batch, a value computed from a
batched input carries one extra leading axis, the batch axis; parameters and constants
do not. An op's batching rule receives the per-sample static shapes of its inputs and
which of them are batched, and returns a Lift: singleton axes to insert into each input,
the attributes to use, and axes to drop from the output. The op's own forward and
backward rules then run unchanged on the lifted arrays, and the result is, sample by
sample, exactly what the op computes on one sample. (The engine's tests check this for
every op of the registry: values stack, parameter gradients sum.)

An op without a rule runs once per sample (engine/lift.py): always right, slower. A rule
may return PER_SAMPLE for the cases it does not handle (a batch of conv kernels, say).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .registry import ShapeError


@dataclass(frozen=True)
class Lift:
    expand: tuple  # per input: the axes np.expand_dims inserts before the call (() for none)
    attrs: dict = field(default_factory=dict)
    squeeze: tuple = ()  # axes of the call's result that are dropped after it


PER_SAMPLE = Lift((), {}, ())  # run the node once per sample


def ranks(shapes) -> list[int]:
    """The inputs' per-sample ranks; batching needs every one of them."""
    if any(s is None for s in shapes):
        raise ShapeError("cannot run this node on a batch: the rank of an input is unknown "
                         "(declare the shape of the model's inputs)")
    return [len(s) for s in shapes]


def shift(axis, rank: int):
    """A per-sample axis attribute (int or list, negative counting from the end) in the batched value."""
    if axis is None or isinstance(axis, int):
        return axis if axis is None or axis < 0 else axis + 1
    return tuple(a if a < 0 else a + 1 for a in axis)


def _aligned(shapes, batched) -> tuple:
    """Singleton axes after the batch axis, so that batched inputs line up with the others' trailing axes."""
    r = max(ranks(shapes), default=0)
    return tuple(tuple(range(1, 1 + r - len(s))) if b else () for s, b in zip(shapes, batched))


def elementwise(shapes, batched, **attrs) -> Lift:
    """Broadcasting ops: align the batch axis, then the per-sample shapes as numpy would."""
    return Lift(_aligned(shapes, batched), attrs)


def along_axis(shapes, batched, *, axis, **attrs) -> Lift:
    """Ops that work along one axis of one input (softmax): the axis moves past the batch axis."""
    return Lift(((),), {**attrs, "axis": shift(axis, ranks(shapes)[0])})


def reduction(shapes, batched, *, axis, **attrs) -> Lift:
    """Reductions: no axis means every axis of the sample, never the batch axis."""
    (rank,) = ranks(shapes)
    return Lift(((),), {**attrs, "axis": tuple(range(1, rank + 1)) if axis is None else shift(axis, rank)})


def losses(shapes, batched, *, axis, batch_dims, **attrs) -> Lift:
    """Per-sample losses: the class axis shifted, and one more leading axis kept per sample.

    Every input is lifted to the full batched rank (an unbatched one gets a leading singleton
    axis too): the rules also apply the shifted axis to one input alone (softmax_cross_entropy's
    log-softmax of z, Σ t along the axis), where it must name the same axis in every input.
    """
    rank = max(ranks(shapes))
    expand = tuple(tuple(range(1, 1 + rank - len(s))) if b else tuple(range(1 + rank - len(s)))
                   for s, b in zip(shapes, batched))
    return Lift(expand, {**attrs, "axis": shift(axis, rank), "batch_dims": batch_dims + 1})


BROADCASTING = (elementwise, losses)  # the rules of ops whose inputs broadcast together


def permutation(shapes, batched, *, axes) -> Lift:
    """transpose: the batch axis stays first."""
    (rank,) = ranks(shapes)
    order = range(rank - 1, -1, -1) if axes is None else (a % rank for a in axes)
    return Lift(((),), {"axes": (0, *(a + 1 for a in order))})


def reshaping(shapes, batched, *, shape, batch_dims=0) -> Lift:
    """reshape: the batch axis is kept (one more leading axis kept as it is); without batch_dims, a -1 is
    resolved from the sample's static size."""
    if batch_dims:
        return Lift(((),), {"shape": shape, "batch_dims": batch_dims + 1})
    if -1 in shape:
        (known,) = shapes
        if known is None or None in known:
            raise ShapeError("cannot run a reshape with -1 on a batch when the sample's size is not known; "
                             "write the shape out in full")
        size = 1
        for d in known:
            size *= d
        rest = 1
        for d in shape:
            rest *= d if d != -1 else 1
        shape = tuple(size // rest if d == -1 else d for d in shape)
    return Lift(((),), {"shape": (-1, *shape), "batch_dims": 0})


def matrix_product(shapes, batched) -> Lift:
    """matmul: numpy's per-sample rules (1-D promotion, broadcast stacks), with the batch axis in front."""
    a, b = ranks(shapes)
    if a == 1 and b == 2 and batched == (True, False):  # a batch of vectors times a matrix: a matrix product
        return Lift(((), ()))
    a2, b2 = max(a, 2), max(b, 2)
    rank = max(a2, b2)
    expand, squeeze = [], []
    for r, r2, is_batched, promote in ((a, a2, batched[0], "row"), (b, b2, batched[1], "column")):
        start = 1 if is_batched else 0
        axes = list(range(start, start + rank - r2)) if is_batched else []
        if r == 1:  # a vector becomes a one-row (x) or one-column (y) matrix, as numpy's matmul does
            axes.append(start + len(axes) if promote == "row" else start + len(axes) + 1)
            squeeze.append(-2 if promote == "row" else -1)
        expand.append(tuple(axes))
    return Lift(tuple(expand), {}, tuple(sorted(squeeze)))
