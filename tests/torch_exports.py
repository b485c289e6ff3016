"""PyTorch model families exported to ONNX by both of PyTorch's exporters, and the map from the
exported initializers back to the PyTorch parameters (used by tests/test_onnx_exporters.py).

Every family is built in float64 (both exporters write float64 initializers and graphs), from a
fixed seed, in eval mode, with non-trivial values: every parameter gets noise added to PyTorch's
initialization (so no LayerNorm weight is all ones and no bias all zeros: the exporters
deduplicate equal initializers, which would hide a parameter), and batch norm's running
statistics are random (so an exporter that folds batch norm into the layer before it really
folds something).

The exporters rewrite parameters on the way:

- TorchScript (`dynamo=False`, opset 17) stores the weight of a Linear it turns into a MatMul
  transposed, under a new name (`onnx::MatMul_82` is W.T), folds BatchNorm2d into the Conv before
  it (`onnx::Conv_17` is the folded kernel), and packs GRU/LSTM weights ONNX's way.
- dynamo (`dynamo=True`, opset 18+) keeps most names, but stores transposes as `val_N`, and folds
  batch norm into the Conv *and* into the Linear before it *under that layer's own name*
  (`l1.weight` holds W * gamma / sqrt(var + eps)): a name alone is no proof of a value.

So an exported (or imported) initializer is matched to a *candidate*: a differentiable function
of the module's parameters and buffers (the parameter itself, its transpose, a batch-norm fold,
a GRU/LSTM packing) whose value it equals. Gradients then flow back through the candidate by
autograd (the chain rule through the exporter's rewrite), and every PyTorch parameter must be
the source of some matched candidate.

GRU/LSTM packing (ONNX's GRU and LSTM operators):
  W = [num_directions, gates * hidden, input], R = [num_directions, gates * hidden, hidden],
  B = [num_directions, 2 * gates * hidden] = concat(W's bias, R's bias);
  gate order GRU: ONNX z, r, h  vs  torch r, z, n;  LSTM: ONNX i, o, f, c  vs  torch i, f, g, o.
"""
from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EXPORTERS = ("torchscript", "dynamo")
TORCHSCRIPT_OPSET = 17
EXPORT_BATCH = 4  # the batch of the example input given to the exporters; the tests run other sizes

# -- the families ---------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))


class MLPNorm(nn.Module):
    """Linear -> BatchNorm1d -> GELU -> Dropout -> Linear (eval: running statistics, no dropout)."""

    def __init__(self):
        super().__init__()
        self.l1, self.bn, self.drop, self.l2 = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.3), nn.Linear(16, 4)

    def forward(self, x):
        return self.l2(self.drop(F.gelu(self.bn(self.l1(x)))))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.f1, self.f2 = nn.Linear(16 * 5 * 5, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu(self.c1(x)), 2)
        x = F.avg_pool2d(torch.relu(self.c2(x)), 2)
        return self.f2(torch.relu(self.f1(torch.flatten(x, 1))))


class ConvBN(nn.Module):
    """Conv -> BatchNorm2d -> ReLU -> global average pool -> Linear."""

    def __init__(self):
        super().__init__()
        self.c, self.bn, self.f = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8, 5)

    def forward(self, x):
        return self.f(F.adaptive_avg_pool2d(torch.relu(self.bn(self.c(x))), 1).flatten(1))


class SelfAttention(nn.Module):
    """Pre-norm two-head self-attention written out by hand, with a residual.

    The softmax scale is a float64 buffer. Written as (D // heads) ** 0.5 with D read from x.shape,
    TorchScript computes it in the graph in float32 (Cast to float, Pow 0.5, Cast back); written as
    a Python float, the dynamo exporter stores it as float32's value (a scalar initializer
    0.35355338 for 1/sqrt(8)). Either way the exported model itself differs from PyTorch's by
    ~1e-8 relative: the exporters' rounding, not an importer's."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.d, self.heads = d, heads
        self.register_buffer("scale", torch.tensor((d // heads) ** -0.5, dtype=torch.float64))
        self.qkv, self.o, self.ln = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln(x)).split(self.d, dim=-1)
        q, k, v = [z.reshape(b, t, self.heads, self.d // self.heads).transpose(1, 2) for z in (q, k, v)]
        a = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return x + self.o((a @ v).transpose(1, 2).reshape(b, t, self.d))


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.m = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x):
        return self.m(x, x, x, need_weights=False)[0]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.m = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)

    def forward(self, x):
        return self.m(x)


class EmbedMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.e, self.f = nn.Embedding(20, 8), nn.Linear(8, 3)

    def forward(self, ids):
        return self.f(self.e(ids).mean(1))


class Branches(nn.Module):
    """Two branches (LeakyReLU, ELU) concatenated, sliced, Softplus, Linear.

    The LeakyReLU slope is 0.125, not 0.1: ONNX stores float attributes (LeakyRelu's alpha, Elu's
    alpha) as float32, and float32(0.1) = 0.10000000149 makes the exported model itself differ from
    PyTorch's by ~1.5e-9 relative on negative inputs, an error of the format, not of an importer."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.f = nn.Linear(8, 6), nn.Linear(8, 6), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.cat([F.leaky_relu(self.a(x), 0.125), F.elu(self.b(x))], dim=1)
        return self.f(F.softplus(h[:, 2:10]))


class Recurrent(nn.Module):
    """A GRU or LSTM over a sequence; unidirectional: Linear of the last step; bidirectional:
    Linear of every step (both directions' outputs at every step are then used)."""

    def __init__(self, kind, bidirectional=False, layers=1):
        super().__init__()
        self.last = not bidirectional
        self.r = kind(4, 8, num_layers=layers, batch_first=True, bidirectional=bidirectional)
        self.f = nn.Linear(16 if bidirectional else 8, 2)

    def forward(self, x):
        out = self.r(x)[0]
        return self.f(out[:, -1] if self.last else out)


def floats(*shape):
    return lambda batch, rng: rng.normal(size=(batch, *shape))


def token_ids(vocabulary, length):
    return lambda batch, rng: rng.integers(0, vocabulary, size=(batch, length), dtype=np.int64)


@dataclass(frozen=True)
class Family:
    name: str
    make: Callable[[], nn.Module]
    sample: Callable[[int, np.random.Generator], np.ndarray]  # (batch, generator) -> one input
    folds: tuple = ()  # (layer, batch norm) pairs an exporter may fold into one
    rnns: tuple = ()   # submodules that are nn.GRU / nn.LSTM
    what: str = field(default="", compare=False)


FAMILIES = {f.name: f for f in [
    Family("mlp", MLP, floats(8), what="Linear-ReLU-Linear"),
    Family("mlp_batchnorm", MLPNorm, floats(8), folds=(("l1", "bn"),),
           what="Linear-BatchNorm1d-GELU-Dropout-Linear"),
    Family("lenet", LeNet, floats(1, 28, 28), what="conv-relu-maxpool, conv-relu-avgpool, two Linear"),
    Family("conv_batchnorm", ConvBN, floats(3, 8, 8), folds=(("c", "bn"),),
           what="Conv-BatchNorm2d-ReLU-global average pool-Linear"),
    Family("self_attention", SelfAttention, floats(6, 16), what="LayerNorm, qkv Linear, softmax attention, residual"),
    Family("multihead_attention", MHA, floats(6, 16), what="nn.MultiheadAttention"),
    Family("transformer_encoder", Encoder, floats(6, 16), what="nn.TransformerEncoderLayer"),
    Family("embedding_mean", EmbedMean, token_ids(20, 7), what="Embedding, mean over tokens, Linear"),
    Family("branches", Branches, floats(8), what="two branches concatenated and sliced, LeakyReLU/ELU/Softplus"),
    Family("gru", functools.partial(Recurrent, nn.GRU), floats(6, 4), rnns=("r",), what="GRU, last step"),
    Family("lstm", functools.partial(Recurrent, nn.LSTM), floats(6, 4), rnns=("r",), what="LSTM, last step"),
    Family("gru_bidirectional", functools.partial(Recurrent, nn.GRU, bidirectional=True), floats(6, 4), rnns=("r",),
           what="bidirectional GRU, every step"),
    Family("lstm_bidirectional", functools.partial(Recurrent, nn.LSTM, bidirectional=True, layers=2), floats(6, 4),
           rnns=("r",), what="two-layer bidirectional LSTM, every step"),
]}


@functools.lru_cache(maxsize=None)
def build(name: str) -> nn.Module:
    """The family's module: float64, eval mode, seeded, every parameter and running statistic
    non-trivial. Cached: callers must not change it."""
    seed = list(FAMILIES).index(name) + 1
    torch.manual_seed(seed)
    module = FAMILIES[name].make().double()
    generator = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
        for child in module.modules():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                child.running_mean.copy_(0.5 * torch.randn(child.running_mean.shape, generator=generator,
                                                           dtype=torch.float64))
                child.running_var.copy_(0.5 + torch.rand(child.running_var.shape, generator=generator,
                                                         dtype=torch.float64))
    return module.eval()


def sample(name: str, batch: int, seed: int = 0) -> np.ndarray:
    """A batch of inputs for the family (float64, or int64 token ids)."""
    return FAMILIES[name].sample(batch, np.random.default_rng(seed))


def run_torch(name: str, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return build(name)(torch.from_numpy(x)).numpy()


# -- exporting ------------------------------------------------------------------------------


def export(name: str, exporter: str, path) -> Path:
    """Export the family with one exporter to `path`, the batch axis dynamic; quietly."""
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}")
    module, path = build(name), Path(path)
    x = torch.from_numpy(sample(name, EXPORT_BATCH, seed=99))
    quiet = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "torch.fx",
                                              "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=TORCHSCRIPT_OPSET,
                                  input_names=["x"], output_names=["out"],
                                  dynamic_axes={"x": {0: "batch"}, "out": {0: "batch"}})
            else:
                torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], output_names=["out"],
                                  dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                                  verbose=False)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    if not path.exists():
        raise RuntimeError(f"{exporter} export of {name} wrote no file")
    return path


class Exports:
    """Exports made once per test session into one directory (an export takes up to seconds)."""

    def __init__(self, directory):
        self.directory, self.done = Path(directory), {}

    def __call__(self, name: str, exporter: str) -> Path:
        key = (name, exporter)
        if key not in self.done:
            try:
                self.done[key] = export(name, exporter, self.directory / f"{name}-{exporter}.onnx")
            except Exception as e:  # noqa: BLE001 - reported by every test that needs the file
                self.done[key] = e
        result = self.done[key]
        if isinstance(result, Exception):
            raise RuntimeError(f"the {exporter} exporter failed on {name}: {type(result).__name__}: "
                               f"{str(result)[:500]}") from result
        return result


# -- from exported (or imported) initializers back to the PyTorch parameters ----------------

@dataclass(frozen=True)
class Candidate:
    """A value an exporter may store: fn(tensors by name) -> tensor, computed from `sources`."""
    label: str
    sources: tuple
    fn: Callable = field(compare=False)


def _tensors(module) -> dict:
    return {**dict(module.named_parameters()),
            **{n: b for n, b in module.named_buffers() if not n.endswith("num_batches_tracked")}}


# ONNX gate blocks, in ONNX's order, as indices of PyTorch's blocks
GATE_ORDER = {nn.GRU: (1, 0, 2),      # ONNX z, r, h  <-  torch r, z, n
              nn.LSTM: (0, 3, 1, 2)}  # ONNX i, o, f, c  <-  torch i, f, g, o


def onnx_gates(t: torch.Tensor, kind) -> torch.Tensor:
    """A torch GRU/LSTM weight or bias ([gates * hidden, ...]) with its gate blocks in ONNX's order."""
    order = GATE_ORDER[kind]
    blocks = t.chunk(len(order), dim=0)
    return torch.cat([blocks[i] for i in order], dim=0)


def rnn_candidates(prefix: str, rnn) -> list:
    """ONNX's W, R and B of every layer of a torch GRU/LSTM (all directions stacked, and each
    direction alone in case an exporter writes one operator per direction)."""
    kind = type(rnn)
    out = []
    directions = ["", "_reverse"] if rnn.bidirectional else [""]
    for layer in range(rnn.num_layers):
        def packed(d, layer=layer):
            wi, wh, bi, bh = (f"{prefix}.{what}_l{layer}{d}"
                              for what in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            return {"W": (lambda t: onnx_gates(t[wi], kind), (wi,)),
                    "R": (lambda t: onnx_gates(t[wh], kind), (wh,)),
                    "B": (lambda t: torch.cat([onnx_gates(t[bi], kind), onnx_gates(t[bh], kind)]), (bi, bh))}
        parts = [packed(d) for d in directions]
        for key in ("W", "R", "B"):
            fns = [p[key][0] for p in parts]
            sources = tuple(s for p in parts for s in p[key][1])
            out.append(Candidate(f"{prefix} layer {layer} ONNX {key}", sources,
                                 lambda t, fns=fns: torch.stack([f(t) for f in fns])))
            if len(parts) > 1:
                for d, p in zip(directions, parts):
                    out.append(Candidate(f"{prefix} layer {layer}{d} ONNX {key}", p[key][1],
                                         lambda t, f=p[key][0]: f(t)[None]))
    return out


def fold_candidates(layer: str, bn: str, module) -> list:
    """A Linear/Conv followed by batch norm, folded into one layer (inference form)."""
    eps = dict(module.named_modules())[bn].eps
    w, b = f"{layer}.weight", f"{layer}.bias"
    g, beta, mean, var = (f"{bn}.{k}" for k in ("weight", "bias", "running_mean", "running_var"))

    def scale(t):
        return t[g] / torch.sqrt(t[var] + eps)

    def weight(t):
        s = scale(t)
        return t[w] * s.reshape(-1, *[1] * (t[w].dim() - 1))

    out = [Candidate(f"{layer}.weight folded with {bn}", (w, g, var), weight),
           Candidate(f"{layer}.bias folded with {bn}", (b, g, beta, mean, var),
                     lambda t: (t[b] - t[mean]) * scale(t) + t[beta])]
    if module.get_parameter(w).dim() == 2:
        out.append(Candidate(f"{layer}.weight folded with {bn}, transposed", (w, g, var), lambda t: weight(t).T))
    return out


def candidates(name: str) -> list:
    """Every value the exporters are known to store for the family's parameters and buffers."""
    family, module = FAMILIES[name], build(name)
    out = []
    for n, t in _tensors(module).items():
        out.append(Candidate(n, (n,), lambda ts, n=n: ts[n]))
        if t.dim() == 2:
            out.append(Candidate(f"{n} transposed", (n,), lambda ts, n=n: ts[n].T))
        if n.endswith("in_proj_weight") or n.endswith("in_proj_bias"):  # attention's q, k, v, maybe split
            for k, part in enumerate("qkv"):
                out.append(Candidate(f"{n}[{part}]", (n,), lambda ts, n=n, k=k: ts[n].chunk(3)[k]))
                if t.dim() == 2:
                    out.append(Candidate(f"{n}[{part}] transposed", (n,),
                                         lambda ts, n=n, k=k: ts[n].chunk(3)[k].T))
    for layer, bn in family.folds:
        out += fold_candidates(layer, bn, module)
    for prefix in family.rnns:
        out += rnn_candidates(prefix, module.get_submodule(prefix))
    return out


def _plain(name: str) -> str:
    """An initializer's name without what an importer may have changed (`v_` prefix, characters)."""
    return re.sub(r"[^A-Za-z0-9]", "_", re.sub(r"^v_", "", name))


def match(name: str, arrays: dict, rtol: float = 1e-10) -> tuple[dict, list]:
    """({stored name: Candidate}, [stored names matching nothing]) for float arrays an exporter or
    importer holds: by name when a name and its value agree, otherwise by value."""
    module = build(name)
    cands = candidates(name)
    with torch.no_grad():
        values = {c: c.fn(_tensors(module)).numpy() for c in cands}
    matched, unmatched = {}, []
    for key, array in arrays.items():
        array = np.asarray(array)
        same = [c for c, v in values.items()
                if v.shape == array.shape and np.allclose(array, v, rtol=rtol, atol=rtol * 1e-3 * np.abs(v).max())]
        by_name = [c for c in same if len(c.sources) == 1 and c.label == c.sources[0]
                   and _plain(c.sources[0]) == _plain(key)]
        if by_name or same:
            matched[key] = (by_name or same)[0]
        else:
            unmatched.append(key)
    return matched, unmatched


def parameters_not_covered(name: str, matched: dict) -> list:
    """The torch parameters that no matched value is computed from (running statistics are buffers,
    not parameters, and need no match)."""
    covered = {s for c in matched.values() for s in c.sources}
    return [n for n, _ in build(name).named_parameters() if n not in covered]


def pull_back(name: str, matched: dict, gradients: dict) -> dict:
    """Gradients with respect to the stored values -> gradients with respect to the torch
    parameters, by autograd through each matched candidate (vector-Jacobian products, summed)."""
    module = build(name)
    params = {n: p.detach().clone().requires_grad_(True) for n, p in module.named_parameters()}
    tensors = {**{n: t.detach() for n, t in _tensors(module).items()}, **params}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for key, cand in matched.items():
        wrt = [s for s in cand.sources if s in params]
        if not wrt or key not in gradients:
            continue
        value = cand.fn(tensors)
        grads = torch.autograd.grad(value, [params[s] for s in wrt],
                                    grad_outputs=torch.as_tensor(np.asarray(gradients[key], dtype=np.float64)),
                                    allow_unused=True)
        for s, g in zip(wrt, grads):
            if g is not None:
                total[s] += g
    return {n: g.numpy() for n, g in total.items()}


def torch_gradients(name: str, x: np.ndarray, r: np.ndarray) -> tuple[float, dict]:
    """(L, dL/dp for every parameter) for L = sum(module(x) * r), by autograd."""
    module = build(name)
    params = dict(module.named_parameters())
    loss = (module(torch.from_numpy(x)) * torch.from_numpy(r)).sum()
    grads = torch.autograd.grad(loss, list(params.values()))
    return loss.item(), {n: g.numpy() for n, g in zip(params, grads)}
