"""Wall time of the main job, `graphdef train models/digits.yaml`, as a user runs it (new process each time).

Prints the median over repeats, its ratio to the 60 s budget, and the held-out accuracy.
Run: python benchmarks/train_digits.py [--repeats N]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 60.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times, accuracies = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "graphdef", "train", str(ROOT / "models/digits.yaml"), "-o", str(run)],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            out = subprocess.run([sys.executable, "-m", "graphdef", "eval", str(run / "model.yaml"), "--json"],
                                 check=True, capture_output=True, text=True).stdout
            accuracies.append(json.loads(out)["accuracy"])
    median = statistics.median(times)
    print(f"graphdef train models/digits.yaml: median {median:.2f} s over {args.repeats} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); ratio to the {BUDGET_S:.0f} s budget: {median / BUDGET_S:.3f}")
    print(f"held-out accuracy: {', '.join(f'{a:.4f}' for a in accuracies)} (target >= 0.96)")


if __name__ == "__main__":
    main()
