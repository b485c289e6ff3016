"""Training on the torch backend: step for step equal to the numpy backend, run directories interchangeable
between the backends (evaluate, resume), the command line's --backend/--device, and data-parallel training
under torchrun (two processes, gloo on the CPU) equal to one process with the same global batch."""
import io
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import graphdef
from conftest import MODELS, ROOT
from graphdef.tools.cli import main

torch = pytest.importorskip("torch")

SETTINGS = {  # a few steps of each optimizer family, with a schedule and clipping that bites
    "adam": dict(optimizer={"name": "adam", "lr": 0.01}, schedule={"name": "cosine", "min_lr": 0.001},
                 clip_norm=0.5),
    "momentum": dict(optimizer={"name": "momentum", "lr": 0.05, "momentum": 0.9},
                     schedule={"name": "step", "step_size": 1, "gamma": 0.5}, clip_norm=1.0),
}
GPUS = torch.cuda.device_count()


def quiet_train(*args, **kwargs):
    return graphdef.train(*args, out=io.StringIO(), **kwargs)


def digits(run_dir, **settings):
    """Two short epochs of the digits MLP (float64) on the given backend."""
    return quiet_train(MODELS / "digits.yaml", run_dir=run_dir, epochs=2, batch_size=64, **settings)


def assert_same_weights(a, b, rtol=1e-10, atol=1e-12):
    for name, value in a.parameters.items():
        np.testing.assert_allclose(b.parameters[name], value, rtol=rtol, atol=atol, err_msg=name)


def untimed(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_torch_backend_trains_step_for_step_like_numpy(tmp_path, name):
    numpy_run = digits(tmp_path / "numpy", **SETTINGS[name])
    torch_run = digits(tmp_path / "torch", backend="torch", device="cpu", **SETTINGS[name])
    assert_same_weights(numpy_run.model, torch_run.model)
    for ours, theirs in zip(untimed(numpy_run), untimed(torch_run)):
        assert ours == pytest.approx(theirs, rel=1e-9)


def test_trained_on_torch_evaluates_on_numpy(tmp_path):
    history = digits(tmp_path / "run", backend="torch", device="cpu")
    reloaded = graphdef.load(tmp_path / "run" / "model.yaml")
    on_numpy = graphdef.evaluate(reloaded)
    on_torch = graphdef.evaluate(reloaded, backend="torch", device="cpu")
    assert on_numpy["accuracy"] == history[-1]["val_accuracy"] == on_torch["accuracy"]
    assert on_numpy["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-12)
    assert on_torch["loss"] == pytest.approx(on_numpy["loss"], rel=1e-12)
    np.testing.assert_allclose(graphdef.predict(reloaded, "digits", backend="torch", device="cpu")["probs"],
                               graphdef.predict(reloaded, "digits")["probs"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("first, then", [("torch", "numpy"), ("numpy", "torch")])
def test_a_run_resumes_on_the_other_backend(tmp_path, first, then):
    backend = lambda name: {"backend": name, "device": "cpu" if name == "torch" else None}  # noqa: E731
    straight = digits(tmp_path / "straight", **SETTINGS["adam"])
    stopped = digits(tmp_path / "run", callback=lambda run: run.epoch == 0 and run.batch == 5,
                     **backend(first), **SETTINGS["adam"])
    assert stopped.status == "interrupted"
    resumed = quiet_train(resume=tmp_path / "run", **backend(then))
    assert resumed.status == "finished" and len(resumed) == 2
    assert_same_weights(straight.model, resumed.model)
    assert_same_weights(straight.model, graphdef.load(tmp_path / "run" / "model.yaml"))


def test_cli_grad_on_torch_prints_what_numpy_prints():
    outputs = {}
    for backend in ("numpy", "torch"):
        out, err = io.StringIO(), io.StringIO()
        assert main(["grad", MODELS / "lecture.yaml", "--at", "a=3", "--at", "b=5", "--backend", backend],
                    out, err) == 0, err.getvalue()
        outputs[backend] = out.getvalue()
    assert outputs["torch"] == outputs["numpy"] == "e = 48\n∂e/∂a = 6\n∂e/∂b = 14\n"


def test_cli_train_eval_predict_on_torch(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    assert main(["train", MODELS / "lecture_network.yaml", "--epochs", "2", "-o", tmp_path / "run", "--backend",
                 "torch", "--device", "cpu"], out, err) == 0, err.getvalue()
    saved = out.getvalue().strip()

    def printed(*command):
        out = io.StringIO()
        assert main(list(command), out, io.StringIO()) == 0
        return out.getvalue()

    assert printed("eval", saved, "--backend", "torch") == printed("eval", saved)
    table = lambda text: np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1)  # noqa: E731
    np.testing.assert_allclose(table(printed("predict", saved, "--data", "xor", "--backend", "torch")),
                               table(printed("predict", saved, "--data", "xor")), rtol=1e-12)


@pytest.mark.skipif(GPUS > 0, reason="a GPU is present: --device cuda is available")
def test_device_cuda_without_a_gpu_is_a_clear_error():
    out, err = io.StringIO(), io.StringIO()
    code = main(["grad", MODELS / "lecture.yaml", "--at", "a=3", "--at", "b=5", "--backend", "torch",
                 "--device", "cuda"], out, err)
    assert code == 1 and "device 'cuda' is not available" in err.getvalue()
    assert "Traceback" not in err.getvalue() and out.getvalue() == ""


def test_numpy_backend_refuses_another_device():
    err = io.StringIO()
    assert main(["eval", MODELS / "digits.yaml", "--device", "cuda"], io.StringIO(), err) == 2
    assert "--backend torch" in err.getvalue()


# -- data parallel under torchrun -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(cwd, processes: int, *arguments, timeout: int = 240):
    """`torchrun --nproc-per-node N -m graphdef ARGUMENTS` in `cwd`, on a free local port."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
               "-m", "graphdef", *map(str, arguments)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    done = torchrun(tmp_path, 2, "train", MODELS / "digits.yaml", "--backend", "torch", "--device", "cpu",
                    "--epochs", "1", "--batch-size", "64")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["digits"] and list(tmp_path.rglob("model.yaml")) == [runs[0] / "model.yaml"]
    assert done.stdout.strip() == str(os.path.join("runs", "digits", "model.yaml"))  # rank 0 alone prints
    assert done.stderr.count("epoch 1/1") == 1
    one = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "one", epochs=1, batch_size=64, backend="torch",
                      device="cpu")
    assert_same_weights(one.model, graphdef.load(runs[0] / "model.yaml"), rtol=1e-6, atol=1e-9)


def test_a_failing_rank_is_named(tmp_path):
    done = torchrun(tmp_path, 2, "train", MODELS / "digits.yaml", "--backend", "torch", "--device", "cpu",
                    "--epochs", "1", "--data", tmp_path / "missing.csv")
    assert done.returncode != 0
    assert "rank 0 of 2:" in done.stderr or "rank 1 of 2:" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(GPUS < 2, reason=f"needs 2 GPUs for NCCL data parallel; {GPUS} present")
def test_two_gpus_train_like_one(tmp_path):
    done = torchrun(tmp_path, 2, "train", MODELS / "digits.yaml", "--backend", "torch", "--device", "cuda",
                    "--epochs", "1", "-o", "run")
    assert done.returncode == 0, done.stderr[-3000:]
    one = quiet_train(MODELS / "digits.yaml", run_dir=tmp_path / "one", epochs=1, backend="torch", device="cuda")
    assert_same_weights(one.model, graphdef.load(tmp_path / "run" / "model.yaml"), rtol=1e-6, atol=1e-9)
