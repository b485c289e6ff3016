"""A training run killed with SIGKILL at 20 random moments: after each, the newest checkpoint loads and resumes."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np

import graphdef
from conftest import MODELS, ROOT
from graphdef.training import checkpoint

KILL_POINTS = 20
COMMAND = "import sys; from graphdef.tools.cli import main; sys.exit(main(sys.argv[1:]))"


def start(run, resume: bool):
    args = ["train", "--resume", str(run)] if resume else ["train", str(MODELS / "spirals.yaml"), "-o", str(run)]
    return subprocess.Popen([sys.executable, "-c", COMMAND, *args, "--epochs", "100000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def holds_lock(run, process) -> bool:
    try:
        return (run / ".lock").read_text() == str(process.pid)
    except OSError:
        return False


def test_sigkill_at_many_moments_never_loses_the_last_checkpoint(tmp_path):
    run, rng, seen = tmp_path / "run", random.Random(1), []
    for point in range(KILL_POINTS):
        process = start(run, resume=point > 0)
        deadline = time.monotonic() + 60
        while point == 0 and not list(run.glob("checkpoints/*.npz")) and time.monotonic() < deadline:
            time.sleep(0.01)
        while point > 0 and not holds_lock(run, process) and time.monotonic() < deadline:
            time.sleep(0.01)  # started up: the random moment falls in training, however loaded the machine
        time.sleep(rng.uniform(0.0, 1.2))
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate()
        assert "Traceback" not in err, err
        arrays, meta, path = checkpoint.latest(run)  # loads: never torn, never missing
        assert all(f"param/{p}" in arrays for p in ("W1", "b1", "W2", "b2", "W3", "b3"))
        for kept in run.glob("checkpoints/epoch-*.npz"):  # a killed write leaves at most a temp file, never a torn one
            with np.load(kept, allow_pickle=False) as archive:
                assert "meta" in archive.files
        seen.append((meta["epoch"], meta["batch"]))
    assert seen == sorted(seen) and seen[-1] > seen[0], seen  # progress accumulates across kills
    history = graphdef.train(resume=run, epochs=seen[-1][0] + 1, out=open(os.devnull, "w"))
    assert history.status == "finished"
    graphdef.load(run / "model.yaml")
