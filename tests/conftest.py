import contextlib
import io
import signal
from pathlib import Path

import pytest

from graphdef.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


@contextlib.contextmanager
def time_limit(seconds: int, error=TimeoutError):
    """Raise `error` when the body runs longer than `seconds` (SIGALRM: main thread, Unix): a hang
    fails its test instead of stalling the run."""
    def expire(signum, frame):
        raise error(f"took longer than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(*argv):
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def write(tmp_path):
    """Write a model file into a temporary folder and return its path."""
    def _write(text, name="model.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return _write
