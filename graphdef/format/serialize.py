"""Saving models: model.yaml (the same format, parameters referring to weights.npz) and weights.npz.

Every file is written atomically (temporary file, fsync, rename), so a crash at any moment
leaves either the old file or the new one, never a torn one.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml

from ..errors import GraphDefError, Problem
from .schema import schema

WEIGHTS_FILE = "weights.npz"
ORDER = ("graphdef", "name", "description", "dtype", "weights", "inputs", "parameters", "constants", "nodes",
         "outputs", "loss", "training")


def atomic_write(path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old content or the new, nothing between.

    A failed write (a full disk, a missing permission) leaves the old file as it was.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise GraphDefError(Problem(f"cannot write: {e.strerror or e}", str(path), hint=_write_hint(path))) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide saved models from other users
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise GraphDefError(Problem(f"cannot write: {e.strerror or e}", str(path),
                                        hint=_write_hint(path))) from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_hint(path: Path) -> str:
    return f"free disk space or fix permissions; {path.name} as it was before is untouched"


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save(model, directory, training: dict | None = None, name: str = "model.yaml",
         weights: str = WEIGHTS_FILE) -> Path:
    """Write model.yaml and weights.npz (or the names given) into `directory`; returns the model file's path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = npz_bytes(model.parameters)
    atomic_write(directory / weights, blob)
    doc = dict(model.doc)
    doc["weights"] = {"file": weights, "sha256": sha256(blob)}
    declared = model.doc.get("parameters") or {}  # calls' parameters (h1/W) are written out too
    doc["parameters"] = {name: _stored(name, declared.get(name, {}), value) for name, value in model.parameters.items()}
    if training is not None:
        doc["training"] = training
    for section in ("inputs", "parameters", "constants", "nodes"):
        if doc.get(section):
            doc[section] = {name: _Flow(spec) if isinstance(spec, dict) else spec for name, spec in doc[section].items()}
    text = yaml.dump({k: doc[k] for k in ORDER if k in doc}, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None, width=120)
    header = f"# yaml-language-server: $schema={schema()['$id']}\n# Written by graphdef; weights in {weights}.\n"
    path = directory / name
    atomic_write(path, (header + text).encode("utf-8"))
    return path


def _stored(name: str, spec: dict, value: np.ndarray) -> dict:
    stored = {"shape": list(value.shape), "weights": name}
    if "description" in spec:
        stored["description"] = spec["description"]
    return stored


class _Flow(dict):
    """A mapping written on one line, as people write vertices: `c: {op: add, inputs: [a, b]}`."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
    "tag:yaml.org,2002:map", data.items(), flow_style=True))
