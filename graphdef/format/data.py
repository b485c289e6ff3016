"""Reading named arrays from files: NPZ archives (pickle disabled), JSON objects, CSV tables.

Data files come from users and from anywhere, so every way one can be wrong (missing, a
folder or a pipe, truncated, ragged, nested without end, holding Python objects) ends in a
GraphDefError naming the file, in time bounded by the file's size.
"""
from __future__ import annotations

import csv
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import numpy as np

from ..errors import GraphDefError, Problem

SUFFIXES = (".npz", ".json", ".csv")
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
NPZ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError)


def read_arrays(path) -> dict:
    """name -> array (CSV: one array per column, named by the header); failures name the file."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise GraphDefError(Problem(f"unsupported data file type '{path.suffix}'", str(path),
                                    hint=f"use one of: {', '.join(SUFFIXES)}"))
    check_regular_file(path)
    try:
        return {".npz": _npz, ".json": _json, ".csv": _csv}[path.suffix](path)
    except UnicodeDecodeError as e:
        raise GraphDefError(Problem(f"not UTF-8 text (byte {e.start})", str(path),
                                    hint="save it as UTF-8 text")) from None
    except OSError as e:
        raise GraphDefError(Problem(f"cannot read file: {e.strerror or e}", str(path),
                                    hint="check that it exists and that you may read it")) from None


def check_regular_file(path: Path, shown: str | None = None) -> None:
    """Refuse anything but an existing regular file, looking before opening: a FIFO would block the read."""
    shown = shown or str(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise GraphDefError(Problem("file not found", shown, hint="check the path")) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        raise GraphDefError(Problem(f"cannot read file: {getattr(e, 'strerror', None) or e}", shown)) from None
    if stat.S_ISDIR(mode):
        raise GraphDefError(Problem("is a folder, not a data file", shown, hint="name a file inside it"))
    if not stat.S_ISREG(mode):
        raise GraphDefError(Problem("is a pipe, socket or device, not a regular file", shown,
                                    hint="save the data to a file and give its path"))


def _npz(path: Path) -> dict:
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise GraphDefError(Problem("not an NPZ archive", str(path),
                                        hint="a .npz file is a zip of arrays written by numpy.savez"))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: _npz_array(archive, k, path) for k in archive.files}
    except NPZ_ERRORS as e:
        raise GraphDefError(Problem(f"cannot read NPZ archive: {e}", str(path),
                                    hint="it is truncated or damaged; write it again with numpy.savez")) from None


def _npz_array(archive, name: str, path: Path) -> np.ndarray:
    """One member, refusing pickled objects by name (numpy's own message does not say which)."""
    try:
        value = archive[name]
    except ValueError as e:
        if "pickle" not in str(e):
            raise
        raise GraphDefError(Problem(f"array '{name}' holds Python objects, which are never unpickled", str(path),
                                    hint="save numeric arrays only")) from None
    except MemoryError:
        raise GraphDefError(Problem(f"array '{name}' is too large for this machine's memory", str(path))) from None
    if not isinstance(value, np.ndarray):
        raise GraphDefError(Problem(f"member '{name}' is not a NumPy array", str(path),
                                    hint="write the archive with numpy.savez")) from None
    return value


def _json(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphDefError(Problem(f"invalid JSON: {e.msg}", str(path), e.lineno, e.colno)) from None
    except RecursionError:
        raise GraphDefError(Problem("JSON nested too deeply", str(path),
                                    hint="arrays are lists of numbers nested once per dimension")) from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise GraphDefError(Problem(f"invalid JSON: {e}", str(path))) from None
    if not isinstance(data, dict):
        raise GraphDefError(Problem("expected a JSON object: name -> value", str(path)))
    return {name: _json_array(name, value, path) for name, value in data.items()}


def _json_array(name: str, value, path: Path) -> np.ndarray:
    """A number or nested lists of numbers as an array; anything else (ragged, strings, null) refused."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        array = None
    if array is None or array.dtype.kind not in NUMERIC_KINDS:
        raise GraphDefError(Problem(f"'{name}' is not a number or a rectangular array of numbers", str(path),
                                    hint="give numbers, or lists of equal length nested once per dimension"))
    return array


def _csv(path: Path) -> dict:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark is not a name
        rows = csv.reader(f)
        try:
            return _csv_columns(rows, path)
        except csv.Error as e:  # e.g. a field over csv.field_size_limit(): this is no table of numbers
            raise GraphDefError(Problem(f"not a readable CSV table: {e}", str(path), rows.line_num,
                                        hint="a data file holds a header row, then one number per cell")) from None


def _csv_columns(rows, path: Path) -> dict:
    header = _header(next(rows, None), path)
    columns = [[] for _ in header]
    for row in rows:
        if not row:
            continue
        if len(row) != len(header):
            raise GraphDefError(Problem(f"{len(row)} fields, the header has {len(header)}", str(path), rows.line_num,
                                        hint="every row needs one value per column"))
        for name, column, text in zip(header, columns, row):
            column.append(_number(text, name, path, rows.line_num))
    return {name: np.array(column) for name, column in zip(header, columns)}


def _header(header, path: Path) -> list:
    """The column names: present, each named, none twice (a second column of a name would hide the first)."""
    if not header:
        raise GraphDefError(Problem("empty CSV file; expected a header row", str(path)))
    header = [h.strip() for h in header]
    for i, name in enumerate(header):
        if not name:
            raise GraphDefError(Problem(f"column {i + 1} of the header has no name", str(path), 1,
                                        hint="the first row names every column"))
        if name in header[:i]:
            raise GraphDefError(Problem(f"two columns are named '{name}'", str(path), 1,
                                        hint="give every column its own name"))
    return header


def _number(text: str, column: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GraphDefError(Problem(f"column '{column}': {text.strip()[:40]!r} is not a number", str(path), line,
                                    hint="data columns must be numeric")) from None
    if not math.isfinite(value):
        raise GraphDefError(Problem(f"column '{column}' is {text.strip()}", str(path), line,
                                    hint="remove or fill missing values before training"))
    return value
