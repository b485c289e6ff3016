"""graphdef against hand-written numpy (and PyTorch eager when installed), in one process.

Each workload is written as a YAML model, checked to give the same gradients as its
numpy reference, then timed with the implementations interleaved; medians and the
ratio graphdef / numpy are printed against the targets and saved as JSON. The machine
is shared and noisy: read ratios, not single times.

    python benchmarks/run.py [--quick] [--output benchmarks/results.json]
"""
from __future__ import annotations

import argparse
import compileall
import gc
import io
import json
import os
import platform
import re
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphdef  # noqa: E402
from timing import agree, interleaved, per_call, row as _row, table  # noqa: E402
import nets  # noqa: E402
from graphdef.training.optimizers import Optimizer  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


# -- W1: the lecture network with scalar vertices -------------------------------------

W1_PARAMS = {k: np.float64(v) for k, v in graphdef.load(ROOT / "models/lecture_network.yaml").parameters.items()}


def lecture_reference(x1, x2, y1, y2, p=W1_PARAMS):
    """Forward and backward of the lecture network, by hand."""
    w1, w1p, w2, w2p, b1, b2 = p["w1"], p["w1p"], p["w2"], p["w2p"], p["b1"], p["b2"]
    w3, w3p, w4, w4p, b3, b4 = p["w3"], p["w3p"], p["w4"], p["w4p"], p["b3"], p["b4"]
    z1 = w1 * x1 + w2p * x2 + b1
    z2 = w1p * x1 + w2 * x2 + b2
    h1, h2 = np.maximum(z1, 0), np.maximum(z2, 0)
    o1 = w3 * h1 + w4 * h2 + b3
    o2 = w3p * h1 + w4p * h2 + b4
    x_exp1, x_exp2 = np.exp(o1), np.exp(o2)
    den = x_exp1 + x_exp2
    e1, e2 = x_exp1 / den, x_exp2 / den
    ln2 = np.log(2.0)
    loss = -(y1 * np.log(e1) + y2 * np.log(e2)) / ln2
    ge1, ge2 = -y1 / (e1 * ln2), -y2 / (e2 * ln2)
    s = ge1 * e1 + ge2 * e2  # softmax backward
    go1, go2 = e1 * (ge1 - s), e2 * (ge2 - s)
    gh1, gh2 = go1 * w3 + go2 * w3p, go1 * w4 + go2 * w4p
    gz1, gz2 = gh1 * (z1 > 0), gh2 * (z2 > 0)
    batch = (lambda g: g) if np.ndim(x1) == 0 else (lambda g: g.sum())  # parameters are shared across a batch  # noqa: E731
    grads = {"x1": gz1 * w1 + gz2 * w1p, "x2": gz1 * w2p + gz2 * w2,
             "y1": -np.log(e1) / ln2, "y2": -np.log(e2) / ln2,
             "w1": batch(gz1 * x1), "w1p": batch(gz2 * x1), "w2": batch(gz2 * x2), "w2p": batch(gz1 * x2),
             "b1": batch(gz1), "b2": batch(gz2), "w3": batch(go1 * h1), "w3p": batch(go2 * h1),
             "w4": batch(go1 * h2), "w4p": batch(go2 * h2), "b3": batch(go1), "b4": batch(go2)}
    return loss, grads


def w1(quick: bool) -> list:
    model = graphdef.load(ROOT / "models/lecture_network.yaml")
    rows = []
    for label, n, number in (("W1 lecture network, one sample", None, 2000),
                             ("W1b same graph, batch of 256 (per batch)", 256, 300)):
        rng = np.random.default_rng(0)
        if n is None:
            feeds = {"x1": np.float64(1.0), "x2": np.float64(0.5), "y1": np.float64(1.0), "y2": np.float64(0.0)}
        else:
            labels = rng.integers(0, 2, n)
            feeds = {"x1": rng.random(n), "x2": rng.random(n), "y1": (labels == 0) * 1.0, "y2": (labels == 1) * 1.0}
        _, theirs = lecture_reference(*(np.asarray(feeds[k]) for k in ("x1", "x2", "y1", "y2")))
        agree(label, model.gradients(feeds, of="E"), theirs, 1e-9)
        fns = {"graphdef": lambda: model.gradients(feeds, of="E"),
               "numpy": lambda: lecture_reference(feeds["x1"], feeds["x2"], feeds["y1"], feeds["y2"])}
        if torch is not None and n is None:
            fns["pytorch"] = _torch_lecture(feeds)
        rows.append(_row(label, interleaved(fns, 5 if quick else 15, number // (4 if quick else 1)), 2.0))
    return rows


def w1_public(quick: bool) -> dict:
    """`model.gradients()` as a user calls it: the lecture network with its 12 weights declared as inputs,
    all 16 scalars given in the feed and `wrt` the weights, so checking the feed and naming the
    gradients count, not only the compiled plan."""
    text = re.sub(r"^parameters:\n", "", (ROOT / "models/lecture_network.yaml").read_text(), flags=re.M)
    text = re.sub(r"^  (\w+): *\{value: [-\d.]+\}", r"  \1: {shape: []}", text, flags=re.M)
    model, wrt = graphdef.loads(text), list(W1_PARAMS)
    feeds = {"x1": 1.0, "x2": 0.5, "y1": 1.0, "y2": 0.0, **{k: float(v) for k, v in W1_PARAMS.items()}}
    _, theirs = lecture_reference(1.0, 0.5, 1.0, 0.0)
    agree("W1c", model.gradients(feeds, of="E", wrt=wrt), {k: theirs[k] for k in wrt}, 1e-9)
    fns = {"graphdef": lambda: model.gradients(feeds, of="E", wrt=wrt),
           "numpy": lambda: lecture_reference(1.0, 0.5, 1.0, 0.0)}
    label = "W1c the same, public gradients(): 16 scalars fed, wrt 12 weights"
    return _row(label, interleaved(fns, 5 if quick else 15, 500 if quick else 2000), 2.0)


def _torch_lecture(feeds):
    def step():
        p = {k: torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for k, v in W1_PARAMS.items()}
        x1, x2, y1, y2 = (torch.tensor(float(feeds[k]), dtype=torch.float64) for k in ("x1", "x2", "y1", "y2"))
        h1 = torch.relu(p["w1"] * x1 + p["w2p"] * x2 + p["b1"])
        h2 = torch.relu(p["w1p"] * x1 + p["w2"] * x2 + p["b2"])
        o1, o2 = p["w3"] * h1 + p["w4"] * h2 + p["b3"], p["w3p"] * h1 + p["w4p"] * h2 + p["b4"]
        den = torch.exp(o1) + torch.exp(o2)
        loss = -(y1 * torch.log2(torch.exp(o1) / den) + y2 * torch.log2(torch.exp(o2) / den))
        loss.backward()
    return step


# -- W2, W3: MLP train steps --------------------------------------------------------------

def mlp_yaml(sizes, dtype, free: bool = False) -> str:
    """A ReLU MLP with softmax cross-entropy, declared for one sample; `free`: declared for a batch of any
    size instead (`[null, n]`), one loss per sample averaged by a `mean` node."""
    params, nodes, previous = [], [], "x"
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), 1):
        params += [f"  W{i}: {{shape: [{a}, {b}], init: he_normal}}", f"  b{i}: {{shape: [{b}], init: zeros}}"]
        nodes += [f"  m{i}: {{op: matmul, inputs: [{previous}, W{i}]}}", f"  z{i}: {{op: add, inputs: [m{i}, b{i}]}}"]
        previous = f"z{i}"
        if i < len(sizes) - 1:
            nodes.append(f"  h{i}: {{op: relu, inputs: [z{i}]}}")
            previous = f"h{i}"
    batch = "null, " if free else ""
    losses = f"  losses: {{op: softmax_cross_entropy, inputs: [{previous}, y]}}\n  loss: {{op: mean, inputs: [losses]}}" \
        if free else f"  loss: {{op: softmax_cross_entropy, inputs: [{previous}, y]}}"
    return (f"graphdef: 1\nname: mlp{'-'.join(map(str, sizes))}\ndtype: {dtype}\ninputs:\n"
            f"  x: {{shape: [{batch}{sizes[0]}]}}\n  y: {{shape: [{batch}{sizes[-1]}]}}\nparameters:\n"
            + "\n".join(params) + "\nnodes:\n" + "\n".join(nodes) + f"\n{losses}\noutputs: [loss]\nloss: loss\n")


def mlp_reference_grads(params: dict, x, y, n_layers: int) -> tuple[dict, np.ndarray]:
    """Loss and gradients of a ReLU MLP with softmax cross-entropy (mean over the batch), by hand: (them, logits)."""
    acts, pre = [x], []
    for i in range(1, n_layers + 1):
        z = acts[-1] @ params[f"W{i}"] + params[f"b{i}"]
        pre.append(z)
        acts.append(np.maximum(z, 0) if i < n_layers else z)
    z = acts[-1]
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    grads = {"loss": -np.mean(np.sum(y * (shifted - np.log(total)), axis=1))}  # reported by every training step
    g = (e / total - y) / len(x)
    for i in range(n_layers, 0, -1):
        grads[f"W{i}"] = acts[i - 1].T @ g
        grads[f"b{i}"] = g.sum(axis=0)
        if i > 1:
            g = (g @ params[f"W{i}"].T) * (pre[i - 2] > 0)
    return grads, z


def mlp_reference_step(params: dict, x, y, lr: float, n_layers: int) -> dict:
    """One SGD step of that MLP, by hand; returns the loss and gradients."""
    grads, _ = mlp_reference_grads(params, x, y, n_layers)
    for k, p in params.items():
        p -= lr * grads[k]
    return grads


def mlp_workload(label, sizes, batch, dtype, target, quick, number, memory_target=None, turns=15,
                 free: bool = False) -> dict:
    model = graphdef.loads(mlp_yaml(sizes, dtype, free))
    rng = np.random.default_rng(0)
    x = rng.random((batch, sizes[0])).astype(dtype)
    y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], batch)]
    names = list(model.parameters)
    reference = {k: v.copy() for k, v in model.parameters.items()}
    optimizer = Optimizer("sgd", lr=1e-3)
    n_layers = len(sizes) - 1

    def ours():
        values, grads = model.train_step({"x": x, "y": y}, "loss", names, outputs=["loss"])  # as graphdef train
        optimizer.step(model.parameters, grads, 1e-3)
        return values, grads

    def theirs():
        return mlp_reference_step(reference, x, y, 1e-3, n_layers)

    values, grads = ours()
    mean_loss = float(values["loss"].sum()) / values["loss"].size  # one loss per sample; training minimises the mean
    agree(label, {**grads, "loss": mean_loss}, theirs(), 1e-4 if dtype == "float32" else 1e-10)
    fns = {"graphdef": ours, "numpy": theirs}
    if torch is not None:
        fns["pytorch"] = _torch_mlp(reference, x, y, n_layers)
    row = _row(label, interleaved(fns, 5 if quick else turns, max(number // (4 if quick else 1), 1)), target)
    if memory_target:
        row["peak memory ratio"] = peak_memory(ours) / peak_memory(theirs)
        row["memory target"] = memory_target
    return row


def _torch_mlp(params, x, y, n_layers):
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tx, ty = torch.tensor(x), torch.tensor(y).argmax(dim=1)
    opt = torch.optim.SGD(list(tp.values()), lr=1e-3)

    def step():
        h = tx
        for i in range(1, n_layers + 1):
            h = h @ tp[f"W{i}"] + tp[f"b{i}"]
            h = torch.relu(h) if i < n_layers else h
        loss = torch.nn.functional.cross_entropy(h, ty)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def peak_memory(fn) -> int:
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


# -- W4: a long chain of elementwise vertices --------------------------------------------

CHAIN_OPS = ("tanh", "sigmoid", "neg", "exp")


def chain_yaml(n: int) -> str:
    nodes = [f"  v{i + 1}: {{op: {CHAIN_OPS[i % 4]}, inputs: [v{i}]}}" for i in range(n)]
    return (f"graphdef: 1\nname: chain{n}\ninputs:\n  v0: {{shape: [16]}}\nnodes:\n" + "\n".join(nodes)
            + f"\n  total: {{op: sum, inputs: [v{n}]}}\noutputs: [total]\nloss: total\n")


def chain_reference(x, n: int):
    values = [x]
    for i in range(n):
        v = values[-1]
        op = CHAIN_OPS[i % 4]
        values.append(np.tanh(v) if op == "tanh" else 1 / (1 + np.exp(-v)) if op == "sigmoid"
                      else -v if op == "neg" else np.exp(v))
    g = np.ones_like(x)
    for i in range(n - 1, -1, -1):
        op, out = CHAIN_OPS[i % 4], values[i + 1]
        g = g * (1 - out * out) if op == "tanh" else g * out * (1 - out) if op == "sigmoid" \
            else -g if op == "neg" else g * out
    return g


def w4(quick: bool) -> dict:
    n = 2000
    model = graphdef.loads(chain_yaml(n))
    x = np.random.default_rng(0).normal(size=16)
    agree("W4", model.gradients({"v0": x}), {"v0": chain_reference(x, n)}, 1e-9)
    fns = {"graphdef": lambda: model.gradients({"v0": x}), "numpy": lambda: chain_reference(x, n)}
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)

        def torch_chain():
            v = tx
            for i in range(n):
                op = CHAIN_OPS[i % 4]
                v = torch.tanh(v) if op == "tanh" else torch.sigmoid(v) if op == "sigmoid" else -v if op == "neg" \
                    else torch.exp(v)
            v.sum().backward()
        fns["pytorch"] = torch_chain
    samples = interleaved(fns, 5 if quick else 11, 3 if quick else 10)
    return _row(f"W4 chain of {n} elementwise vertices, length 16 (per vertex)",
                {k: [t / n for t in v] for k, v in samples.items()}, 1.5)


# -- start-up: a command's whole wall time, against Python importing numpy ----------------------

def startup(quick: bool) -> list:
    """Wall time of `graphdef --version` and `graphdef validate models/lecture.yaml`, each a fresh process,
    against `python -c "import numpy"`: what every command pays before doing anything."""
    compileall.compile_dir(ROOT / "graphdef", quiet=1)  # as pip leaves an install: bytecode written
    script = shutil.which("graphdef", path=str(Path(sys.executable).parent))
    graphdef_cmd = [script] if script else [sys.executable, "-m", "graphdef"]
    numpy_cmd = [sys.executable, "-c", "import numpy"]
    rows = []
    for label, args in (("--version", ["--version"]), ("validate models/lecture.yaml", ["validate", "models/lecture.yaml"])):
        def run(cmd):
            return lambda: subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        samples = interleaved({"graphdef": run(graphdef_cmd + args), "python -c 'import numpy'": run(numpy_cmd)},
                              6 if quick else 20, 1)
        rows.append(_row(f"start-up: graphdef {label}", samples, 2.5))
    return rows


# -- big graphs: loading, and the first call that compiles the plan -------------------------

def scaling(quick: bool) -> tuple[list, list]:
    """For chains of 2k, 20k (and 100k) vertices: load time against PyYAML's C parser reading the same text,
    and the first gradients() call (which compiles the plan) against a later one.

    Returns (table rows, the curve saved as it is)."""
    parse = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    rows, curve = [], []
    for n in (2000, 20_000) if quick else (2000, 20_000, 100_000):
        text, x = chain_yaml(n), np.full(16, 0.1)
        repeats = 1 if n > 20_000 or quick else 3
        load = interleaved({"graphdef": lambda: graphdef.loads(text),
                            "PyYAML C parse": lambda: yaml.load(text, Loader=parse)}, repeats * 2, 1, warm=False)
        firsts, laters = [], []
        for _ in range(repeats):
            model = graphdef.loads(text)
            firsts.append(per_call(lambda: model.gradients({"v0": x}), 1))
            laters.append(statistics.median(per_call(lambda: model.gradients({"v0": x}), 1) for _ in range(5)))
        rows.append(_row(f"load + validate a chain of {n:,} vertices", load, 0.5))
        rows.append(_row(f"   first gradients() call (compiles) / a later one, {n:,} vertices",
                         {"graphdef": firsts, "later call": laters}, 10))
        curve.append({"vertices": n, "load s": rows[-2]["graphdef"], "PyYAML C parse s": rows[-2]["PyYAML C parse"],
                      "first fwd+bwd s (compiles)": rows[-1]["graphdef"], "fwd+bwd s": rows[-1]["later call"]})
    return rows, curve


# -- training: graphdef train against a numpy loop over the same batches ---------------------

def training(quick: bool) -> list:
    """Epoch times (training batches and validation) of `graphdef train models/digits.yaml`, with the model's
    own settings (Adam, batch 32), and of a numpy loop over the same batches, turn by turn.

    A second row gives graphdef's whole wall time per epoch, checkpoint and metrics files
    included: the time between the first batches of consecutive epochs.
    """
    epochs = 3  # the first is a warm-up; many short turns keep the two sides' samples close in time
    samples, walls = {"graphdef": [], "numpy": []}, []
    with tempfile.TemporaryDirectory() as tmp:
        for turn in range(4 if quick else 10):
            first_batches = {}

            def note(run):  # called after every batch; returns None: go on
                first_batches.setdefault(run.epoch, time.perf_counter())
            history = graphdef.train(ROOT / "models/digits.yaml", run_dir=Path(tmp) / f"r{turn}", epochs=epochs,
                                     out=io.StringIO(), callback=note)
            times = [first_batches[e] for e in sorted(first_batches)]
            walls += [b - a for a, b in zip(times[1:], times[2:])]
            samples["graphdef"] += [row["seconds"] for row in history[1:]]
            samples["numpy"] += _numpy_digits_epochs(history.model, epochs)
    row = _row("training epoch, models/digits.yaml (adam, batch 32)", samples, 1.3)
    whole = {"workload": "   the same, wall time with checkpoint and metrics files",
             "graphdef": statistics.median(walls), "ratio": None, "target": None, "ok": True, "unit": "s"}
    return [row, whole]


def _numpy_digits_epochs(model, epochs) -> list:
    """Seconds per epoch (after the first) of the digits model trained by hand: the same batches, Adam, validation."""
    from graphdef.training.datasets import digits
    from graphdef.training.loop import split
    from graphdef.training.optimizers import DEFAULTS
    settings = model.doc["training"]
    adam = {**DEFAULTS["adam"], **settings["optimizer"]}  # digits.yaml trains with Adam
    lr, b1, b2, eps = adam["lr"], adam["beta1"], adam["beta2"], adam["eps"]
    batch, seed = settings["batch_size"], settings["seed"]
    data = digits()
    x, y = data["x"], np.eye(10)[data["y"]]
    val, train_rows = split(len(x), seed, settings["validation_split"])
    params = {"W1": model.parameters["logits/layer1/W"].copy(), "b1": model.parameters["logits/layer1/b"].copy(),
              "W2": model.parameters["logits/layer2/W"].copy(), "b2": model.parameters["logits/layer2/b"].copy()}
    moments = {k: (np.zeros_like(p), np.zeros_like(p)) for k, p in params.items()}
    out, t = [], 0
    for epoch in range(epochs):
        start = time.perf_counter()
        order = train_rows[np.random.default_rng([seed, epoch]).permutation(len(train_rows))]
        correct = 0
        for b in range(0, len(order), batch):
            rows = order[b:b + batch]
            grads, z = mlp_reference_grads(params, x[rows], y[rows], 2)
            correct += int(np.sum(z.argmax(1) == y[rows].argmax(1)))
            t += 1
            for k, p in params.items():  # Adam, as in Kingma & Ba (2015)
                m, v = moments[k]
                m[...] = b1 * m + (1 - b1) * grads[k]
                v[...] = b2 * v + (1 - b2) * grads[k] ** 2
                p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
        z = np.maximum(x[val] @ params["W1"] + params["b1"], 0) @ params["W2"] + params["b2"]
        log_p = z - z.max(1, keepdims=True)
        log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
        _ = -np.mean(np.sum(y[val] * log_p, 1)), np.mean(z.argmax(1) == y[val].argmax(1))
        out.append(time.perf_counter() - start)
    return out[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller scaling sizes")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results.json"))
    args = parser.parse_args()
    q = args.quick
    rows = w1(q)
    rows.append(w1_public(q))
    rows.append(mlp_workload("W2 digits MLP train step, batch 64, 64-128-10, float32", [64, 128, 10], 64,
                             "float32", 1.15, q, 400))
    rows.append(mlp_workload("W2 digits MLP train step, batch 64, 64-128-10, float64", [64, 128, 10], 64,
                             "float64", 1.15, q, 400))
    rows.append(mlp_workload("W3 wide MLP train step, batch 256, 784-512-512-10, float32", [784, 512, 512, 10],
                             256, "float32", 1.05, q, 8, memory_target=1.2, turns=31))  # BLAS-bound: noisier
    for dtype in ("float32", "float64"):
        rows.append(mlp_workload(f"W2f the same, free batch size ([null, 64]) and a mean node, {dtype}",
                                 [64, 128, 10], 64, dtype, 1.15, q, 400, free=True))
    rows.append(mlp_workload("W3f wide MLP step, free batch size, float32", [784, 512, 512, 10], 256, "float32",
                             1.05, q, 8, turns=31, free=True))
    rows.append(w4(q))
    rows += nets.lenet_step(q) + nets.attention_step(q) + nets.lenet_epoch(q)
    rows += nets.torch_backend_rows(mlp_yaml([784, 512, 512, 10], "float32"), q)
    rows += training(q)
    rows += startup(q)
    big, curve = scaling(q)
    rows += big

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}" \
              + (f", torch {torch.__version__}" if torch is not None else "")
    print(f"machine: {machine}")
    table(rows)
    print("\nscaling (chain of elementwise vertices, length-16 vectors):")
    for c in curve:
        n = c["vertices"]
        print(f"  {n:>7,} vertices: load {c['load s'] / n * 1e6:.0f} µs per vertex (PyYAML's C parser "
              f"{c['PyYAML C parse s'] / n * 1e6:.0f}), first forward+backward "
              f"{c['first fwd+bwd s (compiles)']:.3f} s (compiles), then {c['fwd+bwd s']:.4f} s")
    Path(args.output).write_text(json.dumps({"machine": machine, "rows": rows, "scaling": curve}, indent=2))
    print(f"\nsaved {args.output}")


if __name__ == "__main__":
    main()
