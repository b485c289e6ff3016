"""The example models of real model families, trained as a user trains them: `graphdef train MODEL` in a
new process, then `graphdef eval` of the saved model on the held-out split.

Prints, per model, the wall time (median over repeats) and its ratio to the time budget, and the
held-out accuracy against its target; saves them to benchmarks/examples.json.
Run: python benchmarks/examples.py [--repeats N] [--only NAME ...]
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
# model file -> (held-out accuracy target, time budget in seconds on 2 cores)
EXAMPLES = {
    "lenet.yaml": (0.985, 180.0),
    "majority.yaml": (0.95, 180.0),
    "digit_sum.yaml": (0.95, 180.0),
    "sentiment.yaml": (0.95, 180.0),
}


def measure(model: str) -> tuple[float, float]:
    """(seconds of `graphdef train`, held-out accuracy of the saved model)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "graphdef", "train", str(ROOT / "models" / model), "-o", str(run)],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - start
        out = subprocess.run([sys.executable, "-m", "graphdef", "eval", str(run / "model.yaml"), "--json"],
                             check=True, capture_output=True, text=True).stdout
        return seconds, json.loads(out)["accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", nargs="*", choices=sorted(EXAMPLES), help="model files to run (default: all)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "examples.json")
    args = parser.parse_args()
    rows = []
    for model in args.only or EXAMPLES:
        target, budget = EXAMPLES[model]
        runs = [measure(model) for _ in range(args.repeats)]
        seconds = statistics.median(s for s, _ in runs)
        accuracy = min(a for _, a in runs)
        rows.append({"model": model, "seconds": round(seconds, 2), "budget_s": budget,
                     "ratio_to_budget": round(seconds / budget, 3), "accuracy": round(accuracy, 4), "target": target,
                     "met": accuracy >= target and seconds <= budget})
        print(f"{model:16} {seconds:6.1f} s (ratio to the {budget:.0f} s budget {seconds / budget:.3f})   "
              f"held-out accuracy {accuracy:.4f} (target >= {target})   {'met' if rows[-1]['met'] else 'NOT MET'}",
              flush=True)
    args.output.write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
