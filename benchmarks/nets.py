"""Convolutional and attention networks: graphdef's training step against hand-written numpy (and PyTorch eager).

Each workload is a model users train (models/lenet.yaml; a transformer encoder layer of the
standard library), in float32. Its gradients are first checked against a numpy reference
written as fast as numpy allows (im2col from a strided view and one BLAS product per
convolution, channel-major activations, pooling from one strided view per window offset,
attention heads as stacks of matrices); then graphdef's step (`model.train_step` and an SGD
update, as `graphdef train` runs them), the reference's and PyTorch's are timed in turns.
The functions return rows in benchmarks/run.py's format.

    python benchmarks/nets.py [--quick]
"""
from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import erf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphdef  # noqa: E402
from timing import agree, interleaved, per_call, row, table  # noqa: E402
from graphdef.training.optimizers import Optimizer  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

LR = 1e-3
BATCH = 64


def float32_model(text: str, **replace) -> "graphdef.Model":
    """A model file's text loaded in float32 (with some of its text replaced: a dropout's p, say)."""
    for old, new in replace.items():
        text = text.replace(old, new)
    return graphdef.loads(text.replace("\nnodes:\n", "\ndtype: float32\nnodes:\n", 1))


def graphdef_step(model, batch: dict):
    """One training step as `graphdef train` takes it: gradients of the mean loss, then SGD in place."""
    names, optimizer = list(model.parameters), Optimizer("sgd", lr=LR)

    def step():
        values, grads = model.train_step(batch, "loss", names, outputs=["loss"])
        optimizer.step(model.parameters, grads, LR)
        return values, grads
    return step


def sgd(params: dict, grads: dict) -> None:
    for k, p in params.items():
        p -= LR * grads[k]


# -- LeNet: models/lenet.yaml ------------------------------------------------------------------

LENET = (ROOT / "models/lenet.yaml").read_text()


class LenetReference:
    """models/lenet.yaml's training step by hand, in the layouts numpy is fastest in. A convolution copies the
    windows of its channels-last (N, H, W, C) input into rows (N·H·W, 3·3·C) and multiplies its kernels by
    their transpose (BLAS reads it in place): the output is channel-major (C, N·H·W), so batch norm's sums per
    channel run over contiguous rows, and pooling reshapes (C, N, H/2, 2, W/2, 2). The padded inputs' buffers
    are made once."""

    def __init__(self, params: dict, state: dict, p: float, seed: int = 0):
        self.params = {k: v.copy() for k, v in params.items()}
        self.state = {k: v.copy() for k, v in state.items()}
        self.p, self.rng = p, np.random.default_rng(seed)
        self.pads = {}

    def padded(self, x, key: str):
        """x (N, H, W, C) with a border of zeros, in a buffer kept between steps (its border stays zero)."""
        n, h, w, c = x.shape
        buf = self.pads.get(key)
        if buf is None or buf.shape != (n, h + 2, w + 2, c):
            buf = self.pads[key] = np.zeros((n, h + 2, w + 2, c), x.dtype)
        buf[:, 1:-1, 1:-1] = x
        return buf

    def conv(self, x, w, b, key):
        """3×3 'same' convolution of x (N, H, W, C): its windows as rows (N·H·W, 3·3·C), and the output (O, N·H·W)."""
        n, h, wd, c = x.shape
        windows = sliding_window_view(self.padded(x, key), (3, 3), axis=(1, 2))  # (N, H, W, C, 3, 3)
        rows = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * wd, 9 * c)
        return rows, self.kernels(w) @ rows.T + b.reshape(-1, 1)

    @staticmethod
    def kernels(w):
        """w (O, C, 3, 3) as rows (O, 3·3·C), in the order of the windows' columns."""
        return w.transpose(0, 2, 3, 1).reshape(len(w), -1)

    def batch_norm(self, z, prefix: str):
        mean = z.mean(axis=1, keepdims=True)
        centered = z - mean
        var = (centered * centered).mean(axis=1, keepdims=True)
        inv = 1 / np.sqrt(var + 1e-5)
        normalized = centered * inv
        m, v = self.state[f"{prefix}/running_mean"], self.state[f"{prefix}/running_var"]
        rows = z.shape[1]
        m *= 0.9
        m += 0.1 * mean[:, 0]
        v *= 0.9
        v += (0.1 * rows / (rows - 1)) * var[:, 0]
        weight, bias = self.params[f"{prefix}/weight"], self.params[f"{prefix}/bias"]
        return normalized, inv, normalized * weight[:, None] + bias[:, None]

    @staticmethod
    def batch_norm_vjp(g, normalized, inv, weight):
        gw = g * weight[:, None]
        return inv * (gw - gw.mean(axis=1, keepdims=True) - normalized * (gw * normalized).mean(axis=1, keepdims=True))

    @staticmethod
    def pool(r, n, h, w):
        """2×2 max pooling of r (C, N·H·W): the maxima (C, N, H/2, W/2) of its four offsets' strided views."""
        r = r.reshape(-1, n, h, w)
        offsets = [r[..., i::2, j::2] for i in (0, 1) for j in (0, 1)]
        return np.maximum(np.maximum(offsets[0], offsets[1]), np.maximum(offsets[2], offsets[3])), offsets

    @staticmethod
    def pool_vjp(g, pooled, offsets):
        """g to each window's largest value (a tie shares it: ties here are zeros of the ReLU, which pass none)."""
        c, n, h, w = pooled.shape
        grad = np.empty((c, n, 2 * h, 2 * w), g.dtype)
        for (i, j), cells in zip([(0, 0), (0, 1), (1, 0), (1, 1)], offsets):
            np.multiply(cells == pooled, g, out=grad[..., i::2, j::2])
        return grad.reshape(c, -1)

    def step(self, x, y):
        P, n, dtype = self.params, len(x), x.dtype
        rows1, z1 = self.conv(x.reshape(n, 8, 8, 1), P["c1/W"], P["c1/b"], "c1")
        xn1, inv1, n1 = self.batch_norm(z1, "n1")
        p1, win1 = self.pool(np.maximum(n1, 0), n, 8, 8)  # (16, N, 4, 4)
        rows2, z2 = self.conv(p1.transpose(1, 2, 3, 0), P["c2/W"], P["c2/b"], "c2")
        xn2, inv2, n2 = self.batch_norm(z2, "n2")
        p2, win2 = self.pool(np.maximum(n2, 0), n, 4, 4)  # (32, N, 2, 2)
        flat = p2.transpose(1, 0, 2, 3).reshape(n, 128)  # flattened as NCHW is
        h = np.maximum(flat @ P["hidden/W"] + P["hidden/b"], 0)
        keep = (self.rng.random(h.shape, dtype) >= self.p) * dtype.type(1 / (1 - self.p))
        d = h * keep
        z = d @ P["logits/W"] + P["logits/b"]
        loss, gz = _softmax_cross_entropy(z, y)
        grads = {"logits/W": d.T @ gz, "logits/b": gz.sum(axis=0)}
        gh = (gz @ P["logits/W"].T) * keep * (h > 0)
        grads["hidden/W"], grads["hidden/b"] = flat.T @ gh, gh.sum(axis=0)
        gp2 = (gh @ P["hidden/W"].T).reshape(n, 32, 2, 2).transpose(1, 0, 2, 3)
        gn2 = self.pool_vjp(gp2, p2, win2) * (n2 > 0)
        grads["n2/weight"], grads["n2/bias"] = (gn2 * xn2).sum(axis=1), gn2.sum(axis=1)
        gz2 = self.batch_norm_vjp(gn2, xn2, inv2, P["n2/weight"])
        grads["c2/W"] = (gz2 @ rows2).reshape(32, 3, 3, 16).transpose(0, 3, 1, 2)
        grads["c2/b"] = gz2.sum(axis=1).reshape(32, 1, 1)
        gcols = (self.kernels(P["c2/W"]).T @ gz2).reshape(3, 3, 16, n, 4, 4)
        gp1 = np.zeros((16, n, 6, 6), dtype)
        for i in range(3):
            for j in range(3):
                gp1[:, :, i:i + 4, j:j + 4] += gcols[i, j]
        gn1 = self.pool_vjp(gp1[:, :, 1:5, 1:5], p1, win1) * (n1 > 0)
        grads["n1/weight"], grads["n1/bias"] = (gn1 * xn1).sum(axis=1), gn1.sum(axis=1)
        gz1 = self.batch_norm_vjp(gn1, xn1, inv1, P["n1/weight"])
        grads["c1/W"] = (gz1 @ rows1).reshape(16, 1, 3, 3)
        grads["c1/b"] = gz1.sum(axis=1).reshape(16, 1, 1)
        sgd(P, grads)
        grads["loss"] = loss
        return grads


def _softmax_cross_entropy(z, y):
    """The mean loss of a batch of logits against one-hot targets, and its gradient with respect to the logits."""
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    return -np.mean(np.sum(y * (shifted - np.log(total)), axis=1)), (e / total - y) / len(z)


def _digits_batch(n: int, dtype) -> dict:
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, 64)).astype(dtype), "y": np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]}


def lenet_step(quick: bool) -> list:
    """A LeNet training step, batch 64, float32: checked without dropout (the draws differ), timed with it."""
    label = f"LeNet train step, batch {BATCH}, 8×8 digits, float32 (models/lenet.yaml)"
    batch = _digits_batch(BATCH, np.float32)
    checked = float32_model(LENET, **{"p: 0.3": "p: 0.0"})
    theirs = LenetReference(checked.parameters, checked.state, 0.0).step(batch["x"], batch["y"])
    values, grads = graphdef_step(checked, batch)()
    agree(label, {**grads, "loss": float(values["loss"].mean())}, theirs, 2e-3)
    model = float32_model(LENET)
    reference = LenetReference(model.parameters, model.state, 0.3)
    fns = {"graphdef": graphdef_step(model, batch), "numpy": lambda: reference.step(batch["x"], batch["y"])}
    if torch is not None:
        fns["pytorch"] = _torch_lenet(model.parameters, batch, 0.3)
    return [row(label, interleaved(fns, 5 if quick else 21, 10 if quick else 30), 1.5)]


def _torch_lenet(params: dict, batch: dict, p: float, module: bool = False):
    """The same network as a torch.nn.Sequential with graphdef's initial weights, trained by SGD (with
    `module`, the Sequential itself)."""
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(128, 64), nn.ReLU(), nn.Dropout(p), nn.Linear(64, 10))
    with torch.no_grad():
        for layer, prefix in ((0, "c1"), (4, "c2")):
            net[layer].weight.copy_(torch.tensor(params[f"{prefix}/W"]))
            net[layer].bias.copy_(torch.tensor(params[f"{prefix}/b"]).reshape(-1))
        for layer, prefix in ((1, "n1"), (5, "n2")):
            net[layer].weight.copy_(torch.tensor(params[f"{prefix}/weight"]))
            net[layer].bias.copy_(torch.tensor(params[f"{prefix}/bias"]))
        for layer, prefix in ((9, "hidden"), (12, "logits")):
            net[layer].weight.copy_(torch.tensor(params[f"{prefix}/W"]).T)
            net[layer].bias.copy_(torch.tensor(params[f"{prefix}/b"]))
    if module:
        return net
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    x, labels = torch.tensor(batch["x"]).reshape(-1, 1, 8, 8), torch.tensor(batch["y"]).argmax(dim=1)

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def lenet_epoch(quick: bool) -> list:
    """Seconds per epoch of `graphdef train models/lenet.yaml` (its own settings: Adam, batch 32, float64, training
    batches and validation), against as many steps of the numpy reference (SGD, no validation: a lower bound);
    and the wall time per epoch, checkpoint and metrics files included."""
    samples, walls = {"graphdef": [], "numpy": []}, []
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(1 if quick else 3):
            first_batches, batches = {}, {}

            def note(run):  # called after every batch; returns None: go on
                first_batches.setdefault(run.epoch, time.perf_counter())
                batches[run.epoch] = batches.get(run.epoch, 0) + 1
            history = graphdef.train(ROOT / "models/lenet.yaml", run_dir=Path(tmp) / f"r{turn}", epochs=3,
                                     out=io.StringIO(), callback=note)
            times = [first_batches[e] for e in sorted(first_batches)]
            walls += [b - a for a, b in zip(times[1:], times[2:])]
            samples["graphdef"] += [r["seconds"] for r in history[1:]]
            model = history.model
            size = model.doc["training"]["batch_size"]
            batch = _digits_batch(size, model.dtype)
            reference = LenetReference(model.parameters, model.state, 0.3)
            reference.step(batch["x"], batch["y"])
            samples["numpy"] += [per_call(lambda: reference.step(batch["x"], batch["y"]), 20) * max(batches.values())
                                 for _ in history[1:]]
    epoch = {**row("LeNet training epoch, models/lenet.yaml (adam, batch 32, float64) vs numpy steps", samples,
                   math.inf), "target": None, "ok": True}  # no target: the numpy side is a lower bound
    whole = {"workload": "   the same, wall time with checkpoint and metrics files",
             "graphdef": statistics.median(walls), "ratio": None, "target": None, "ok": True, "unit": "s"}
    return [epoch, whole]


# -- attention: a transformer encoder layer of the standard library --------------------------------

TOKENS, WIDTH, HEADS, HIDDEN, CLASSES = 16, 64, 4, 128, 10

ATTENTION = f"""graphdef: 1
name: attention
description: a pre-norm transformer encoder layer, its tokens averaged and classified
inputs:
  x: {{shape: [{TOKENS}, {WIDTH}]}}
  y: {{shape: [{CLASSES}]}}
nodes:
  block: {{op: transformer_encoder_layer, inputs: [x], dim: {WIDTH}, heads: {HEADS}, hidden: {HIDDEN}}}
  pooled: {{op: mean, inputs: [block], axis: 0}}
  logits: {{op: dense, inputs: [pooled], in: {WIDTH}, out: {CLASSES}}}
  loss: {{op: softmax_cross_entropy, inputs: [logits, y]}}
outputs: [loss]
loss: loss
"""


def _layer_norm(x, gamma, beta):
    centered = x - x.mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + 1e-5)
    normalized = centered * inv
    return normalized, inv, normalized * gamma + beta


def _layer_norm_vjp(g, normalized, inv, gamma):
    gn = g * gamma
    return inv * (gn - gn.mean(axis=-1, keepdims=True) - normalized * (gn * normalized).mean(axis=-1, keepdims=True))


class AttentionReference:
    """The attention workload's training step by hand: rows of tokens (N·T, D) through the dense layers, heads as
    a (N, H, T, d) stack of matrices for the products of queries, keys and values."""

    def __init__(self, params: dict):
        self.params = {k.removeprefix("block/"): v.copy() for k, v in params.items()}

    def step(self, x, y):
        P = self.params
        n, t, d = x.shape
        h_, w = HEADS, d // HEADS
        rows = x.reshape(n * t, d)
        xn1, inv1, n1 = _layer_norm(rows, P["n1/gamma"], P["n1/beta"])
        qkv = (n1 @ P["attention/Wqkv"] + P["attention/bqkv"]).reshape(n, t, 3, h_, w).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, H, T, d)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1 / math.sqrt(w))
        a = np.exp(scores - scores.max(axis=-1, keepdims=True))
        a /= a.sum(axis=-1, keepdims=True)
        joined = (a @ v).transpose(0, 2, 1, 3).reshape(n * t, d)
        h = rows + joined @ P["attention/Wo"] + P["attention/bo"]
        xn2, inv2, n2 = _layer_norm(h, P["n2/gamma"], P["n2/beta"])
        u = n2 @ P["up/W"] + P["up/b"]
        gate = 0.5 * (1 + erf(u * np.float32(1 / math.sqrt(2))))
        up = u * gate
        block = h + up @ P["down/W"] + P["down/b"]
        pooled = block.reshape(n, t, d).mean(axis=1)
        z = pooled @ P["logits/W"] + P["logits/b"]
        loss, gz = _softmax_cross_entropy(z, y)
        grads = {"logits/W": pooled.T @ gz, "logits/b": gz.sum(axis=0)}
        gblock = np.broadcast_to(((gz @ P["logits/W"].T) / t)[:, None], (n, t, d)).reshape(n * t, d)
        grads["down/W"], grads["down/b"] = up.T @ gblock, gblock.sum(axis=0)
        gu = (gblock @ P["down/W"].T) * (gate + u * np.exp(-0.5 * u * u) * np.float32(1 / math.sqrt(2 * math.pi)))
        grads["up/W"], grads["up/b"] = n2.T @ gu, gu.sum(axis=0)
        gn2 = gu @ P["up/W"].T
        grads["n2/gamma"], grads["n2/beta"] = (gn2 * xn2).sum(axis=0), gn2.sum(axis=0)
        gh = gblock + _layer_norm_vjp(gn2, xn2, inv2, P["n2/gamma"])
        grads["attention/Wo"], grads["attention/bo"] = joined.T @ gh, gh.sum(axis=0)
        gmixed = (gh @ P["attention/Wo"].T).reshape(n, t, h_, w).transpose(0, 2, 1, 3)
        ga = gmixed @ v.transpose(0, 1, 3, 2)
        gv = a.transpose(0, 1, 3, 2) @ gmixed
        gscores = a * (ga - (ga * a).sum(axis=-1, keepdims=True)) * np.float32(1 / math.sqrt(w))
        gqkv = np.empty((n, t, 3, h_, w), np.float32)  # the layout of qkv's rows
        for i, part in enumerate((gscores @ k, gscores.transpose(0, 1, 3, 2) @ q, gv)):
            gqkv[:, :, i] = part.transpose(0, 2, 1, 3)
        gqkv = gqkv.reshape(n * t, 3 * d)
        grads["attention/Wqkv"], grads["attention/bqkv"] = n1.T @ gqkv, gqkv.sum(axis=0)
        gn1 = gqkv @ P["attention/Wqkv"].T
        grads["n1/gamma"], grads["n1/beta"] = (gn1 * xn1).sum(axis=0), gn1.sum(axis=0)
        sgd(P, grads)
        grads = {k if k.startswith("logits") else f"block/{k}": v for k, v in grads.items()}
        grads["loss"] = loss
        return grads


def attention_step(quick: bool) -> list:
    label = f"attention train step, encoder layer, batch {BATCH} × {TOKENS} tokens × {WIDTH}, {HEADS} heads, float32"
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(BATCH, TOKENS, WIDTH)).astype(np.float32),
             "y": np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]}
    model = float32_model(ATTENTION)
    reference = AttentionReference(model.parameters)
    torch_step = _torch_attention(model.parameters, batch) if torch is not None else None
    theirs = reference.step(batch["x"], batch["y"])
    ours = graphdef_step(model, batch)
    values, grads = ours()
    agree(label, {**grads, "loss": float(values["loss"].mean())}, theirs, 2e-3)
    fns = {"graphdef": ours, "numpy": lambda: reference.step(batch["x"], batch["y"])}
    if torch_step is not None:
        fns["pytorch"] = torch_step
    return [row(label, interleaved(fns, 5 if quick else 21, 3 if quick else 10), 1.15)]


def _torch_attention(params: dict, batch: dict):
    """The same layer in PyTorch eager, from graphdef's initial weights, trained by SGD."""
    F = torch.nn.functional
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    optimizer = torch.optim.SGD(list(P.values()), lr=LR)
    x, labels = torch.tensor(batch["x"]), torch.tensor(batch["y"]).argmax(dim=1)
    n, t, d = x.shape
    w = d // HEADS

    def step():
        n1 = F.layer_norm(x, (d,), P["block/n1/gamma"], P["block/n1/beta"])
        qkv = (n1 @ P["block/attention/Wqkv"] + P["block/attention/bqkv"]).view(n, t, 3, HEADS, w)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w), dim=-1)
        h = x + (a @ v).transpose(1, 2).reshape(n, t, d) @ P["block/attention/Wo"] + P["block/attention/bo"]
        n2 = F.layer_norm(h, (d,), P["block/n2/gamma"], P["block/n2/beta"])
        up = F.gelu(n2 @ P["block/up/W"] + P["block/up/b"])
        block = h + up @ P["block/down/W"] + P["block/down/b"]
        loss = F.cross_entropy(block.mean(dim=1) @ P["logits/W"] + P["logits/b"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    args = parser.parse_args()
    rows = lenet_step(args.quick) + attention_step(args.quick) + lenet_epoch(args.quick)
    table(rows)

if __name__ == "__main__":
    main()


# -- the torch backend: graphdef train --backend torch against hand-written torch.nn.Modules -------------

def torch_backend_step(model, batch: dict):
    """One step as `graphdef train --backend torch` takes it: the lowered module's mean loss, its gradients by
    autograd, graphdef's SGD on the module's tensors, the loss read back (the loop reports it)."""
    from graphdef.training.torch_engine import TorchEngine
    engine, names, optimizer = TorchEngine(model, device="cpu"), list(model.parameters), Optimizer("sgd", lr=LR)

    def step():
        values, grads = engine.train_step(batch, "loss", names)
        optimizer.step(engine.parameters, grads, LR)
        return values, grads
    return step


def hand_written_step(net, batch: dict, image: tuple = ()):
    """The same step on a hand-written torch.nn.Module: cross-entropy against the one-hot targets, torch's SGD,
    the loss read back."""
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    x, y = torch.as_tensor(batch["x"]), torch.as_tensor(batch["y"])
    x = x.reshape(-1, *image) if image else x

    def step():
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


class HandMLP(torch.nn.Module if torch is not None else object):
    """A ReLU MLP as one writes it in PyTorch, with a graphdef MLP's initial weights (W_i [in, out], b_i)."""

    def __init__(self, params: dict):
        super().__init__()
        count = sum(k.startswith("W") for k in params)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(*params[f"W{i}"].shape) for i in range(1, count + 1))
        with torch.no_grad():
            for i, layer in enumerate(self.layers, 1):
                layer.weight.copy_(torch.as_tensor(params[f"W{i}"]).T)
                layer.bias.copy_(torch.as_tensor(params[f"b{i}"]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def torch_backend_rows(mlp_text: str, quick: bool) -> list:
    """W3 and the LeNet step on the torch backend against hand-written modules of the same networks, CPU."""
    if torch is None:
        return []
    rng = np.random.default_rng(0)
    mlp = graphdef.loads(mlp_text)
    batch = {"x": rng.random((256, 784)).astype(np.float32),
             "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, 256)]}
    net = HandMLP({k: v.copy() for k, v in mlp.parameters.items()})
    ours, theirs = torch_backend_step(mlp, batch), hand_written_step(net, batch)
    agree("W3 torch backend", {"loss": float(ours()[0]["loss"].mean())}, {"loss": theirs()}, 1e-5)
    rows = [row("W3 wide MLP train step on the torch backend, batch 256, float32, CPU (vs a hand-written module)",
                interleaved({"graphdef": ours, "torch module": theirs}, 5 if quick else 31, 2 if quick else 8), 1.1)]
    lenet, digits = float32_model(LENET, **{"p: 0.3": "p: 0.0"}), _digits_batch(BATCH, np.float32)
    net = _torch_lenet(lenet.parameters, digits, 0.0, module=True)
    ours, theirs = torch_backend_step(lenet, digits), hand_written_step(net, digits, (1, 8, 8))
    agree("LeNet torch backend", {"loss": float(ours()[0]["loss"].mean())}, {"loss": theirs()}, 1e-4)
    rows.append(row(f"LeNet train step on the torch backend, batch {BATCH}, float32, CPU (vs a hand-written module)",
                    interleaved({"graphdef": ours, "torch module": theirs}, 5 if quick else 21, 10 if quick else 30),
                    1.1))
    return rows
