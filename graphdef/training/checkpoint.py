"""Checkpoints: one self-contained .npz per save (arrays plus a JSON `meta`), written atomically.

A checkpoint holds everything a resumed run needs to continue bit for bit: the model
document, the parameters, the optimizer state, the best weights so far, and where in
which epoch the run stood.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import GraphDefError, Problem
from ..serialize import atomic_write, npz_bytes

FOLDER = "checkpoints"


def write(run_dir: Path, arrays: dict, meta: dict, keep: int) -> Path:
    folder = Path(run_dir) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{meta['epoch']:04d}-batch-{meta['batch']:05d}.npz"
    atomic_write(path, npz_bytes({**arrays, "meta": np.array(json.dumps(meta))}))
    for old in _listed(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest(run_dir) -> tuple[dict, dict, Path]:
    """(arrays, meta, path) of the newest readable checkpoint of a run."""
    folder = Path(run_dir) / FOLDER
    found = _listed(folder) if folder.is_dir() else []
    for path in reversed(found):
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
            return arrays, json.loads(str(arrays.pop("meta"))), path
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            continue  # unreadable (only possible if written by something else): fall back to an older one
    raise GraphDefError(Problem("no readable checkpoint to resume from", str(folder),
                                hint="start a new run with `graphdef train MODEL`"))


def _listed(folder: Path) -> list[Path]:
    return sorted(folder.glob("epoch-*-batch-*.npz"))
