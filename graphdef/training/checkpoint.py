"""Checkpoints: one self-contained .npz per save (arrays plus a JSON `meta`), written atomically.

A checkpoint holds everything a resumed run needs to continue bit for bit: the model
document, the parameters, the optimizer state, the best weights so far, and where in
which epoch the run stood.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import GraphDefError, Problem
from ..format.serialize import atomic_write, npz_bytes

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


class RunLock:
    """One training per run directory at a time: RUN_DIR/.lock holds the writer's process id.

    A lock left by a process that no longer runs (killed) is taken over.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None:
                    raise GraphDefError(Problem(f"another training (process {holder}) is writing to this run "
                                                "directory", str(self.path.parent),
                                                hint="wait for it to finish, or train into another directory (-o)"))
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            for leftover in [*self.path.parent.glob(".*.tmp"), *self.path.parent.glob(f"{FOLDER}/.*.tmp")]:
                leftover.unlink(missing_ok=True)  # half-written files of a killed run: never read, now removed
            return self
        raise GraphDefError(Problem("cannot lock the run directory", str(self.path.parent)))

    def _holder(self) -> int | None:
        try:
            pid = int(self.path.read_text() or 0)
            os.kill(pid, 0)
        except (ValueError, OSError):
            return None
        return pid if pid != os.getpid() else None

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def _listed(folder: Path) -> list[Path]:
    return sorted(folder.glob("epoch-*-batch-*.npz"))
