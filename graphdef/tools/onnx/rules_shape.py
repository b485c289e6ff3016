"""Import rules of ONNX's shape, indexing and type ops, and of the shape arithmetic around them.

Reshape targets, axes and pads are read at import (`static_ints`, `sizes`): exporters compute
them from `Shape` on a dynamic batch, which import evaluates on symbolic sizes; a target with
one size known only at run time becomes graphdef's -1.
"""
from __future__ import annotations

import math

import numpy as np

from .dims import Dim
from .importer import Value, kind_of, known, rule
from .proto import Malformed, Unsupported, element_name

INT64_MAX = 2**63 - 1


def static_ints(value: Value | None, what: str) -> list | None:
    """A known integer tensor (axes, pads, a target shape) as a flat list of Python ints."""
    if value is None:
        return None
    if value.known is None:
        raise Unsupported(f"{what} computed at run time")
    if value.known.dtype == object:
        raise Unsupported(f"{what} depend on sizes known only at run time")
    if value.known.dtype.kind not in "iu" or value.known.ndim > 1:
        raise Malformed(f"{what} must be a 1-D tensor of integers, not one of shape {list(value.known.shape)} "
                        f"and type {value.known.dtype}")
    return [int(v) for v in np.ravel(value.known)]


def sizes(value: Value, what: str) -> list:
    """A known 1-D tensor of sizes, each an int or a Dim (known at run time)."""
    if value.known is None:
        raise Unsupported(f"{what} computed at run time")
    if value.known.ndim != 1 or value.known.dtype != object and value.known.dtype.kind not in "iu":
        raise Malformed(f"{what} must be a 1-D tensor of integers, not one of shape {list(value.known.shape)} "
                        f"and type {value.known.dtype}")
    return [v if isinstance(v, Dim) else int(v) for v in value.known]


def axes_in_range(axes: list, rank: int | None, what: str = "axis", stop: int = 0) -> list:
    """Axes checked against the rank (ONNX counts a negative axis from the end) and made non-negative;
    `stop` 1 admits the axis just past the last (Flatten's)."""
    if rank is None:
        if len(set(axes)) != len(axes):
            raise Malformed(f"{what} {axes} repeats an axis")
        return axes
    bad = [a for a in axes if not -rank <= a < rank + stop]
    if bad:
        raise Malformed(f"{what} {bad[0]} is out of range for an input of rank {rank}",
                        f"use an axis from {-rank} to {rank - 1 + stop}" if rank + stop else "a scalar has no axis")
    out = [a + rank if a < 0 else a for a in axes]
    if len(set(out)) != len(out):
        raise Malformed(f"{what} {axes} repeats an axis")
    return out


def reshaped(imp, x: Value, target: list) -> Value:
    """x reshaped to sizes that may be symbolic or -1: at most one size may stay unknown (graphdef's -1)."""
    if target.count(-1) == 1 and x.shape is not None and None not in x.shape:
        rest = math.prod(d for d in target if not (isinstance(d, int) and d == -1))
        try:
            target = [math.prod(x.shape) // rest if isinstance(d, int) and d == -1 else d for d in target]
        except Unsupported:
            pass  # the inferred size stays for run time
    if -1 not in target and x.shape is not None and None not in x.shape and \
            math.prod(target) != math.prod(x.shape):
        raise Malformed(f"reshapes {list(x.shape)} to {target}: not the same number of values")
    kept = _kept_axes(x.shape, target)
    rest = target[kept:]
    if sum(not isinstance(d, int) or d == -1 for d in rest) > 1:
        raise Unsupported("a target shape with more than one size known only at run time")
    resolved = None if -1 in target else target
    return imp.op("reshape", x, shape=[d if isinstance(d, int) else -1 for d in rest], out_shape=resolved,
                  **({"batch_dims": kept} if kept else {}))


def _kept_axes(source, target: list) -> int:
    """How many leading axes to keep as they are (graphdef's batch_dims): the fewest of those the input and
    the target share that leave at most one size known only at run time, as a -1, to the rest."""
    shared = 0
    while source is not None and shared < min(len(source), len(target)) and source[shared] is not None \
            and _same_size(source[shared], target[shared]):
        shared += 1
    for kept in range(shared + 1):
        if sum(not isinstance(d, int) or d == -1 for d in target[kept:]) <= 1:
            return kept
    return shared


def _same_size(a, b) -> bool:
    return (isinstance(a, Dim) or isinstance(b, Dim)) and a == b or isinstance(a, int) and a == b


@rule("Constant")
def constant(imp, **attrs):
    given = {k: v for k, v in attrs.items() if k.startswith(("value", "sparse"))}
    if len(given) != 1:
        raise Malformed(f"has {len(given)} values; a Constant has exactly one",
                        "give one of: value, value_float, value_floats, value_int, value_ints")
    (key, value), = given.items()
    if key.startswith(("value_string", "sparse")):
        raise Unsupported(f"a Constant {key}")
    value = np.asarray(value, np.float32 if key.startswith("value_float") else None)
    if value.dtype.kind == "f" and np.isnan(value).any():
        raise Malformed(f"{key} contains NaN", "no model means NaN: export the model again from finite values")
    return known(value)


@rule("Shape")
def shape(imp, x, *, start=0, end=None):
    if x.shape is None or None in x.shape[start:end]:
        raise Unsupported("Shape of a tensor whose sizes import cannot know")
    return known(np.asarray(list(x.shape[start:end]), dtype=object))


@rule("Size")
def size(imp, x):
    if x.shape is None or None in x.shape:
        raise Unsupported("Size of a tensor whose sizes import cannot know")
    return known(np.asarray(math.prod(x.shape), dtype=object))


@rule("Reshape")
def reshape(imp, x, shape, *, allowzero=0):
    target = sizes(shape, "Reshape's target shape")
    if target.count(-1) > 1 or any(isinstance(d, int) and d < -1 for d in target):
        raise Malformed(f"target shape {target}: at most one -1 (inferred) and no other negative size")
    for i, d in enumerate(target):
        if isinstance(d, int) and d == 0 and not allowzero:
            if x.shape is None or i >= len(x.shape) or x.shape[i] is None:
                raise Unsupported("Reshape copying a dimension whose size is unknown (0 in the shape)")
            target[i] = x.shape[i]
    return reshaped(imp, x, target)


@rule("Flatten")
def flatten(imp, x, *, axis):
    if x.shape is None:
        raise Unsupported("Flatten of an input whose shape is unknown")
    axis = axes_in_range([axis], len(x.shape), stop=1)[0]
    outer, inner = x.shape[:axis], x.shape[axis:]
    if None in outer and None in inner:
        raise Unsupported("Flatten of an input with unknown sizes on both sides of its axis")
    return reshaped(imp, x, [-1 if None in outer else math.prod(outer), -1 if None in inner else math.prod(inner)])


@rule("Transpose")
def transpose(imp, x, *, perm=None):
    if perm is None:
        return imp.op("transpose", x)
    if sorted(perm) != list(range(len(perm))) or x.rank is not None and len(perm) != x.rank:
        raise Malformed(f"perm {list(perm)} is not a permutation of the axes of its input"
                        + (f" (rank {x.rank})" if x.rank is not None else ""))
    return imp.op("transpose", x, axes=list(perm))


def _axes_given(axes: Value | None, attribute, what: str):
    """Axes as the second input (opset 13 on) or as the `axes` attribute (before); None: not given."""
    return static_ints(axes, what) if axes is not None else None if attribute is None else list(attribute)


@rule("Unsqueeze")
def unsqueeze(imp, x, axes_input=None, *, axes=None):
    given = _axes_given(axes_input, axes, "Unsqueeze axes")
    if given is None:
        raise Malformed("has no axes (its second input; the axes attribute before opset 13)")
    given = axes_in_range(given, None if x.rank is None else x.rank + len(given))
    return imp.op("unsqueeze", x, axis=sorted(given))


@rule("Squeeze")
def squeeze(imp, x, axes_input=None, *, axes=None):
    given = _axes_given(axes_input, axes, "Squeeze axes")
    if given is None:
        if x.shape is None or None in x.shape:
            raise Unsupported("Squeeze of an input whose sizes are unknown")
        given = [i for i, d in enumerate(x.shape) if isinstance(d, int) and d == 1]
    given = axes_in_range(given, x.rank)
    wide = [a for a in given if x.shape is not None and isinstance(x.shape[a], int) and x.shape[a] != 1]
    if wide:
        raise Malformed(f"squeezes axis {wide[0]} of size {x.shape[wide[0]]}; only an axis of size 1 can go")
    return imp.op("squeeze", x, axis=given) if given else x


@rule("Concat")
def concat(imp, *xs, axis):
    out = xs[0]
    (axis,) = axes_in_range([axis], xs[0].rank)
    for x in xs[1:]:
        out = imp.op("concat", out, x, axis=axis)
    return out if len(xs) > 1 else imp.op("identity", out)


@rule("Split")
def split(imp, x, split_input=None, *, axis, split=None, num_outputs=None):
    sections = static_ints(split_input, "Split sizes") if split_input is not None else split
    outputs = len(imp.node.output)
    if sections is None and num_outputs not in (None, outputs):
        raise Malformed(f"num_outputs is {num_outputs} but the node has {outputs} outputs")
    (axis,) = axes_in_range([axis], x.rank)
    if sections is None:
        size = None if x.shape is None else x.shape[axis]
        if not isinstance(size, int):  # equal parts of a size known at run time
            return imp.op("split", x, outputs=outputs, sections=outputs, axis=axis)
        sections = [-(-size // outputs)] * (outputs - 1) + [size - -(-size // outputs) * (outputs - 1)]
    if len(sections) != outputs:
        raise Malformed(f"gives {len(sections)} split sizes for {outputs} outputs")
    return imp.op("split", x, outputs=len(sections), sections=list(sections), axis=axis)


@rule("Slice")
def slice_(imp, x, starts, ends, axes=None, steps=None):
    bounds = [static_ints(v, f"Slice {what}") for v, what in ((starts, "starts"), (ends, "ends"), (axes, "axes"),
                                                              (steps, "steps"))]
    starts, ends, axes, steps = [None if b is None else [max(min(v, 2**62), -2**62) for v in b] for b in bounds]
    if axes is not None:
        axes = axes_in_range(axes, x.rank)
    return imp.op("slice", x, starts=starts, ends=ends, **({"axes": axes} if axes else {}),
                  **({"steps": steps} if steps else {}))


@rule("Gather")
def gather(imp, x, indices, *, axis):
    (axis,) = axes_in_range([axis], x.rank)
    if indices.numeric and indices.known.ndim == 0:
        return imp.op("select", x, axis=axis, index=int(indices.known))
    return imp.op("gather", x, indices, axis=axis)


@rule("Expand")
def expand(imp, x, shape):
    target = sizes(shape, "Expand's target shape")
    if x.numeric and x.known.size == 1:  # zeros(batch, hidden), as dynamo writes an initial state
        rank = max(len(target), x.rank)
        return Value(x.kind, tuple([1] * (rank - len(target)) + target), fill=x.known.item())
    if x.shape is None:
        raise Unsupported("Expand of an input whose shape is unknown")
    rank = max(len(target), len(x.shape))
    source = [1] * (rank - len(x.shape)) + list(x.shape)
    target = [1] * (rank - len(target)) + target
    out = []
    for s, t in zip(source, target):
        if s == t or isinstance(t, int) and t == 1:
            out.append(-1 if s != 1 or t == 1 else 1)
        elif isinstance(t, int) and s == 1:
            out.append(t)
        else:
            raise Unsupported(f"Expand of a size {s} to {t}, known only at run time")
    return imp.op("expand", x, shape=out)


@rule("Tile")
def tile(imp, x, repeats):
    return imp.op("tile", x, repeats=static_ints(repeats, "Tile repeats"))


@rule("Trilu")
def trilu(imp, x, k=None, *, upper):
    diagonal = 0 if k is None else static_ints(k, "Trilu's k")[0]
    return imp.op("trilu", x, upper=bool(upper), k=diagonal)


@rule("ConstantOfShape")
def constant_of_shape(imp, shape, *, value=None):
    """A constant tensor whose shape is known only at run time: known to import as a fill (see Value)."""
    fill = np.zeros(1, np.float32) if value is None else np.ravel(value)
    return Value(kind_of(fill.dtype), tuple(sizes(shape, "ConstantOfShape's shape")), fill=fill[0].item())


CAST_KINDS = {1: "float", 11: "float", 6: "int64", 7: "int64", 9: "bool"}  # TensorProto types graphdef casts to


def cast_to(imp, x: Value, kind: str) -> Value:
    """x as floats, integers (rounding toward 0, as ONNX Cast) or booleans."""
    if kind == x.kind:
        return x
    if kind == "bool":
        return imp.op("logical_not", imp.op("equal", x, known(np.zeros((), np.float64 if x.kind == "float" else
                                                                         np.int64))))
    return imp.op("cast_like", x, known(np.zeros((), np.float64 if kind == "float" else np.int64)))


@rule("Cast")
def cast(imp, x, *, to, saturate=1):
    """Cast to float, double, int32, int64 or bool (int32 as int64: graphdef's one integer type); the
    narrower types, whose casts wrap or round, are refused."""
    if to not in CAST_KINDS:
        raise Unsupported(f"Cast to {element_name(to)}")
    return cast_to(imp, x, CAST_KINDS[to])


@rule("CastLike")
def cast_like(imp, x, like, *, saturate=1):
    return cast_to(imp, x, like.kind)


@rule("Where")
def where(imp, condition, x, y):
    return imp.op("where", condition, x, y)


@rule("Dropout")
def dropout(imp, x, ratio=None, training_mode=None, **attrs):
    """Inference: the identity and a mask of trues, unless training_mode is a known true (random, which import
    is not)."""
    if training_mode is not None and (training_mode.known is None or np.any(training_mode.known)):
        raise Unsupported("Dropout in training mode")
    if len(imp.node.output) < 2 or x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return x
    return x, known(np.ones(x.shape, bool))


@rule("Pad")
def pad(imp, x, pads, value=None, axes=None, *, mode):
    """ONNX's pads [begin of each axis..., end of each axis...] as graphdef's (F.pad's) last-axis-first pairs."""
    given = static_ints(pads, "Pad pads")
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"Pad mode {mode}")
    if x.rank is None:
        raise Unsupported("Pad of an input whose rank is unknown")
    axes = axes_in_range(static_ints(axes, "Pad axes"), x.rank) if axes is not None else list(range(x.rank))
    if len(given) != 2 * len(axes):
        raise Malformed(f"has {len(given)} pads for {len(axes)} axes; Pad takes a begin and an end per axis")
    widths = dict(zip(axes, zip(given[:len(axes)], given[len(axes):])))
    first = min((a for a, w in widths.items() if w != (0, 0)), default=x.rank)
    flat = [p for a in range(x.rank - 1, first - 1, -1) for p in widths.get(a, (0, 0))]
    fill = 0.0 if value is None else float(np.ravel(imp.static(value, "a Pad value"))[0])
    return imp.op("pad", x, pads=flat, mode={"edge": "replicate"}.get(mode, mode), value=fill)
