"""Reading named arrays from files: NPZ archives (pickle disabled), JSON objects, CSV tables."""
from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from ..errors import GraphDefError, Problem

SUFFIXES = (".npz", ".json", ".csv")


def read_arrays(path) -> dict:
    """name -> array (CSV: one array per column, named by the header); failures name the file."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise GraphDefError(Problem(f"unsupported data file type '{path.suffix}'", str(path),
                                    hint=f"use one of: {', '.join(SUFFIXES)}"))
    if not path.is_file():
        raise GraphDefError(Problem("file not found", str(path), hint="check the path"))
    try:
        return {".npz": _npz, ".json": _json, ".csv": _csv}[path.suffix](path)
    except (OSError, UnicodeDecodeError) as e:
        raise GraphDefError(Problem(f"cannot read file: {e}", str(path))) from None


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    except (ValueError, zipfile.BadZipFile, EOFError) as e:
        raise GraphDefError(Problem(f"cannot read NPZ archive: {e}", str(path),
                                    hint="write it with numpy.savez; object arrays are refused")) from None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GraphDefError(Problem(f"invalid JSON: {e.msg}", str(path), e.lineno, e.colno)) from None
    if not isinstance(data, dict):
        raise GraphDefError(Problem("expected a JSON object: name -> value", str(path)))
    return data


def _csv(path: Path) -> dict:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's byte-order mark is not a name
        rows = csv.reader(f)
        header = next(rows, None)
        if not header:
            raise GraphDefError(Problem("empty CSV file; expected a header row", str(path)))
        header = [h.strip() for h in header]
        columns = [[] for _ in header]
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise GraphDefError(Problem(f"{len(row)} fields, the header has {len(header)}", str(path), line,
                                            hint="every row needs one value per column"))
            for name, column, text in zip(header, columns, row):
                column.append(_number(text, name, path, line))
    return {name: np.array(column) for name, column in zip(header, columns)}


def _number(text: str, column: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GraphDefError(Problem(f"column '{column}': {text.strip()!r} is not a number", str(path), line,
                                    hint="data columns must be numeric")) from None
    if not math.isfinite(value):
        raise GraphDefError(Problem(f"column '{column}' is {text.strip()}", str(path), line,
                                    hint="remove or fill missing values before training"))
    return value
