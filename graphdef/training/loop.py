"""The training loop: shuffled minibatches, optimizer steps, metrics, checkpoints, early stopping.

Everything random is derived from the seed and the epoch number, and everything else a
run depends on is in its checkpoints, so an interrupted run resumes bit for bit.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import metrics, plot, report
from ..format import serialize
from ..errors import GraphDefError, Problem
from ..format.loader import load
from . import checkpoint
from .config import TrainConfig, check_overrides, resolve
from .feed import feed, read_source
from .optimizers import Optimizer, clip_by_norm, scheduled_lr

EVAL_CHUNK = 4096


class History(list):
    """One dict per finished epoch; `.model`, `.run_dir`, `.saved` (the model.yaml written), `.status`
    (finished, early stopped, interrupted) and, with early stopping, `.best_epoch` (whose weights were kept)."""

    model = run_dir = status = best_epoch = saved = None
    rank = 0  # of the process that trained, under torchrun (only rank 0 writes and prints)


def train(model=None, data=None, *, run_dir=None, resume=None, force: bool = False, callback=None,
          out=None, check_numerics: bool = False, backend: str = "numpy", device: str | None = None,
          **overrides) -> History:
    """Train a model (a Model or a path) and save it in a run directory; returns the history.

    data: a built-in name (xor, moons, spirals, digits), a .csv/.npz path, or a dict of arrays;
    default: the model's `training.data`. Other settings of the training block can be given
    as keyword overrides (epochs=, lr=, optimizer=, batch_size=, seed=, ...).
    resume: a run directory to continue from its newest checkpoint.
    callback(progress) is called after every batch; returning True stops the run as Ctrl-C does.
    check_numerics: check every vertex of every batch for NaN or infinity (a NaN loss always stops the run).
    backend: "numpy" (graphdef's interpreter) or "torch" (the model lowered to a torch module, on `device`:
    cpu, cuda or mps; default cuda when available). Launched by torchrun, the torch backend trains data
    parallel (see torch_engine.py): rank 0 alone prints and writes the run directory.
    """
    out = out or sys.stderr
    data = str(data) if isinstance(data, Path) else data
    _check_backend(backend, device)
    cluster = _launched(backend, device)
    try:
        with _ranked(cluster):
            launch = _Launch(backend, device, cluster)
            out = out if launch.leader else io.StringIO()  # the other ranks' lines would repeat rank 0's
            if resume is not None:
                with launch.lock(_existing(resume)):
                    return _Run.resumed(Path(resume), data, overrides, out, check_numerics, launch).fit(callback)
            if not hasattr(model, "graph"):
                check_overrides(overrides)  # before loading: a bad seed must not reach the initializers
                model = load(model, seed=overrides.get("seed"))
            config = resolve(model, {**overrides, "data": data if isinstance(data, (str, Path)) else None})
            feeds = _feeds(model, config, data)
            run_dir = launch.agree(lambda: _new_run_dir(run_dir, model.name, force))
            with launch.lock(run_dir):
                if launch.leader:
                    _clear(run_dir)
                return _Run(model, config, feeds, run_dir, out, check_numerics, launch).fit(callback)
    finally:
        if cluster is not None:
            cluster.close()


class _Launch:
    """Where a run's steps execute: the backend, its device, and the process group under torchrun."""

    def __init__(self, backend: str, device: str | None, cluster=None):
        self.backend, self.device, self.cluster = backend, device, cluster
        self.leader = cluster is None or cluster.leader

    def engine(self, model):
        """What does the per-step work: the Model itself (numpy), or a TorchEngine on its module."""
        if self.backend == "numpy":
            return model
        from .torch_engine import TorchEngine
        return TorchEngine(model, self.device, self.cluster)

    def agree(self, choose):
        """choose() on rank 0, its result on every rank (a run directory's name)."""
        return choose() if self.cluster is None else self.cluster.share(choose() if self.leader else None)

    def lock(self, run_dir):
        """The run directory's lock, held by the one process that writes (rank 0)."""
        return checkpoint.RunLock(run_dir) if self.leader else contextlib.nullcontext()

    def any(self, flag: bool) -> bool:
        return flag if self.cluster is None else self.cluster.any(flag)

    def barrier(self) -> None:
        if self.cluster is not None:
            self.cluster.barrier()


def _check_backend(backend: str, device: str | None) -> None:
    if backend not in ("numpy", "torch"):
        raise GraphDefError(Problem(f"unknown backend '{backend}'", hint="choose numpy or torch"))
    if backend == "numpy" and device not in (None, "cpu"):
        raise GraphDefError(Problem(f"the numpy backend runs on the cpu, not on '{device}'",
                                    hint="use --backend torch for another device"))


def _launched(backend: str, device: str | None):
    """The process group when torchrun launched several processes for the torch backend, else None."""
    if backend != "torch":
        return None
    from .torch_engine import Cluster
    return Cluster.launched(device)


@contextlib.contextmanager
def _ranked(cluster):
    """Errors of a rank say which rank met them (torchrun then stops the others)."""
    try:
        yield
    except GraphDefError as e:
        if cluster is None:
            raise
        raise cluster.failed(e) from None
    except Exception as e:
        if cluster is not None:
            print(f"graphdef: rank {cluster.rank} of {cluster.size} failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
        raise


def evaluate(model, data=None, *, backend: str = "numpy", device: str | None = None) -> dict:
    """Loss and metrics on `data`, or on the held-out split of the model's own training data
    (computed by `backend`, numpy or torch, on `device`)."""
    data = str(data) if isinstance(data, Path) else data
    _check_backend(backend, device)
    engine = _Launch(backend, device).engine(model)
    config = resolve(model, {"data": data if isinstance(data, (str, Path)) else None})
    feeds = _feeds(model, config, data)
    rows = len(next(iter(feeds.values())))
    if data is None and config.validation_split > 0:
        rows = split(rows, config.seed, config.validation_split)[0]
    else:
        rows = np.arange(rows)
    terms = report.loss_terms(model, config.loss)
    result, tracker = _measure(engine, config, feeds, rows, _pairs(engine, config, feeds, terms), terms)
    confusions = {k: m.tolist() for k, m in tracker.confusions().items()}
    return {**result, **confusions, "samples": int(len(rows))}


def predict(model, data, *, backend: str = "numpy", device: str | None = None) -> dict:
    """The prediction vertices' values for every sample of `data` (targets are not needed), computed by
    `backend` (numpy or torch, on `device`)."""
    data = str(data) if isinstance(data, Path) else data
    _check_backend(backend, device)
    engine = _Launch(backend, device).engine(model)
    config = resolve(model, {"data": data if isinstance(data, str) else None}, need_loss=False)
    needed = [n for n in model.inputs if n in model.ancestors(config.predictions)]
    feeds = feed(model, read_source(data, model.folder), (config.data or {}).get("inputs"), needed)
    n = len(next(iter(feeds.values()))) if feeds else 0
    parts = {p: [] for p in config.predictions}
    for start in range(0, n, EVAL_CHUNK):
        values = engine.predict_batch({k: a[start:start + EVAL_CHUNK] for k, a in feeds.items()}, config.predictions)
        for p, chunks in parts.items():
            chunks.append(values[p])
    return {p: np.concatenate(chunks) for p, chunks in parts.items()}


def split(n: int, seed: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(validation rows, training rows): a seeded permutation, the first `fraction` held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    return order[:n_val], order[n_val:]


def _feeds(model, config: TrainConfig, data) -> dict:
    source = data if isinstance(data, dict) else (config.data or {}).get("source")
    if source is None:
        raise GraphDefError(model.locate(("training",), "no training data",
                                         "give --data (xor, moons, spirals, digits, or a .csv/.npz file) "
                                         "or set training.data.source"))
    return feed(model, read_source(source, model.folder), (config.data or {}).get("inputs"), list(model.inputs))


def _new_run_dir(run_dir, name: str, force: bool) -> Path:
    """The run directory: given, or runs/NAME (runs/NAME-2, ... never reused); an existing one only with force."""
    if run_dir is None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".") or "model"  # a/../../x must stay in runs/
        run_dir, n = Path("runs") / name, 2
        while run_dir.exists():
            run_dir, n = Path("runs") / f"{name}-{n}", n + 1
    run_dir = serialize.folder(run_dir)  # a file, a device or a read-only place is refused here, clearly
    if any(p.name != ".lock" for p in run_dir.iterdir()) and not force:
        raise GraphDefError(Problem(f"run directory {run_dir} already exists and is not empty",
                                    hint="choose another -o, continue it with --resume, or pass --force"))
    return run_dir


def _existing(run_dir) -> Path:
    """A run directory to resume: it must exist (resuming never creates one)."""
    if not Path(run_dir).is_dir():
        raise GraphDefError(Problem("no run directory to resume here", str(run_dir),
                                    hint="give the RUN_DIR a training wrote (-o), e.g. runs/NAME"))
    return Path(run_dir)


def _clear(run_dir: Path) -> None:
    """Remove what an earlier run wrote (with --force), once the directory is ours."""
    for stale in ("model.yaml", serialize.WEIGHTS_FILE, *serialize.weights_files(run_dir), "metrics.csv", plot.CURVES):
        (run_dir / stale).unlink(missing_ok=True)
    for old in (run_dir / checkpoint.FOLDER).glob("*.npz"):
        old.unlink()


def _pairs(engine, config: TrainConfig, feeds: dict, terms=()) -> list:
    """What to report per (prediction, target) pair: the training block's metrics, or defaults chosen
    from the targets' values and the predictions' shapes (a forward pass on two samples gives them)."""
    predictions = config.predictions if config.targets else []
    sample = engine.predict_batch({n: a[:2] for n, a in feeds.items()}, [config.loss, *predictions, *terms])
    return metrics.plan(config.metrics, {p: sample[p] for p in predictions}, {t: feeds[t] for t in config.targets})


def _measure(engine, config: TrainConfig, feeds: dict, rows: np.ndarray, pairs: list, terms=()):
    """(loss (mean over samples) and metrics, their Tracker) on the given rows, forward only, in chunks
    (`engine`: a Model or a TorchEngine)."""
    loss_sum, tracker = 0.0, metrics.Tracker(pairs, terms)
    for start in range(0, len(rows), EVAL_CHUNK):
        idx = rows[start:start + EVAL_CHUNK]
        values = engine.predict_batch({n: a[idx] for n, a in feeds.items()}, [config.loss, *config.predictions, *terms])
        loss_sum += float(np.mean(values[config.loss])) * len(idx)
        tracker.update(values, len(idx))
    return {"loss": loss_sum / max(len(rows), 1), **tracker.result()}, tracker


class _Run:
    """One training run: the model, its data, and all state a checkpoint must carry."""

    def __init__(self, model, config: TrainConfig, feeds: dict, run_dir: Path, out, check_numerics: bool = False,
                 launch: _Launch | None = None):
        self.model, self.config, self.feeds, self.run_dir, self.out = model, config, feeds, run_dir, out
        self.check_numerics = check_numerics
        self.launch = launch or _Launch("numpy", None)
        self.engine = self.launch.engine(model)  # does each step: the model itself, or a TorchEngine
        n = len(next(iter(feeds.values())))
        self.val_rows, self.train_rows = split(n, config.seed, config.validation_split)
        if len(self.train_rows) == 0:
            raise GraphDefError(f"no training samples left after holding out {config.validation_split:.0%} of {n}")
        self.terms = report.loss_terms(model, config.loss)
        self.pairs = _pairs(self.engine, config, feeds, self.terms)
        self.tracker = metrics.Tracker(self.pairs, self.terms)
        self.optimizer = Optimizer(config.optimizer["name"], **{k: v for k, v in config.optimizer.items() if k != "name"})
        self.params = list(model.parameters)
        self.history = History()
        self.history.rank = 0 if self.launch.cluster is None else self.launch.cluster.rank
        self.epoch = self.batch = 0
        self.sums = {"loss": 0.0, "count": 0.0}
        self.best = {"value": None, "epoch": None, "wait": 0}
        self.best_params = None
        self.stop_requested = False
        self._check_monitor()

    # -- resuming ---------------------------------------------------------------

    @classmethod
    def resumed(cls, run_dir: Path, data, overrides: dict, out, check_numerics: bool = False,
                launch: _Launch | None = None) -> "_Run":
        found = checkpoint.newest(run_dir)  # checked: its model holds the checkpoint's parameters
        for problem in found.skipped:
            print(f"skipping {problem}", file=out)
        model = found.model
        config = resolve(model, {**overrides, "data": data if isinstance(data, (str, Path)) else None})
        run = cls(model, config, _feeds(model, config, data), run_dir, out, check_numerics, launch)
        try:
            run.restore(found.arrays, found.meta)
        except GraphDefError as e:  # metrics' sums that do not fit the model's metrics: name the file
            raise GraphDefError(Problem(e.errors[0].message, str(found.path), hint=e.errors[0].hint)) from None
        older = ", the newest intact checkpoint" if found.skipped else ""
        print(f"resuming {run_dir} from {found.path.name}{older} (epoch {run.epoch + 1}, batch {run.batch + 1})",
              file=out)
        return run

    def restore(self, arrays: dict, meta: dict) -> None:
        """The optimizer and loop state of a checkpoint (its parameters are in the model already)."""
        self.optimizer.load({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}, self.engine.parameters)
        best = {k[5:]: v for k, v in arrays.items() if k.startswith("best/")}
        self.best_params = best or None
        self.epoch, self.batch, self.sums, self.best = meta["epoch"], meta["batch"], meta["sums"], meta["best"]
        if "metrics" in self.sums:  # (a checkpoint of an older graphdef has none: the epoch's metrics restart)
            self.tracker.load(self.sums.pop("metrics"))
        self.history.extend(meta["history"])

    def _pull(self) -> None:
        """The trained values into the graphdef Model, which every save writes (a no-op on numpy)."""
        if self.engine is not self.model:
            self.engine.to_model()

    def _save_checkpoint(self) -> None:
        if not self.launch.leader:  # rank 0 writes; the others hold the same values
            return
        self._pull()
        arrays = {f"param/{k}": v for k, v in self.model.variables.items()}
        arrays |= {f"opt/{k}": v for k, v in self.optimizer.arrays().items()}
        arrays |= {f"best/{k}": v for k, v in (self.best_params or {}).items()}
        doc = checkpoint.document(self.model, self._training_block(absolute=True))
        meta = {"epoch": self.epoch, "batch": self.batch, "sums": {**self.sums, "metrics": self.tracker.state()},
                "best": self.best,
                "history": list(self.history), "doc": doc}
        serialize.save(self.model, self.run_dir, self._training_block(absolute=False))  # first: a run with a
        checkpoint.write(self.run_dir, arrays, meta, self.config.keep_checkpoints)  # checkpoint has a model.yaml

    def _training_block(self, absolute: bool) -> dict:
        """The effective settings; file data sources made absolute (checkpoints) or relative to the run."""
        block = self.config.block()
        source = (block.get("data") or {}).get("source")
        if source is not None and not isinstance(source, str):
            block.pop("data")  # in-memory data cannot be written down
        return serialize.rebased(block, self.model.folder, None if absolute else self.run_dir)

    # -- the loop -------------------------------------------------------------------

    def fit(self, callback=None) -> History:
        self.history.model, self.history.run_dir = self.model, self.run_dir
        for line in report.summary(self.model, self.config, len(self.train_rows), len(self.val_rows),
                                   self.tracker.keys(), self.terms):
            print(line, file=self.out)
        with _stop_on_sigint(self):
            while self.epoch < self.config.epochs and not self._patience_spent():
                lr = scheduled_lr(self.optimizer.lr, self.epoch, self.config.epochs, self.config.schedule)
                started = time.perf_counter()
                if not self._run_epoch(lr, callback):
                    return self._finish("interrupted")
                self._track_best(self._end_epoch(lr, started))  # before the checkpoint, which must hold it
                self._save_checkpoint()
                self._write_metrics()
        return self._finish("early stopped" if self._patience_spent() else "finished")

    def _run_epoch(self, lr: float, callback) -> bool:
        size = self.config.batch_size
        order = self.train_rows[np.random.default_rng([self.config.seed, self.epoch]).permutation(len(self.train_rows))]
        batches = range(self.batch, -(-len(order) // size))
        with report.Progress(self.out, len(batches), f"epoch {self.epoch + 1}/{self.config.epochs}") as bar:
            for b in batches:
                self._step(order[b * size:(b + 1) * size], lr)
                self.batch = b + 1
                bar(self.sums["loss"] / self.sums["count"])
                if callback is not None and callback(self):
                    self.stop_requested = True
                if self.launch.any(self.stop_requested):  # every rank stops at the same batch
                    self._save_checkpoint()
                    return False
        return True

    def _step(self, rows: np.ndarray, lr: float) -> None:
        engine, loss = self.engine, self.config.loss
        batch = {n: a[rows] for n, a in self.feeds.items()}
        if engine.random:  # dropout's draws: the same again on resume
            engine.reseed([self.config.seed, self.epoch, self.batch])
        every = self.check_numerics and engine is self.model  # the numpy backend can keep every value
        kept = () if every else (*self.config.predictions, *self.terms)  # (): every value
        values, grads = engine.train_step(batch, loss, self.params, outputs=kept)  # gradients of the mean loss
        value = values[loss]
        mean = float(value) if np.ndim(value) == 0 else float(value.sum()) / value.size  # ndarray.mean is 4x slower
        if every or not math.isfinite(mean) or not all(_finite(g) for g in grads.values()):
            self._check_numerics(batch, values if every else None, grads, mean)
        self.optimizer.step(engine.parameters, clip_by_norm(grads, self.config.clip_norm), lr)
        self.sums["loss"] += mean * len(rows)
        self.sums["count"] += len(rows)
        self.tracker.update(values, len(rows))

    def _end_epoch(self, lr: float, started: float) -> dict:
        """The epoch's history row, validation included (and in its time, as a user waits for it)."""
        n = self.sums["count"]
        row = {"epoch": self.epoch + 1, "loss": self.sums["loss"] / n, **self.tracker.result()}
        if len(self.val_rows):
            measured, _ = _measure(self.engine, self.config, self.feeds, self.val_rows, self.pairs, self.terms)
            row |= {f"val_{k}": v for k, v in measured.items()}
        seconds = time.perf_counter() - started
        row |= {"lr": lr, "seconds": round(seconds, 6)}
        self.history.append(row)
        self.epoch, self.batch = self.epoch + 1, 0
        self.sums = {"loss": 0.0, "count": 0.0}
        self.tracker.reset()
        print(report.epoch_line(row, self.config.epochs), file=self.out, flush=True)
        return row

    # -- stopping ----------------------------------------------------------------------

    def _check_monitor(self) -> None:
        stopping = self.config.early_stopping
        if stopping is None:
            return
        monitor = stopping.get("monitor") or ("val_loss" if len(self.val_rows) else "loss")
        available = ["loss", *self.tracker.keys()]
        available += [f"val_{m}" for m in available] if len(self.val_rows) else []
        if monitor not in available:
            raise GraphDefError(self.model.locate(("training", "early_stopping", "monitor"),
                                                  f"cannot monitor '{monitor}'", f"available: {', '.join(available)}"))
        self.monitor = monitor

    def _track_best(self, row: dict) -> None:
        stopping = self.config.early_stopping
        if stopping is None:
            return
        value, best, delta = row[self.monitor], self.best["value"], stopping.get("min_delta", 0.0)
        sign = 1 if metrics.lower_is_better(self.monitor) else -1
        if best is None or sign * (best - value) > delta:
            self.best = {"value": value, "epoch": row["epoch"], "wait": 0}
            self.best_params = {k: np.array(v) for k, v in self.engine.variables.items()}  # numpy copies
        else:
            self.best["wait"] += 1

    def _patience_spent(self) -> bool:
        """Early stopping's verdict, from the state a checkpoint holds (so a resumed run stops alike)."""
        stopping = self.config.early_stopping
        return stopping is not None and self.best["wait"] >= stopping.get("patience", 5)

    def _finish(self, status: str) -> History:
        stopping = self.config.early_stopping or {}
        restored = status != "interrupted" and self.best_params and stopping.get("restore_best", True)
        self._pull()
        if restored:
            variables = self.model.variables
            for k, v in self.best_params.items():
                variables[k][...] = v
        path = self.run_dir / "model.yaml"
        if self.launch.leader:
            path = serialize.save(self.model, self.run_dir, self._training_block(absolute=False))
        self.history.status, self.history.best_epoch = status, self.best["epoch"]
        if self.history and plot.available() and self.launch.leader:
            plot.plot_run(self.run_dir)
        self.launch.barrier()  # the other ranks end once the model is written
        if status == "interrupted":
            print(f"interrupted at epoch {self.epoch + 1}, batch {self.batch}; checkpoint saved. "
                  f"Resume with: graphdef train --resume {self.run_dir}", file=self.out)
        elif status == "early stopped":
            print(f"early stopping: no improvement of {self.monitor} for {self.best['wait']} epochs; "
                  f"kept the weights of epoch {self.best['epoch']}", file=self.out)
        kept = self.best["epoch"] if restored else None
        print(report.end_line(self.history, path, getattr(self, "monitor", None), kept), file=self.out)
        self.history.saved = path
        return self.history

    def _check_numerics(self, batch: dict, values: dict | None, grads: dict, loss: float) -> None:
        """Stop, before the step, at the first vertex (in run order) or gradient that is NaN or infinite,
        naming it. Without `values` the batch runs again keeping every value: training keeps only
        what it reports, and the vertex at fault and its inputs are rarely among them."""
        if values is None:  # (on the torch backend, the numpy backend finds the vertex at fault)
            self._pull()
            values, grads = self.model.train_step(batch, self.config.loss, self.params, outputs=())
        where = f"at epoch {self.epoch + 1}, batch {self.batch + 1}"
        saved = any((self.run_dir / checkpoint.FOLDER).glob("epoch-*.npz"))
        hint = "lower the learning rate (--lr), set training.clip_norm, or check the data; " + (
            f"the checkpoints are kept in {self.run_dir / checkpoint.FOLDER}, the last one's model in "
            f"{self.run_dir / 'model.yaml'}" if saved else "nothing was saved: no epoch had finished")
        try:
            self.model.check_numerics(values, grads, self.config.loss)
        except GraphDefError as e:
            first = e.errors[0]
            raise GraphDefError(Problem(f"training stopped {where}: the loss is {loss}; {first.message}",
                                        first.file, first.line, first.column, first.path,
                                        f"{first.hint}; {hint}")) from None
        if not math.isfinite(loss) or not all(_finite(g) for g in grads.values()):
            what = f"the loss is {loss}" if not math.isfinite(loss) else "a gradient is NaN or infinite"
            raise GraphDefError(Problem(f"training stopped {where}: {what}", hint=hint))

    def _write_metrics(self) -> None:
        if not self.launch.leader:
            return
        columns = list(dict.fromkeys(k for row in self.history for k in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.history)
        serialize.atomic_write(self.run_dir / "metrics.csv", text.getvalue().encode())


def _finite(array) -> bool:
    """Whether every value is finite, for a numpy array or a tensor (on its device)."""
    return bool(array.isfinite().all()) if hasattr(array, "isfinite") else bool(np.isfinite(array).all())


class _stop_on_sigint:
    """Turn Ctrl-C into a request to stop at the next batch boundary, where state is consistent. Under
    torchrun also SIGTERM, which torchrun sends its workers when it is interrupted."""

    def __init__(self, run: _Run):
        self.run, self.previous = run, {}
        self.signals = (signal.SIGINT,) if run.launch.cluster is None else (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.signals}

    def _handle(self, signum, frame):
        self.run.stop_requested = True

    def __exit__(self, *exc):
        for s, previous in self.previous.items():
            signal.signal(s, previous)

