"""Drawing and explaining: the lecture's pictures and sums, read back from the text produced."""
import os
import re
import shutil

import graphviz
import pytest

import graphdef
from conftest import MODELS
from graphdef.tools.draw import to_dot
from graphdef.tools.explain import cost, diamond, diamond_table

LECTURE = MODELS / "lecture.yaml"
AT = ["--at", "a=3", "--at", "b=5"]
# On a developer's machine these may skip; CI (CI=true) installs Graphviz and matplotlib, so there they must run.
needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                               reason="Graphviz `dot` is not installed")
needs_matplotlib = pytest.mark.skipif(not graphdef.plot.available() and not os.environ.get("CI"),
                                      reason="matplotlib is not installed")


def dot_parts(source: str):
    """(vertex labels, edge labels) of DOT text; attributes in any order (vertices and edges carry ids too)."""
    vertices = dict(re.findall(r'^\t"?([\w\[\]/]+)"? \[label="([^"]*)"', source, flags=re.M))
    return vertices, [e for _, e in edge_labels(source)]


def edge_labels(source: str) -> list:
    """((tail, head), label) of each labelled edge of DOT text."""
    found = re.findall(r'^\t"?([\w\[\]/]+)"? -> "?([\w\[\]/]+)"? \[(.*)\]$', source, flags=re.M)
    labels = [((u, v), re.search(r'\blabel=("[^"]*"|[^ \]]+)', attrs)) for u, v, attrs in found]
    return [(uv, m.group(1).strip('"')) for uv, m in labels if m]


def test_draw_dot_shows_lecture_values_and_edge_derivatives(cli, tmp_path):
    code, _, err = cli("draw", LECTURE, *AT, "-o", tmp_path / "g.dot")
    assert code == 0, err
    vertices, edges = dot_parts((tmp_path / "g.dot").read_text())
    assert {v: vertices[v].split("\n")[-1] for v in "abcde"} == {
        "a": "= 3", "b": "= 5", "c": "= 8", "d": "= 6", "e": "= 48"}
    assert sorted(edges, key=float) == ["1", "1", "1", "1", "6", "8"]  # the literal's edge too


def test_draw_of_shows_gradients_on_vertices(cli, tmp_path):
    cli("draw", LECTURE, *AT, "--of", "e", "-o", tmp_path / "g.dot")
    vertices, _ = dot_parts((tmp_path / "g.dot").read_text())
    assert "∂e/∂a = 6" in vertices["a"] and "∂e/∂b = 14" in vertices["b"] and "∂e/∂c = 6" in vertices["c"]


@needs_dot
def test_draw_svg_carries_the_numbers(cli, tmp_path):
    code, _, _ = cli("draw", LECTURE, *AT, "--of", "e", "-o", tmp_path / "g.svg")
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", (tmp_path / "g.svg").read_text())
    assert code == 0
    for expected in ["= 3", "= 5", "= 8", "= 6", "= 48", "∂e/∂a = 6", "∂e/∂b = 14"]:
        assert expected in texts
    numbers = sorted(t for t in texts if re.fullmatch(r"-?[\d.]+", t))
    assert numbers == ["1", "1", "1", "1", "1", "6", "8"]  # the literal "1" of b + 1 and its edge too


@needs_dot
@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF")])
def test_draw_png_and_pdf(cli, tmp_path, suffix, magic):
    assert cli("draw", MODELS / "lecture_network.yaml", "-o", tmp_path / f"g.{suffix}")[0] == 0
    assert (tmp_path / f"g.{suffix}").read_bytes().startswith(magic)


def test_draw_without_dot_program_says_what_to_install(cli, tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot",))
    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    code, _, err = cli("draw", LECTURE, "-o", tmp_path / "g.svg")
    assert code == 1 and "apt-get install graphviz" in err and not (tmp_path / "g.svg").exists()
    assert cli("draw", LECTURE, "-o", tmp_path / "g.dot")[0] == 0


def test_draw_errors(cli, tmp_path):
    code, _, err = cli("draw", LECTURE, "-o", tmp_path / "g.gif")
    assert code == 1 and "cannot draw to 'g.gif'" in err
    code, _, err = cli("draw", LECTURE, "--of", "e", "-o", tmp_path / "g.dot")
    assert code == 1 and "needs input values" in err


def test_tensor_edges_carry_shapes():
    source = to_dot(graphdef.load(MODELS / "mlp.yaml"), {"x": [[1, 2], [3, 4], [5, 6]], "y": [[0, 1]] * 3}).source
    edges = dict(edge_labels(source))
    assert edges[("x", "a1")] == "[3, 2]" and edges[("W1", "a1")] == "[2, 2]"
    assert 'id="e:x:a1:0"' in source and 'id="v:x"' in source  # the web page finds vertices and edges by them


def test_large_graphs_collapse_groups_then_keep_what_is_near_the_outputs():
    nodes = "\n".join(f"  blk{i}/h: {{op: tanh, inputs: [{'x' if i == 0 else f'blk{i - 1}/h'}]}}" for i in range(30))
    model = graphdef.loads(f"graphdef: 1\nname: big\ninputs: {{x: {{shape: []}}}}\nnodes:\n{nodes}\n"
                           "  out: {op: neg, inputs: [blk29/h]}\noutputs: [out]\n")
    clustered = to_dot(model).source
    assert clustered.count("subgraph cluster_") == 30
    collapsed = to_dot(model, max_nodes=20).source
    assert "blk0/…" not in collapsed and "more vertices or groups" in collapsed and '"blk29/…"' in collapsed
    assert len(re.findall(r"^\t(?!graph)\S+ \[label=", collapsed, flags=re.M)) == 21  # 20 + the note


def test_grad_explain_paths_prints_the_lecture_sums(cli):
    code, out, _ = cli("grad", LECTURE, *AT, "--method", "paths", "--explain")
    assert code == 0
    assert "∂e/∂a = ∂ₗe/∂c·∂ₗc/∂a = 6×1 = 6" in out
    assert "∂e/∂b = ∂ₗe/∂c·∂ₗc/∂b + ∂ₗe/∂d·∂ₗd/∂b = 6×1 + 8×1 = 14" in out


def test_grad_explain_prints_the_backward_sweep(cli):
    code, out, _ = cli("grad", MODELS / "chain.yaml", "--at", "a=1", "--at", "b=2", "--explain")
    lines = out.splitlines()
    order = [line.split(" =")[0] for line in lines if line.startswith("∂f/∂")]
    assert code == 0 and order == ["∂f/∂f", "∂f/∂e", "∂f/∂d", "∂f/∂c", "∂f/∂b", "∂f/∂a"]
    assert any(line.startswith("∂f/∂d = ∂f/∂e·∂ₗe/∂d = -1×1.13534 = -1.13534") for line in lines)
    assert "backward sweep 5 multiplications" in out and "path sum 2 paths, 6 multiplications" in out


def test_explain_works_for_tensor_graphs(cli):
    code, out, _ = cli("grad", MODELS / "mlp.yaml", "--at", "x=[1, 2]", "--at", "y=[0, 1]", "--explain")
    assert code == 0 and "∂E/∂W1 = ∂E/∂a1·∂ₗa1/∂W1   shape [2, 2]" in out


def test_diamond_paths_double_while_the_sweep_grows_linearly(cli):
    table = diamond_table(20)
    assert [c.paths for _, c in table] == [2 ** d for d in range(1, 21)]
    assert [c.sweep_multiplications for _, c in table] == [4 * d for d in range(1, 21)]
    assert all(c.path_multiplications == 2 ** d * (2 * d - 1) for d, c in table)
    code, out, _ = cli("cost", "--diamond", "12")
    assert code == 0 and out.splitlines()[-1].split() == ["12", "4,096", "94,208", "48"]


def test_path_sum_agrees_with_reverse_on_the_diamond():
    model = graphdef.loads(diamond(8))
    assert model.gradients({"x0": 0.3}, method="paths")["x0"] == pytest.approx(
        float(model.gradients({"x0": 0.3})["x0"]), rel=1e-12)
    assert cost(model, "x8", ["x0"]).paths == 256


@needs_matplotlib
def test_training_writes_curves_and_plot_redraws_them(cli, tmp_path):
    run = tmp_path / "run"
    assert cli("train", MODELS / "mlp.yaml", "--epochs", "3", "-o", run)[0] == 0
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    (run / "curves.png").unlink()
    code, _, err = cli("plot", run)
    assert code == 0 and (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    code, _, err = cli("plot", tmp_path)
    assert code == 1 and "no metrics.csv" in err
