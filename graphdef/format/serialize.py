"""Saving models: model.yaml (the same format, parameters referring to a weights file) and its weights.

Every file is written atomically (temporary file, fsync, rename), so a crash at any moment
leaves either the old file or the new one, never a torn one. The pair is replaced as one
unit: the weights go under a content-addressed name (weights-<sha256 prefix>.npz) first,
then model.yaml, which names them, is replaced; weights no model file names any more are
removed last. A reader therefore never sees a model.yaml naming a missing or different
weights file. A saved document is self-contained: the functions it calls from included
files are copied into it, so it loads wherever it is moved.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import signal
import stat
import tempfile
from pathlib import Path

import numpy as np
import yaml

from ..errors import GraphDefError, Problem
from .library import included
from .schema import schema
from .source import Source

WEIGHTS_FILE = "weights.npz"  # what older versions wrote beside model.yaml (still loads)
DATA_FILES = (".csv", ".npz")
ORDER = ("graphdef", "name", "description", "dtype", "functions", "weights", "inputs", "parameters", "state",
         "constants", "nodes", "outputs", "loss", "training")
PAUSE_AT = "GRAPHDEF_PAUSE_AT"  # test hook, see _write_point
_write_points = 0


def atomic_write(path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old content or the new, nothing between.

    Only a regular file (or a new path) is ever replaced: a device such as /dev/null, a FIFO
    or a directory in its place is refused, never replaced, opened or blocked on. A failed
    write (a full disk, a missing permission) leaves the old file as it was.
    """
    path = Path(path)
    check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _cannot_write(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide saved models from other users
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _write_point()
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise _cannot_write(path, e) from None
        raise
    _write_point()


def check_target(path: Path) -> None:
    """Refuse to write over anything but a regular file: devices, FIFOs, sockets and directories."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise _cannot_write(path, e) from None
    if not stat.S_ISREG(mode):
        raise GraphDefError(Problem(f"cannot write: it is {_kind(mode)}, not a regular file", str(path),
                                    hint="give the path of a file to create or replace"))


def folder(directory) -> Path:
    """`directory`, created if needed; a file, device or unwritable place in the way is a clear error."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise GraphDefError(Problem(f"cannot use it as a folder: it is {_kind(os.lstat(directory).st_mode)}",
                                    str(directory), hint="give the path of a folder (new or existing)")) from None
    except OSError as e:
        raise _cannot_write(directory, e) from None
    return directory


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISLNK, "a symbolic link to nothing"))
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def _cannot_write(path: Path, e: OSError) -> GraphDefError:
    return GraphDefError(Problem(f"cannot write: {e.strerror or e}", str(path), hint=_write_hint(path, e.errno)))


def _write_hint(path: Path, code: int | None = None) -> str:
    untouched = f"{path.name} as it was before is untouched"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the folder {path.parent} is read-only: write elsewhere (-o) or fix its permissions; {untouched}"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return f"{path.parent} is not an existing folder: create it, or check the path"
    return f"free disk space or fix permissions; {untouched}"


def _sync_folder(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_point() -> None:
    """Where tests kill a process mid-save: with GRAPHDEF_PAUSE_AT=N:FILE set, the N-th write point
    (each atomic write has two: its data complete but not renamed, and renamed) creates FILE and
    stops the process (SIGSTOP), for the test to kill it there. Unset, this costs one lookup."""
    wanted = os.environ.get(PAUSE_AT)
    if not wanted:
        return
    global _write_points
    _write_points += 1
    point, _, marker = wanted.partition(":")
    if _write_points == int(point):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGSTOP)


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the saved document ---------------------------------------------------------------

def save(model, directory, training: dict | None = None, name: str = "model.yaml",
         weights: str | None = None) -> Path:
    """Write `name` (model.yaml) and its weights into `directory`; returns the model file's path.

    The weights file is content-addressed (weights-<sha256 prefix>.npz; see the module's
    docstring for why replacing the pair never tears) unless `weights` names it, as
    `graphdef import --weights` does: a named file is replaced in place, before the model file.
    `training` replaces the model's training block (given relative to `directory`).
    """
    directory = folder(directory)
    path = directory / name
    check_target(path)
    blob = npz_bytes(model.variables)
    digest = sha256(blob)
    weights = weights or weights_name(name, digest)
    check_target(directory / weights)
    doc = stored_document(model, {"file": weights, "sha256": digest}, training, directory)
    previous = named_weights(path)
    atomic_write(directory / weights, blob)
    atomic_write(path, dump(doc, f"weights in {weights}"))
    for stale in set(weights_files(directory, name)) - {weights, previous}:
        (directory / stale).unlink(missing_ok=True)  # the one before is kept: a reader may be on its way to it
    return path


def weights_name(model_file: str, digest: str) -> str:
    """weights-<16 hex>.npz beside model.yaml; NAME.weights-<16 hex>.npz beside another NAME.yaml."""
    stem = Path(model_file).stem
    return f"{'' if stem == 'model' else stem + '.'}weights-{digest[:16]}.npz"


def weights_files(directory: Path, model_file: str = "model.yaml") -> list[str]:
    """The content-addressed weights files a model file of this name writes, found in `directory`."""
    pattern = re.compile(re.escape(weights_name(model_file, "")[:-4]) + r"[0-9a-f]{16}\.npz")
    return sorted(p.name for p in Path(directory).glob("*weights-*.npz") if pattern.fullmatch(p.name))


def named_weights(path: Path) -> str | None:
    """The weights file an existing model file (as `save` writes it) names; None when there is none.

    Read with a pattern, not parsed: a save must stay cheap, and a file written otherwise at
    worst loses the one-save grace of its weights file."""
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return None
    found = re.search(r"^weights: \{file: ([^\s,{}]+)", text, re.M)
    return found[1] if found else None


def stored_document(model, weights: dict, training: dict | None = None, directory=None) -> dict:
    """The document of a saved model: `document`, every parameter referring to its array in the
    weights file `weights` ({file, sha256})."""
    doc = document(model, training, directory)
    doc["weights"] = weights
    for section, values in (("parameters", model.parameters), ("state", model.state)):
        declared = model.doc.get(section) or {}  # calls' parameters (h1/W) are written out too
        if values:
            doc[section] = {name: _stored(name, declared.get(name, {}), value) for name, value in values.items()}
    return doc


def document(model, training: dict | None = None, directory=None) -> dict:
    """The model's document made self-contained: the functions of its includes copied into
    `functions` (`include` dropped), and a data file of its training block found from
    `directory` (absolute when None). `training`, if given, replaces the block as it is."""
    doc = {k: v for k, v in model.doc.items() if k != "include"}
    source = Source(model.doc, model.source.file if model.source else None)
    functions = {name: fn.source.data["functions"][name] for name, fn in included(source).items()}
    if functions:
        doc["functions"] = functions
    block = training if training is not None else rebased(doc.get("training"), model.folder, directory)
    if block is not None:
        doc["training"] = block
    return doc


def rebased(block: dict | None, model_folder, directory=None) -> dict | None:
    """The training block with its data file (found as training finds it: as given, else beside the
    model) written relative to `directory`, or absolute when `directory` is None."""
    source = ((block or {}).get("data") or {}).get("source")
    if not isinstance(source, str) or Path(source).suffix not in DATA_FILES:
        return block
    places = [Path(source)] + ([Path(model_folder) / source] if model_folder is not None else [])
    found = next((p.resolve() for p in places if p.exists()), places[-1].resolve())
    where = str(found) if directory is None else os.path.relpath(found, Path(directory).resolve())
    return {**block, "data": {**block["data"], "source": where}}


def dump(doc: dict, note: str) -> bytes:
    """The document as YAML, sections in the usual order, vertices one per line."""
    doc = _one_per_line(doc)
    if isinstance(doc.get("functions"), dict):
        doc["functions"] = {name: _one_per_line(spec) for name, spec in doc["functions"].items()}
    ordered = {k: doc[k] for k in ORDER if k in doc} | {k: v for k, v in doc.items() if k not in ORDER}
    text = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=None,
                     width=120)
    return (f"# yaml-language-server: $schema={schema()['$id']}\n# Written by graphdef; {note}.\n" + text).encode()


def _one_per_line(doc: dict) -> dict:
    """The document (or function body) with each input, parameter, constant and node on one line."""
    doc = dict(doc)
    for section in ("inputs", "parameters", "state", "constants", "nodes"):
        if isinstance(doc.get(section), dict):
            doc[section] = {name: _Flow(spec) if isinstance(spec, dict) else spec
                            for name, spec in doc[section].items()}
    return doc


def _stored(key: str, spec: dict, value: np.ndarray) -> dict:
    stored = {"shape": list(value.shape), "weights": key}
    if "description" in spec:
        stored["description"] = spec["description"]
    return stored


class _Flow(dict):
    """A mapping written on one line, as people write vertices: `c: {op: add, inputs: [a, b]}`."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml's emitter when PyYAML has it: 10x faster
    pass


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))
