"""Checkpoints: one self-contained .npz per save (arrays plus a JSON `meta`), written atomically.

A checkpoint holds everything a resumed run needs to continue bit for bit: the model's
self-contained document, the parameters and state (param/NAME), the optimizer state (opt/...), the
best weights so far (best/NAME), and where the run stood. It is named after the epoch
the user saw: epoch-0003.npz once epoch 3 is done, epoch-0004-batch-00005.npz when the
run stopped in epoch 4 after its 5th batch.

A checkpoint is checked before it is used (the sizes its arrays declare against the
bytes it holds, its meta, its arrays against its model), so a damaged, truncated,
foreign or hand-edited file is an error naming it; resuming then falls back to the newest
intact checkpoint and says so. `load_model` gives a checkpoint's model, to evaluate or
export an epoch of a run.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import GraphDefError, Problem
from ..format import serialize
from ..format.loader import from_document
from ..format.source import LIMITS, Limits

FOLDER = "checkpoints"
NAME = re.compile(r"epoch-(\d+)(?:-batch-(\d+))?\.npz")
MAX_BYTES = 4 * 8 * LIMITS.max_parameter_values  # parameters, two optimizer slots and the best ones, in float64
UNREADABLE = (OSError, ValueError, EOFError, KeyError, MemoryError, NotImplementedError, RuntimeError,
              zipfile.BadZipFile, zlib.error, struct.error)  # what numpy and zipfile raise on a damaged file
DAMAGED_HINT = "it was damaged or changed after it was written; resume from an older checkpoint or train again"


def file_name(epoch: int, batch: int) -> str:
    """The name for a run that has done `epoch` epochs and `batch` batches of the next one."""
    return f"epoch-{epoch:04d}.npz" if batch == 0 else f"epoch-{epoch + 1:04d}-batch-{batch:05d}.npz"


def write(run_dir: Path, arrays: dict, meta: dict, keep: int) -> Path:
    folder = serialize.folder(Path(run_dir) / FOLDER)
    path = folder / file_name(meta["epoch"], meta["batch"])
    serialize.atomic_write(path, serialize.npz_bytes({**arrays, "meta": np.array(json.dumps(meta))}))
    for old in _listed(folder)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def document(model, training: dict) -> dict:
    """The document a checkpoint carries: self-contained, its parameters placeholders (zeros) for
    the values the checkpoint's param/ arrays hold (so it never names a weights file)."""
    doc = serialize.document(model, training)
    doc.pop("weights", None)
    for section, values in (("parameters", model.parameters), ("state", model.state)):
        declared = model.doc.get(section) or {}
        if values:
            doc[section] = {name: {"shape": list(value.shape), "init": "zeros",
                                   **{k: v for k, v in declared.get(name, {}).items() if k == "description"}}
                            for name, value in values.items()}
    return doc


# -- reading -----------------------------------------------------------------------------

class Found(NamedTuple):
    """The newest intact checkpoint of a run: its model (parameters restored), arrays, meta and
    path, and one Problem for each newer checkpoint skipped because it is damaged."""
    model: object
    arrays: dict
    meta: dict
    path: Path
    skipped: list


def newest(run_dir, limits: Limits = LIMITS) -> Found:
    """What resuming starts from: newest first, each checkpoint is checked; a damaged one is skipped
    (and named), so a run is never stuck on its last file while an older one is intact."""
    folder = Path(run_dir) / FOLDER
    skipped = []
    for path in reversed(_listed(folder) if folder.is_dir() else []):
        try:
            arrays, meta = read(path)
            return Found(load_model(path, limits=limits, read_as=(arrays, meta)), arrays, meta, path, skipped)
        except GraphDefError as e:
            skipped.append(e.errors[0])
    raise GraphDefError([*skipped, Problem("no readable checkpoint to resume from", str(folder),
                                           hint="start a new run with `graphdef train MODEL`")])


def latest(run_dir) -> tuple[dict, dict, Path]:
    """(arrays, meta, path) of the newest intact checkpoint of a run."""
    found = newest(run_dir)
    return found.arrays, found.meta, found.path


def load_model(path, *, seed: int | None = None, dtype: str | None = None, limits: Limits = LIMITS,
               read_as: tuple | None = None):
    """The model of a checkpoint file, with the parameters it holds (what `graphdef.load` gives
    for RUN_DIR/checkpoints/FILE.npz). Its training data, if a file, is found by absolute path;
    `read_as` is (arrays, meta) when `read` has read the file already."""
    path = Path(path)
    arrays, meta = read_as or read(path)
    try:
        model = from_document(meta["doc"], file=str(path), seed=seed, dtype=dtype, limits=limits)
    except GraphDefError as e:
        raise GraphDefError([_problem(path, f"its model: {p.path + ': ' if p.path else ''}{p.message}")
                             for p in e.errors[:5]]) from None
    problems = _state_problems(model, arrays)
    if problems:
        raise GraphDefError([_problem(path, p) for p in problems[:5]])
    for name, value in model.variables.items():
        value[...] = arrays[f"param/{name}"]
    model.untrained = []
    return model


def read(path) -> tuple[dict, dict]:
    """A checkpoint's arrays and its meta, both checked; a GraphDefError naming the file otherwise."""
    path = Path(path)
    try:
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except GraphDefError:
        raise
    except UNREADABLE as e:
        raise _damaged(path, f"unreadable ({type(e).__name__}: {e})") from None
    return arrays, _meta(path, arrays.pop("meta", None))


def _check_sizes(path: Path) -> None:
    """Refuse, before anything is read, what would cost more than the file holds: a special file,
    an oversized one, an array declaring more bytes than its entry has, pickled objects."""
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise _damaged(path, "not a regular file")
    if status.st_size > MAX_BYTES:
        raise _damaged(path, f"it is larger than {MAX_BYTES:,} bytes")
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            total += info.file_size
            if total > MAX_BYTES:
                raise _damaged(path, f"its arrays hold more than {MAX_BYTES:,} bytes")
            with archive.open(info) as member:
                shape, _, dtype = _header(member)
            if dtype.hasobject:
                raise _damaged(path, f"{info.filename} holds Python objects (never unpickled)")
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise _damaged(path, f"{info.filename} declares shape {list(shape)} of {dtype}, more than the "
                               f"{info.file_size:,} bytes it holds (truncated)")


def _header(member) -> tuple:
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise ValueError(f"unsupported .npy version {version}")
    return readers[version](member)


def _problem(path: Path, what: str) -> Problem:
    return Problem(f"damaged checkpoint: {what}", str(path), hint=DAMAGED_HINT)


def _damaged(path: Path, what: str) -> GraphDefError:
    return GraphDefError(_problem(path, what))


# -- what a checkpoint must hold ------------------------------------------------------------

def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value) -> bool:
    return _real(value) and isinstance(value, int) and value >= 0


META = {  # key -> (check, what it must be)
    "epoch": (_count, "a count"),
    "batch": (_count, "a count"),
    "sums": (lambda v: isinstance(v, dict) and all(_real(v.get(k)) for k in ("loss", "count"))
             and isinstance(v.get("metrics", {}), dict), "{loss, count} as numbers and {metrics}"),
    "best": (lambda v: isinstance(v, dict) and (v.get("value") is None or _real(v["value"]))
             and (v.get("epoch") is None or _count(v["epoch"])) and _count(v.get("wait")), "{value, epoch, wait}"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) and all(map(_real, r.values())) for r in v),
                "a list of rows of numbers"),
    "doc": (lambda v: isinstance(v, dict), "a model document"),
}


def _meta(path: Path, raw) -> dict:
    if raw is None:
        raise _damaged(path, "it has no meta (not a checkpoint written by graphdef)")
    try:
        meta = json.loads(str(raw)) if raw.dtype.kind == "U" and raw.ndim == 0 else None
    except (ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict):
        raise _damaged(path, "its meta is not a JSON object")
    for key, (check, what) in META.items():
        if not check(meta.get(key)):
            raise _damaged(path, f"meta '{key}' is {'missing' if key not in meta else 'not ' + what}")
    if len(meta["history"]) != meta["epoch"]:
        raise _damaged(path, f"meta 'history' has {len(meta['history'])} rows for {meta['epoch']} epochs")
    return meta


def _state_problems(model, arrays: dict) -> list[str]:
    """What is wrong with the arrays for this model: each parameter, its optimizer slots and best
    value of the parameter's shape, floats and finite; the optimizer's step a count; nothing else."""
    params, problems = model.variables, []
    problems += [f"no array param/{n}" for n in params if f"param/{n}" not in arrays]
    best = [k for k in arrays if k.startswith("best/")]
    problems += [f"no array best/{n}" for n in params if best and f"best/{n}" not in arrays]
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if key == "opt/step":
            ok = value.ndim == 0 and np.issubdtype(value.dtype, np.integer) and value >= 0
            problems += [] if ok else [f"opt/step is not a count: {value!r}"]
            continue
        name = name.rsplit("/", 1)[0] if kind == "opt" else name
        if kind not in ("param", "opt", "best") or name not in params:
            problems.append(f"unexpected array {key} (not in this model)")
        elif value.shape != params[name].shape or not np.issubdtype(value.dtype, np.floating):
            problems.append(f"{key} has shape {list(value.shape)} and dtype {value.dtype}, "
                            f"expected {list(params[name].shape)} of floats")
        elif not np.isfinite(value).all():
            problems.append(f"{key} holds NaN or infinity")
    return problems + ([] if "opt/step" in arrays else ["no array opt/step"])


# -- the run directory ------------------------------------------------------------------------

class RunLock:
    """One training per run directory at a time: RUN_DIR/.lock holds the writer's process id.

    A lock left by a process that no longer runs (killed) is taken over.
    """

    def __init__(self, run_dir):
        self.path = Path(run_dir) / ".lock"

    def __enter__(self):
        serialize.folder(self.path.parent)
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
            except OSError as e:
                raise GraphDefError(Problem(f"cannot lock the run directory: {e.strerror or e}",
                                            str(self.path.parent), hint="it must be a folder you can write to; "
                                            "train elsewhere (-o)")) from None
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
    """The checkpoints in a folder, oldest first (by the progress their names say)."""
    found = [(p, NAME.fullmatch(p.name)) for p in folder.glob("epoch-*.npz")]
    return [p for p, m in sorted(((p, m) for p, m in found if m), key=lambda pm: _progress(pm[1]))]


def _progress(match) -> tuple[int, int]:
    """(epochs done, batches into the next) a name says; an older version's epoch-0003-batch-00000
    (after epoch 3) reads right, its mid-epoch names read one epoch early (resumed a little earlier)."""
    epoch, batch = int(match[1]), int(match[2] or 0)
    return (epoch - 1, batch) if batch else (epoch, 0)
