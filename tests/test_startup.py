"""Start-up imports only what the command needs: `import graphdef`, `graphdef --version` and `graphdef validate`
never import networkx (the graph's NetworkX view is built on demand), the training loop's progress bar,
drawing, plotting or ONNX. Checked on the modules imported (python -X importtime), never on timings."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("networkx", "tqdm", "graphviz", "matplotlib", "onnx", "onnxruntime", "torch")
COMMANDS = {
    "import graphdef": ["-c", "import graphdef"],
    "--version": ["-m", "graphdef", "--version"],
    "validate": ["-m", "graphdef", "validate", "models/lecture.yaml"],
}


def imported(arguments: list) -> set:
    """The top-level packages a fresh Python process imports to run `arguments`."""
    done = subprocess.run([sys.executable, "-X", "importtime", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the header


CASES = [pytest.param(arguments, heavy, id=f"{command}-{heavy}")
         for command, arguments in COMMANDS.items() for heavy in HEAVY]


@pytest.fixture(scope="module")
def modules():
    return {tuple(arguments): imported(arguments) for arguments in COMMANDS.values()}


@pytest.mark.parametrize("arguments, heavy", CASES)
def test_start_up_does_not_import(modules, arguments, heavy):
    assert heavy not in modules[tuple(arguments)]


def test_version_imports_none_of_the_engine(modules):
    """`graphdef --version` answers before any command's module is imported: not numpy, not the YAML reader."""
    assert {"numpy", "yaml", "jsonschema"}.isdisjoint(modules[tuple(COMMANDS["--version"])])


def test_the_networkx_view_is_built_on_demand():
    import networkx as nx

    import graphdef
    graph = graphdef.load(ROOT / "models" / "lecture.yaml").graph
    assert isinstance(graph.nx, nx.MultiDiGraph) and graph.nx is graph.nx
    assert sorted(graph.nx.edges(keys=True, data="arg")) == [
        ("a", "c", 0, 0), ("b", "c", 1, 1), ("b", "d", 0, 0), ("c", "e", 0, 0), ("d", "e", 1, 1), ("d[1]", "d", 1, 1)]
    assert dict(graph.nx.nodes(data="kind")) == {v.name: v.kind for v in graph.vertices.values()}
    assert nx.ancestors(graph, "e") == {"a", "b", "c", "d", "d[1]"}  # networkx's functions take a Graph too
    assert graph.predecessors("e") == ["c", "d"] and graph.successors("b") == ["c", "d"]
