"""Reading input values from files: NPZ archives (pickle disabled) and JSON objects."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import GraphDefError, Problem


def read_arrays(path) -> dict:
    """name -> array from a .npz or .json file; any failure names the file and what to fix."""
    path = Path(path)
    if not path.is_file():
        raise GraphDefError(Problem("file not found", str(path), hint="check the path"))
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise GraphDefError(Problem(f"cannot read NPZ archive: {e}", str(path),
                                        hint="write it with numpy.savez")) from None
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise GraphDefError(Problem(f"invalid JSON: {e.msg}", str(path), e.lineno, e.colno)) from None
        if not isinstance(data, dict):
            raise GraphDefError(Problem("expected a JSON object: name -> value", str(path)))
        return data
    raise GraphDefError(Problem(f"unsupported input file type '{path.suffix}'", str(path), hint="use .npz or .json"))
