"""From a data source to arrays for the model's inputs, checked before any training starts.

A source is a built-in name or a .csv/.npz file. Each model input takes an array (or a
stack of columns) named in `training.data.inputs`, by default the array of its own name;
integer class labels become one-hot vectors where the input expects them.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np

from ..format.data import read_arrays
from ..errors import GraphDefError, Problem, did_you_mean
from .datasets import BUILTIN

MAPPING_PATH = ("training", "data", "inputs")


def read_source(source, base_dir=None) -> dict:
    """name -> array for a built-in data set name, a file path, or an in-memory dict of arrays."""
    if isinstance(source, dict):
        return {k: np.asarray(v) for k, v in source.items()}
    if not isinstance(source, (str, os.PathLike)):
        raise GraphDefError(f"a data source is a name or a file path, not {type(source).__name__}")
    if source in BUILTIN:
        return BUILTIN[source]()
    if Path(source).suffix not in (".csv", ".npz"):
        hint = did_you_mean(str(source), BUILTIN) or f"built-in data sets: {', '.join(BUILTIN)}; or a .csv/.npz file"
        raise GraphDefError(f"unknown data source '{source}' ({hint})")
    return read_arrays(locate(source, base_dir))


def locate(source, base_dir=None) -> Path:
    """A data file as given (relative to the current folder), else relative to the model's folder.

    When neither exists the error names the path as the user wrote it and every place looked in.
    """
    given = Path(source)
    places = [given]
    beside = None if given.is_absolute() or base_dir is None else Path(base_dir) / given
    if beside is not None and os.path.abspath(beside) != os.path.abspath(given):
        places.append(beside)
    for path in places:
        if _present(path):
            return path
    looked = " and ".join(f"{os.path.abspath(p)} ({where})"
                          for p, where in zip(places, ("from the current folder", "beside the model")))
    hint = "check the path" if given.is_absolute() else f"looked for {looked}; check the path"
    raise GraphDefError(Problem("file not found", str(source), hint=hint))


def _present(path: Path) -> bool:
    try:
        return path.exists() or path.is_symlink()
    except (OSError, ValueError):  # a name too long, a NUL byte: the reader says what is wrong with it
        return True


def feed(model, data: dict, mapping: dict | None, names) -> dict:
    """Arrays (one row per sample, model dtype) for the inputs `names`; all problems reported together."""
    mapping, feeds, problems = mapping or {}, {}, []
    for name in names:
        spec = mapping.get(name, name)
        if isinstance(spec, str) and spec not in data and name in data:
            spec = name  # data of the input's own name (a file to predict on), where the mapped column is absent
        try:
            integer = name in model.input_dtypes
            feeds[name] = _checked(model, name, _select(data, spec, model.inputs[name], integer))
        except _DataError as e:
            problems.append(model.locate(MAPPING_PATH + (name,) if name in mapping else ("inputs", name),
                                         f"data for input '{name}': {e}", e.hint))
    sizes = {name: len(a) for name, a in feeds.items()}
    if len(set(sizes.values())) > 1:
        problems.append(model.locate(MAPPING_PATH, f"inputs get different numbers of samples: {sizes}"))
    if problems:
        raise GraphDefError(problems)
    return feeds


class _DataError(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


def sample_shape(shape):
    """A declared shape without a leading free size (the batch axis that shape writes itself)."""
    return shape[1:] if shape and shape[0] is None else shape


def _select(data: dict, spec, shape, integer: bool = False) -> np.ndarray:
    spec = spec if isinstance(spec, dict) else {"from": spec}
    shape = sample_shape(shape)
    names = _columns(data, spec["from"])
    arrays = [np.asarray(data[n]) for n in names]
    if any(a.ndim == 0 for a in arrays):
        raise _DataError("a data array must have one row per sample")
    if any(len(a) == 0 for a in arrays):
        raise _DataError("the data has no samples", "check the file: it holds a header or empty arrays only")
    x = arrays[0] if isinstance(spec["from"], str) else np.stack(arrays, axis=-1)
    one_hot = spec.get("one_hot", "auto")
    if one_hot == "auto":  # labels for an input of floats one more axis wide; an integer input takes them as they are
        one_hot = not integer and shape is not None and len(shape) >= 1 and x.ndim == len(shape) and _is_labels(x)
        one_hot = shape[-1] if one_hot else False
    if one_hot is not False:
        x = _one_hot(x, shape[-1] if one_hot is True and shape else one_hot)
    if "index" in spec:
        if not -x.shape[-1] <= spec["index"] < x.shape[-1]:
            raise _DataError(f"index {spec['index']} is out of range for size {x.shape[-1]}")
        x = x[..., spec["index"]]
    return x * spec["scale"] if "scale" in spec else x


def _columns(data: dict, wanted) -> list:
    names = []
    for pattern in [wanted] if isinstance(wanted, str) else wanted:
        found = fnmatch.filter(data, pattern) if any(c in pattern for c in "*?[") else [pattern] * (pattern in data)
        if not found:
            raise _DataError(f"no array or column named '{pattern}'",
                             did_you_mean(pattern, data) or f"available: {', '.join(list(data)[:12])}")
        names += found
    return names


def _is_labels(x: np.ndarray) -> bool:
    return np.issubdtype(x.dtype, np.integer) or (np.all(np.isfinite(x)) and np.all(x == np.round(x)))


def _one_hot(x: np.ndarray, classes) -> np.ndarray:
    if classes is True or classes is None or classes < 1:
        raise _DataError("one_hot needs the number of classes (or an input shape that gives it)")
    if not _is_labels(x) or x.size and (x.min() < 0 or x.max() >= classes):
        raise _DataError(f"one_hot needs class indices 0..{classes - 1}",
                         "check the label column, or the number of classes in the input's shape")
    return np.eye(classes)[x.astype(np.int64)]


def _checked(model, name: str, x: np.ndarray) -> np.ndarray:
    shape = sample_shape(model.inputs[name])
    if shape is not None and (x.ndim != len(shape) + 1 or any(d not in (None, a) for a, d in zip(x.shape[1:], shape))):
        raise _DataError(f"samples have shape {list(x.shape[1:])}, the input expects {list(shape)}",
                         "map other columns to it, or fix the input's shape")
    dtype = model.input_dtypes.get(name, model.dtype)
    if dtype.kind != "f":
        if not _is_labels(x) or dtype.kind == "b" and x.size and not np.isin(x, (0, 1)).all():
            raise _DataError(f"the input holds {dtype.name} values, the data does not",
                             "give whole numbers (class labels, token ids), or declare the input a float")
        return x.astype(dtype)
    try:
        x = x.astype(model.dtype)
    except (ValueError, TypeError):
        raise _DataError("values are not numeric") from None
    bad = np.argwhere(~np.isfinite(x.reshape(len(x), -1)))
    if len(bad):
        raise _DataError(f"NaN or infinity in sample {int(bad[0][0])}", "clean the data before training")
    return x
