"""Feeding a model: the caller's values checked against the declared inputs, and which carry a batch.

A value of an input's declared rank is one sample; one more leading axis makes it a batch
(all batched inputs must agree on its size). An input whose declared shape starts with
null holds its batch axis itself and takes no extra one.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import GraphDefError, Problem, did_you_mean
from ..ops.registry import show_shape


def feed(model, inputs: dict, params: dict | None = None, needed=None) -> dict:
    """The starting environment: constants, parameters and validated inputs (all, or those `needed`).

    Called on every public call: the common cases (a number for a scalar input, an array of
    the model's dtype) take a short path, and every problem found is reported together.
    """
    if not isinstance(inputs, dict):
        raise GraphDefError("inputs must be a mapping: name -> value")
    env = {**model.constants, **model.state, **model.parameters, **params} if params else \
        {**model.constants, **model.state, **model.parameters}
    problems, batched, found = [], [], 0
    for name, dtype, scalar in model.feeding:
        raw = inputs.get(name, _MISSING)
        if raw is _MISSING:
            if needed is None or name in needed:
                problems.append(model.problem(name, f"missing input '{name}'", f"give a value for '{name}'"))
            continue
        found += 1
        if scalar and (type(raw) is float or type(raw) is dtype.type):  # the short path of a lecture graph
            value = dtype.type(raw)
            if math.isfinite(value):
                env[name] = value
                continue
        value, problem = _array(model, name, raw)
        env[name] = value
        if problem:
            problems.append(problem)
        elif value.ndim > model.batchable.get(name, value.ndim):
            batched.append(name)
    if found < len(inputs):
        problems += [Problem(f"unknown input '{n}'", hint=did_you_mean(n, model.inputs)
                             or f"the model's inputs: {', '.join(model.inputs) or 'none'}")
                     for n in inputs if n not in model.inputs]
    if len(batched) > 1 and not problems:
        problems += _batch_sizes(env, batched)
    if problems:
        raise GraphDefError(problems)
    return env


def feeding(model) -> tuple:
    """(name, dtype, whether it is a float scalar) for each input, in order: what feed checks, decided once."""
    dtypes = [model.input_dtypes.get(name, model.dtype) for name in model.inputs]
    return tuple((name, dtype, dtype.kind == "f" and shape == ())
                 for (name, shape), dtype in zip(model.inputs.items(), dtypes))


_MISSING = object()


def batched_inputs(model, env: dict) -> frozenset:
    """The inputs in env that carry a batch axis: one more axis than their declared rank."""
    batched = [n for n, rank in model.batchable.items() if n in env and getattr(env[n], "ndim", 0) > rank]
    return frozenset(batched) if batched else NONE


NONE = frozenset()


def _batch_sizes(env: dict, batched: list) -> list:
    sizes = {n: len(env[n]) for n in batched}
    if len(set(sizes.values())) == 1:
        return []
    listed = ", ".join(f"'{n}' has {s}" for n, s in sizes.items())
    return [Problem(f"batched inputs disagree on the batch size: {listed}",
                    hint="give every batched input the same number of samples")]


def _array(model, name: str, raw):
    dtype = model.input_dtypes.get(name, model.dtype)
    if dtype.kind != "f":
        value, problem = _whole(model, name, raw, dtype)
        if problem:
            return None, problem
    else:
        try:  # a number becomes a numpy scalar: arithmetic on it is much faster than on a 0-d array
            if raw is None or getattr(raw, "dtype", None) is not None and raw.dtype.kind == "c":
                raise TypeError("not a real number")  # numpy would drop the imaginary part
            if type(raw) in (float, int):
                value = dtype.type(raw)
            elif type(raw) is np.ndarray and raw.dtype == dtype and raw.ndim:
                value = raw
            elif type(raw) is not dtype.type:
                value = np.asarray(raw, dtype=dtype)
                value = value[()] if value.ndim == 0 else value
            else:
                value = raw
        except (ValueError, TypeError, OverflowError):
            return None, model.problem(name, f"input '{name}' is not numeric: {str(raw)[:40]!r}",
                                       "give a number or a (nested) list of numbers")
    if dtype.kind == "f" and not _finite(value):
        return None, model.problem(name, f"input '{name}' contains NaN or infinity", "clean the data")
    shape = model.inputs[name]
    if shape is not None and not fits(value.shape, shape, name in model.batchable):
        extra = " or, for a batch, [N] + that" if name in model.batchable else ""
        return None, model.problem(name, f"input '{name}' has shape {list(value.shape)}, expected "
                                   f"{show_shape(shape)}{extra}", "reshape the value to the declared shape")
    return value, None


def _whole(model, name: str, raw, dtype: np.dtype):
    """An integer (or boolean) input: whole numbers only, never a float silently truncated."""
    try:
        given = np.asarray(raw)
        value = given.astype(dtype)
        exact = given.dtype.kind in "iub" and (dtype.kind != "b" or given.dtype.kind == "b" or
                                                np.isin(given, (0, 1)).all()) and np.array_equal(value, given)
        if not exact:
            exact = given.dtype.kind == "f" and np.array_equal(value, given) and np.isfinite(given).all()
    except (ValueError, TypeError, OverflowError):
        exact = False
    if not exact:
        what = "booleans (or 0 and 1)" if dtype.kind == "b" else "whole numbers"
        return None, model.problem(name, f"input '{name}' holds {dtype.name} values: give {what}, "
                                   f"got {str(raw)[:40]!r}", "check the data feeding it (class labels, token ids)")
    return value, None


def _finite(value) -> bool:
    """No NaN or infinity: a sum (one pass, no temporary) is finite for almost all data; only when it
    is not (NaN, infinity, or finite values overflowing) is every value looked at."""
    if value.ndim == 0:
        return math.isfinite(value)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing sum is no fault of the data
        total = np.add.reduce(value, axis=None)
    return math.isfinite(total) or bool(np.isfinite(value).all())


def fits(actual: tuple, declared: tuple, batchable: bool) -> bool:
    """Whether an array's shape matches a declared one (free sizes match any), or is a batch of it."""
    if actual == declared:
        return True
    if batchable and len(actual) == len(declared) + 1:
        actual = actual[1:]
    return len(actual) == len(declared) and all(d is None or d == a for a, d in zip(actual, declared))
