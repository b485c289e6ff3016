"""Training, evaluation and the `run`/`grad` commands on the torch backend, alone or data parallel.

The training loop drives an engine: the Model itself on the numpy backend, a TorchEngine here.
A TorchEngine holds the model lowered to a torch.nn.Module (graphdef.torch.to_module) and does
the per-step work the loop asks of a Model (train_step, predict_batch, reseed), on the module's
device; the optimizer (optimizers.py, array-generic) updates the module's tensors in place, so
both backends run the same update rules. The loop brings the values back (to_model) whenever it
saves, so a run directory is the same whichever backend wrote it.

Launched by torchrun, a Cluster (the process group) makes the engine data parallel: every rank
sees the same global batch, takes its contiguous share of the rows, and scales its loss so that
DistributedDataParallel's average of the ranks' gradients is exactly the global batch's mean
gradient; the values the loop reports are gathered back into the global batch's order, so the
loss, metrics, early stopping and checkpoints are those of one process. torch is imported here
only, and only when the torch backend is asked for.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import GraphDefError, Problem
from .optimizers import to_numpy

DEVICES = ("cpu", "cuda", "mps")


def resolve_device(device: str | None, local_rank: int | None = None) -> str:
    """The torch device to use (see engine/torch_module.py's device; under torchrun, cuda:LOCAL_RANK)."""
    from ..engine.torch_module import device as chosen
    return chosen(device, local_rank)
BACKENDS = ("numpy", "torch")


def _lowering():
    """graphdef.torch (to_module, to_model), imported when first needed."""
    from .. import torch as lowering
    return lowering


def _graphdef_tensors(module, model) -> tuple[dict, dict]:
    """({graphdef parameter name: its nn.Parameter}, {state name: its buffer}) of a lowered module."""
    return ({n: module.variable(n) for n in model.parameters}, {n: module.variable(n) for n in model.state})


class Cluster:
    """The process group of a torchrun launch: this process's rank, the world size, and the few
    collective operations the loop needs (agreeing on a run directory, on stopping, waiting)."""

    def __init__(self, device: str | None):
        import torch.distributed as dist
        self.dist = dist
        self.rank, self.size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.device = resolve_device(device, self.local_rank)
        backend = "nccl" if self.device.startswith("cuda") else "gloo"
        if self.device.startswith("cuda"):
            import torch
            torch.cuda.set_device(self.device)
        dist.init_process_group(backend)

    @classmethod
    def launched(cls, device: str | None) -> "Cluster | None":
        """The cluster when torchrun started several processes (its RANK, WORLD_SIZE, MASTER_ADDR...), else None."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
            return None
        return cls(device)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, value):
        """Rank 0's value, on every rank (a run directory only rank 0 may choose)."""
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def any(self, flag: bool) -> bool:
        """Whether any rank says so (a stop request: all ranks must stop at the same batch)."""
        import torch
        t = torch.tensor([int(bool(flag))], device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, value) -> list:
        """Every rank's value, in rank order."""
        found = [None] * self.size
        self.dist.all_gather_object(found, value)
        return found

    def barrier(self) -> None:
        self.dist.barrier()

    def failed(self, error: GraphDefError) -> GraphDefError:
        """The error with the rank that met it named (torchrun stops the others, whose errors follow)."""
        return GraphDefError([Problem(f"rank {self.rank} of {self.size}: {p.message}", p.file, p.line, p.column,
                                      p.path, p.hint) for p in error.errors])

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


class TorchEngine:
    """What the training loop asks of a Model, done by the lowered torch module (see the module docstring)."""

    def __init__(self, model, device: str | None = None, cluster: Cluster | None = None):
        import torch
        self.torch, self.model, self.cluster = torch, model, cluster
        self.device = cluster.device if cluster else resolve_device(device)
        self.module = _lowering().to_module(model, device=self.device)
        params, self.buffers = _graphdef_tensors(self.module, model)
        self.leaves = params
        self.parameters = {n: p.detach() for n, p in params.items()}  # what the optimizer updates, in place
        self.random = model.random
        self.net = self.module
        if cluster is not None:
            from torch.nn.parallel import DistributedDataParallel
            ids = [self.device] if self.device.startswith("cuda") else None
            self.net = DistributedDataParallel(self.module, device_ids=ids)

    # -- what the loop calls -----------------------------------------------------------------

    def train_step(self, batch: dict, loss: str, wrt, outputs=()) -> tuple[dict, dict]:
        """(values of the inputs, loss and outputs as numpy, for the whole batch; gradients of the batch's mean loss
        as tensors), in training mode; the module's state is updated by its forward pass."""
        rows = len(next(iter(batch.values())))
        local = self._share(batch)
        self.module.train()
        for p in self.leaves.values():
            p.grad = None
        values = self.net(self._tensors(local), outputs=[loss, *outputs])
        scale = (self.cluster.size if self.cluster else 1) / rows  # DDP averages over the ranks
        (values[loss].sum() * scale).backward()
        grads = {n: self.leaves[n].grad if self.leaves[n].grad is not None else self.parameters[n].new_zeros(
            self.parameters[n].shape) for n in wrt if n in self.leaves}
        values = self._gathered({k: self._numpy(v) for k, v in values.items()}, len(next(iter(local.values()))))
        return {**batch, **values}, grads  # the inputs too, as Model.train_step gives: metrics read the targets

    def predict_batch(self, batch: dict, outputs) -> dict:
        """The batch and the values of `outputs` (inference mode), as numpy arrays."""
        self.module.eval()
        with self.torch.no_grad():
            values = self.module(self._tensors(batch), outputs=list(outputs))
        return {**batch, **{k: self._numpy(v) for k, v in values.items()}}

    def reseed(self, seed) -> None:
        """Random ops' draws from the seed: the masks the numpy backend draws (on every rank, and on resume)."""
        self.module.reseed(seed)

    def to_model(self):
        """Bring the trained values into the graphdef Model (before it is saved or checked)."""
        return _lowering().to_model(self.module, self.model)

    @property
    def variables(self) -> dict:
        """numpy copies of the parameters and state, by graphdef name."""
        return {n: to_numpy(t) for n, t in {**self.leaves, **self.buffers}.items()}

    # -- helpers ---------------------------------------------------------------------------------

    def _share(self, batch: dict) -> dict:
        """This rank's contiguous share of the batch's rows (all of them in one process)."""
        if self.cluster is None:
            return batch
        rows = len(next(iter(batch.values())))
        bounds = np.linspace(0, rows, self.cluster.size + 1).astype(int)
        start, stop = bounds[self.cluster.rank], bounds[self.cluster.rank + 1]
        return {k: a[start:stop] for k, a in batch.items()}

    def _gathered(self, values: dict, rows: int) -> dict:
        """The ranks' per-sample values joined in the global batch's row order (other values: this rank's)."""
        if self.cluster is None:
            return values
        parts = self.cluster.gather(values)
        return {k: np.concatenate([p[k] for p in parts]) if np.ndim(v) and len(v) == rows else v
                for k, v in values.items()}

    def _tensors(self, arrays: dict) -> dict:
        return {k: self.torch.as_tensor(np.asarray(a), device=self.device) for k, a in arrays.items()}

    @staticmethod
    def _numpy(value):
        return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


# -- the `run` and `grad` commands -------------------------------------------------------------

def _given(model, inputs: dict, outputs) -> dict:
    """The inputs checked and converted as the numpy backend does (the same errors, a missing input that
    `outputs` need among them), as arrays."""
    from ..engine.inputs import feed
    env = feed(model, inputs, needed=model.ancestors(outputs))
    return {n: np.asarray(env[n]) for n in model.inputs if n in inputs}


def run(model, inputs: dict, outputs, device: str | None = None) -> dict:
    """The values of `outputs` (those the given inputs determine), computed by the lowered module."""
    import torch
    device = resolve_device(device)
    module = _lowering().to_module(model, device=device).eval()
    given = _given(model, inputs, outputs)
    with torch.no_grad():
        values = module({k: torch.as_tensor(v, device=device) for k, v in given.items()}, outputs=list(outputs))
    return {k: TorchEngine._numpy(v) for k, v in values.items()}


def value_and_gradients(model, inputs: dict, of: str, wrt, device: str | None = None) -> tuple[dict, dict]:
    """({of: value}, {w: ∂of/∂w}) by torch autograd (a batched `of` summed, as the numpy backend does)."""
    import torch
    device = resolve_device(device)
    module = _lowering().to_module(model, device=device).eval()
    given = _given(model, inputs, [of])
    tensors = {k: torch.as_tensor(v, device=device) for k, v in given.items()}
    for name in wrt:
        if name in tensors:
            tensors[name] = tensors[name].clone().requires_grad_(True)
        else:  # a parameter, or a constant or state buffer (which autograd then follows too)
            module.variable(name).requires_grad_(True)
    value = module(tensors, outputs=[of])[of]
    leaves = [tensors[w] if w in tensors else module.variable(w) for w in wrt]
    grads = torch.autograd.grad(value.sum(), leaves, allow_unused=True)
    return ({of: TorchEngine._numpy(value)},
            {w: TorchEngine._numpy(g) if g is not None else np.zeros(np.shape(leaf.detach().cpu()))
             for w, g, leaf in zip(wrt, grads, leaves)})
