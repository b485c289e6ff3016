"""The benchmark runner works end to end: its workloads load, their gradients agree with
the hand-written numpy references (the runner refuses to time them otherwise), and it
saves a complete JSON. Speed itself is never asserted here; `benchmarks/run.py` checks it."""
import json
import subprocess
import sys

from conftest import ROOT


def test_quick_benchmark_run_checks_gradients_and_saves_every_row(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    names = [row["workload"].split()[0] for row in results["rows"]]
    assert names[:9] == ["W1", "W1b", "W1c", "W2", "W2", "W3", "W2f", "W2f", "W3f"]
    assert {"W4", "start-up:", "load"} <= set(names)
    assert all(row["graphdef"] > 0 for row in results["rows"])
    assert all(row["ratio"] > 0 for row in results["rows"] if row["ratio"] is not None)
    assert [c["vertices"] for c in results["scaling"]] == [2000, 20_000]
