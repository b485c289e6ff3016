"""Size arithmetic at import: the ops exporters apply to shapes, on values holding symbolic sizes.

A dynamic-batch export computes its reshape targets from `Shape(x)`: the batch size is a
Dim here, and these ops compute with it as numpy computes with numbers (object arrays), so
`Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])` is known at import as `[batch, -1]`. One
function per ONNX op, named and with keyword arguments as in ONNX's schema.
"""
from __future__ import annotations

import numpy as np

from .dims import Dim
from .importer import known
from .proto import Malformed, Unsupported


def _out(value):
    return known(np.asarray(value, dtype=object))


def _axes_given(axes_input, axes_attribute):
    """Axes from the input (opset 13 on) or the attribute (before)."""
    axes = axes_input if axes_input is not None else axes_attribute
    return None if axes is None else [int(a) for a in np.ravel(axes)]


def gather(data, indices, *, axis=0, **_):
    return _out(np.take(data, np.asarray(indices, np.int64), axis=axis))


def concat(*values, axis, **_):
    return _out(np.concatenate([np.asarray(v, dtype=object) for v in values], axis=axis))


def unsqueeze(data, axes=None, **attrs):
    out = np.asarray(data, dtype=object)
    rank = out.ndim + len(_axes_given(axes, attrs.get("axes")))
    for axis in sorted(a % rank for a in _axes_given(axes, attrs.get("axes"))):
        out = np.expand_dims(out, axis)
    return _out(out)


def squeeze(data, axes=None, **attrs):
    given = _axes_given(axes, attrs.get("axes"))
    data = np.asarray(data, dtype=object)
    return _out(np.squeeze(data, axis=None if given is None else tuple(a % data.ndim for a in given)))


def slice_(data, starts, ends, axes=None, steps=None, **_):
    data = np.asarray(data, dtype=object)
    if axes is not None and any(not -data.ndim <= int(a) < data.ndim for a in axes):
        raise Malformed(f"Slice axes {[int(a) for a in axes]} out of range for sizes of rank {data.ndim}")
    axes = range(len(starts)) if axes is None else [int(a) % data.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(int(start), int(end), int(step))
    return _out(data[tuple(index)])


def reshape(data, shape, *, allowzero=0, **_):
    shape = [int(d) for d in shape]
    data = np.asarray(data, dtype=object)
    shape = [data.shape[i] if d == 0 and not allowzero else d for i, d in enumerate(shape)]
    return _out(data.reshape(shape))


def cast(data, **_):
    return _out(data)


def _elementwise(function):
    def apply(first, *others, **_):
        out = np.asarray(first, dtype=object)
        for other in others:
            out = np.vectorize(function, otypes=[object])(out, np.asarray(other, dtype=object))
        return _out(out)
    return apply


def _divide(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, Dim) or isinstance(b, Dim):
            raise Unsupported("a float division of sizes known only at run time")
        return a / b
    return a // b


def _decided(a, b) -> bool:
    """Whether two values compare the same at every size: numbers, or the same symbolic size."""
    return not (isinstance(a, Dim) or isinstance(b, Dim)) or a == b


def _equal(a, b) -> bool:
    if not _decided(a, b):
        raise Unsupported(f"a comparison of the sizes {a} and {b}, which depends on the input sizes")
    return bool(a == b)


def _extreme(pick):
    """max or min of sizes: decided only for equal sizes, or against a number no size is below (0, 1)."""
    def apply(a, b):
        if _decided(a, b):
            return pick(a, b)
        number, size = (a, b) if isinstance(b, Dim) else (b, a)
        if isinstance(number, Dim) or number > 1:
            raise Unsupported(f"{pick.__name__} of the sizes {a} and {b}, which depends on the input sizes")
        return size if pick is max else number
    return apply


def where(condition, x, y, **_):
    return _out(np.where(np.asarray(condition, bool), np.asarray(x, dtype=object), np.asarray(y, dtype=object)))


def identity(data, **_):
    return _out(data)


SIZES = {
    "Gather": gather, "Concat": concat, "Unsqueeze": unsqueeze, "Squeeze": squeeze, "Slice": slice_,
    "Reshape": reshape, "Cast": cast, "Identity": identity, "Where": where,
    "Add": _elementwise(lambda a, b: a + b), "Sub": _elementwise(lambda a, b: a - b),
    "Mul": _elementwise(lambda a, b: a * b), "Div": _elementwise(_divide),
    "Mod": _elementwise(lambda a, b: a % b), "Equal": _elementwise(_equal),
    "Max": _elementwise(_extreme(max)), "Min": _elementwise(_extreme(min)),
}
