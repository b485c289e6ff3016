"""Repetition, attribute expressions and the standard library's layers: unrolled as documented, and
equal to PyTorch's modules (values and parameter gradients), per sample and on a batch."""
import numpy as np
import pytest

import graphdef
from batch_cases import check_batch_equivalence, close
from graphdef.format.expressions import ExpressionError, evaluate, substitute

torch = pytest.importorskip("torch")


def model(nodes: str, inputs: str, outputs: str, extra: str = "") -> graphdef.Model:
    return graphdef.loads(f"graphdef: 1\nname: m\ninputs: {{{inputs}}}\n{extra}nodes:\n{nodes}\noutputs: [{outputs}]\n")


# -- repeat ------------------------------------------------------------------------------------

def test_repeat_unrolls_steps_with_their_own_parameters_and_step_expressions():
    m = model("  h: {op: repeat, function: dense, times: 3, inputs: [x], in: '[2, 4, 5][step]',"
              " out: '[2, 4, 5, 3][step + 1]', activation: \"'none' if step == times - 1 else 'tanh'\"}",
              "x: {shape: [2]}", "h")
    assert sorted(m.parameters) == [f"h{i}/{p}" for i in (1, 2, 3) for p in "Wb"]
    assert [m.parameters[f"h{i}/W"].shape for i in (1, 2, 3)] == [(2, 4), (4, 5), (5, 3)]
    ops = {s.name: s.op.name for s in m.steps}
    assert ops["h1"] == ops["h2"] == "tanh" and ops["h"] == "identity"  # the last step is the node itself
    x = np.array([0.3, -0.2])
    h = x
    for i, activation in ((1, np.tanh), (2, np.tanh), (3, lambda v: v)):
        h = activation(h @ m.parameters[f"h{i}/W"] + m.parameters[f"h{i}/b"])
    close(m.forward({"x": x})["h"], h, "three dense layers")


def test_repeat_shared_parameters_and_sequences():
    m = model("  h: {op: repeat, function: gru_cell, times: 4, inputs: [h0], over: [xs], shared: true, input: 3,"
              " hidden: 2}", "xs: {shape: [4, 3]}, h0: {shape: [2]}", "h")
    assert sorted(m.parameters) == ["h1/U", "h1/W", "h1/b", "h1/c"]
    assert {s.name for s in m.steps if s.op.name == "select"} == {f"h{i}/over0" for i in range(1, 5)}
    grads = m.gradients({"xs": np.ones((4, 3)), "h0": np.zeros(2)}, of="h")
    assert all(np.abs(g).sum() > 0 for g in grads.values())


@pytest.mark.parametrize("batched", [False, True])
def test_repeat_given_values_and_the_sequence_of_outputs(batched):
    """`given` hands every step the same weights (gradients add up over the steps); `sequence` stacks each step's
    first output: a GRU written with gru_step equals the cell unrolled by hand, in values and gradients."""
    m = model("  h: {op: repeat, function: gru_step, times: 5, inputs: [h0], over: [xs], given: [W, U, b, c],"
              " sequence: true}", "xs: {shape: [5, 3]}, h0: {shape: [2]}, W: {shape: [3, 6]}, U: {shape: [2, 6]},"
              " b: {shape: [6]}, c: {shape: [6]}", "h/sequence")
    rng = np.random.default_rng(3)
    feeds = {"xs": rng.normal(size=(5, 3)), "h0": rng.normal(size=2), "W": rng.normal(size=(3, 6)),
             "U": rng.normal(size=(2, 6)), "b": rng.normal(size=6), "c": rng.normal(size=6)}
    if batched:
        feeds = {k: np.stack([v, v * 0.5]) if k in ("xs", "h0") else v for k, v in feeds.items()}
    torch_feeds = {k: torch.tensor(v, requires_grad=True) for k, v in feeds.items()}
    h, hs = torch_feeds["h0"], []
    for t in range(5):
        x = torch_feeds["xs"][..., t, :]
        r, z, n = (x @ torch_feeds["W"] + torch_feeds["b"]).chunk(3, -1)
        rh, zh, nh = (h @ torch_feeds["U"] + torch_feeds["c"]).chunk(3, -1)
        r, z = torch.sigmoid(r + rh), torch.sigmoid(z + zh)
        n = torch.tanh(n + r * nh)
        h = (1 - z) * n + z * h
        hs.append(h)
    expected = torch.stack(hs, -2)
    close(m.forward(feeds)["h/sequence"], expected.detach().numpy(), "the stacked states")
    expected.sum().backward()
    grads = m.gradients(feeds, of="h/sequence", wrt=["W", "U", "b", "c", "h0"])
    for name, g in grads.items():
        close(g, torch_feeds[name].grad.numpy(), f"∂/∂{name}")


def test_mlp_is_yaml_built_with_repeat():
    from graphdef.format.library import standard_library
    mlp = standard_library()["mlp"]
    assert mlp.body["nodes"]["layer"]["op"] == "repeat"
    m = model("  y: {op: mlp, inputs: [x], sizes: [3, 5, 4, 2]}", "x: {shape: [3]}", "y")
    assert sorted(m.parameters) == sorted(f"y/layer{i}/{p}" for i in (1, 2, 3) for p in "Wb")


@pytest.mark.parametrize("node, message", [
    ("{op: repeat, function: nothing, times: 2, inputs: [x]}", "repeat: unknown function 'nothing'"),
    ("{op: repeat, function: dense, times: 0, inputs: [x], in: 2, out: 2}", "repeat needs times: a count of at "
                                                                            "least 1, got 0"),
    ("{op: repeat, function: dense, times: 'len(q)', inputs: [x], in: 2, out: 2}", "unknown name 'q'"),
    ("{op: repeat, function: dense, times: 2, inputs: [x, x], in: 2, out: 2}", "takes 1 inputs"),
    ("{op: repeat, function: dense, times: 2, inputs: [x], given: [x], in: 2, out: 2}", "and 1 fixed (given)"),
    ("{op: repeat, function: gru_cell, times: 2, inputs: [x], given: [nowhere], input: 2, hidden: 2}", "nowhere"),
    ("{op: repeat, function: dense, times: 2, inputs: [x], in: 2, out: '[2][step]'}", "list index out of range"),
])
def test_repeat_errors_name_the_node(node, message):
    with pytest.raises(graphdef.GraphDefError) as e:
        graphdef.loads(f"graphdef: 1\nname: m\ninputs: {{x: {{shape: [2]}}}}\nnodes:\n  h: {node}\noutputs: [h]\n",
                       file="m.yaml")
    assert message in str(e.value) and "m.yaml:5:" in str(e.value), str(e.value)


def test_attribute_expressions_are_a_small_safe_language():
    scope = {"sizes": [4, 8, 2], "step": 1, "heads": 4, "dim": 32}
    assert evaluate("sizes[step + 1]", scope) == 2
    assert evaluate("dim // heads * 3", scope) == 24
    assert evaluate("'relu' if step < len(sizes) - 1 else 'none'", scope) == "relu"
    assert evaluate("[0.0] * heads", scope) == [0.0] * 4
    assert evaluate("max(sizes) - min(sizes[1:])", scope) == 6
    assert substitute("relu", scope) == "relu" and substitute(["dim", "2 * dim", "tanh"], scope) == [32, 64, "tanh"]
    for bad in ("__import__('os')", "sizes.pop()", "(1).__class__", "2 ** 4000", "[0] * 10 ** 7",
                "open('f')", "lambda: 1", "[x for x in sizes]", "sizes * sizes"):
        with pytest.raises(ExpressionError):
            evaluate(bad, scope)


# -- layers against PyTorch ------------------------------------------------------------------------

def torch_state(m, names: dict) -> dict:
    """Our parameters as torch tensors under their PyTorch names (transposed where torch stores [out, in])."""
    return {theirs: torch.tensor(m.parameters[ours].T if transpose else m.parameters[ours])
            for theirs, (ours, transpose) in names.items()}


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_layers_equal_pytorch_values_and_gradients(cell):
    m = model(f"  h: {{op: {cell}, inputs: [xs], input: 3, hidden: 4, steps: 6}}\n"
              "  s: {op: sum, inputs: [h]}", "xs: {shape: [6, 3]}", "s")
    xs = np.random.default_rng(0).normal(size=(5, 6, 3))
    module = (torch.nn.GRU if cell == "gru" else torch.nn.LSTM)(3, 4, batch_first=True).double()
    names = {"weight_ih_l0": ("h/h1/W", True), "weight_hh_l0": ("h/h1/U", True), "bias_ih_l0": ("h/h1/b", False)}
    if cell == "gru":
        names["bias_hh_l0"] = ("h/h1/c", False)
    module.load_state_dict({**module.state_dict(), **torch_state(m, names)})
    if cell == "lstm":
        module.bias_hh_l0.data.zero_()
    _, state = module(torch.tensor(xs))
    last = state if cell == "gru" else state[0]
    last.sum().backward()
    values, grads = m.value_and_gradients({"xs": xs}, of="s")
    close(values["h"], last[0].detach().numpy(), "last state", rtol=1e-9, atol=1e-12)
    for theirs, (ours, transpose) in names.items():
        expected = getattr(module, theirs).grad.numpy()
        close(grads[ours].T if transpose else grads[ours], expected, f"gradient of {ours}", rtol=1e-8, atol=1e-11)


def test_transformer_encoder_layer_equals_pytorch():
    dim, heads, hidden = 8, 2, 16
    m = model(f"  y: {{op: transformer_encoder_layer, inputs: [x], dim: {dim}, heads: {heads}, hidden: {hidden}}}\n"
              "  s: {op: sum, inputs: [y]}", f"x: {{shape: [5, {dim}]}}", "s", extra="training: {seed: 1}\n")
    layer = torch.nn.TransformerEncoderLayer(dim, heads, hidden, dropout=0.0, activation="gelu", norm_first=True,
                                             batch_first=True).double()
    p = m.parameters
    mapping = {"self_attn.in_proj_weight": ("y/attention/Wqkv", True), "self_attn.in_proj_bias": ("y/attention/bqkv", False),
               "self_attn.out_proj.weight": ("y/attention/Wo", True), "self_attn.out_proj.bias": ("y/attention/bo", False),
               "linear1.weight": ("y/up/W", True), "linear1.bias": ("y/up/b", False),
               "linear2.weight": ("y/down/W", True), "linear2.bias": ("y/down/b", False),
               "norm1.weight": ("y/n1/gamma", False), "norm1.bias": ("y/n1/beta", False),
               "norm2.weight": ("y/n2/gamma", False), "norm2.bias": ("y/n2/beta", False)}
    for name in p:
        p[name][...] = np.random.default_rng(len(name)).normal(0, 0.5, p[name].shape)
    layer.load_state_dict(torch_state(m, mapping))
    x = np.random.default_rng(2).normal(size=(3, 5, dim))
    expected = layer(torch.tensor(x))
    expected.sum().backward()
    values, grads = m.value_and_gradients({"x": x}, of="s")
    close(values["y"], expected.detach().numpy(), "encoded sequence", rtol=1e-9, atol=1e-11)
    for theirs, (ours, transpose) in mapping.items():
        got = grads[ours].T if transpose else grads[ours]
        close(got, dict(layer.named_parameters())[theirs].grad.numpy(), f"gradient of {ours}", rtol=1e-7,
              atol=1e-10)


def test_conv2d_layer_and_embedding_equal_pytorch():
    m = model("  c: {op: conv2d_layer, inputs: [x], in_channels: 2, out_channels: 3, kernel_size: 3, padding: same,"
              " activation: relu}\n  e: {op: embedding, inputs: [ids], vocabulary: 7, dim: 4}",
              "x: {shape: [2, 5, 5]}, ids: {shape: [3], dtype: int64}", "c, e")
    rng = np.random.default_rng(3)
    x, ids = rng.normal(size=(4, 2, 5, 5)), rng.integers(7, size=(4, 3))
    values = m.forward({"x": x, "ids": ids})
    conv = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(m.parameters["c/W"]),
                                      torch.tensor(m.parameters["c/b"].reshape(-1)), padding="same").relu()
    close(values["c"], conv.numpy(), "conv2d layer")
    close(values["e"], torch.nn.functional.embedding(torch.tensor(ids), torch.tensor(m.parameters["e/E"])).numpy(),
          "embedding")


def test_layers_on_a_batch_are_the_layers_per_sample():
    m = model("  a: {op: multi_head_attention, inputs: [x], dim: 4, heads: 2}\n"
              "  g: {op: lstm, inputs: [x], input: 4, hidden: 3, steps: 5}\n"
              "  n: {op: batch_norm_layer, inputs: [x], channels: 5}\n"
              "  s1: {op: sum, inputs: [a]}\n  s2: {op: sum, inputs: [g]}\n  s3: {op: sum, inputs: [n]}\n"
              "  t: {op: add, inputs: [s1, s2]}\n  u: {op: add, inputs: [t, s3]}",
              "x: {shape: [5, 4]}", "u")
    check_batch_equivalence(m, {"x": np.random.default_rng(4).normal(size=(3, 5, 4))}, {"x"}, of="u")


@pytest.mark.parametrize("where, expression", [("out", "n // 0"), ("out", "max(n)"), ("out", "n.real"),
                                               ("shape", "[n][1]"), ("constant", "[0.0] * max(n)")])
def test_a_bad_expression_in_a_function_body_is_an_error_at_its_line(where, expression):
    out = f'"{expression}"' if where == "out" else "3"
    shape = f'[4, "{expression}"]' if where == "shape" else "[4, 3]"
    constant = f'"{expression}"' if where == "constant" else "1.0"
    text = f"""graphdef: 1
name: e
inputs: {{x: {{shape: [4]}}}}
functions:
  f:
    attributes: {{n: {{type: int}}}}
    inputs: [v]
    parameters: {{V: {{shape: {shape}, init: zeros}}}}
    constants: {{k: {constant}}}
    nodes:
      y: {{op: dense, inputs: [v], in: 4, out: {out}}}
    outputs: [y]
nodes:
  h: {{op: f, inputs: [x], n: 3}}
outputs: [h]
"""
    with pytest.raises(graphdef.GraphDefError) as e:
        graphdef.loads(text, file="e.yaml")
    message = str(e.value)
    assert "cannot compute" in message and message.startswith("e.yaml:") and "called as 'h'" in message, message


def test_a_repeat_reads_every_item_of_its_sequences():
    with pytest.raises(graphdef.GraphDefError, match=r"a sequence of 8 items \(axis 0\) is read in 4 steps.*"
                                                     r"called as 'h' at m.yaml:5:3"):
        graphdef.loads("graphdef: 1\nname: m\ninputs: {xs: {shape: [8, 3]}}\nnodes:\n"
                       "  h: {op: gru, inputs: [xs], input: 3, hidden: 4, steps: 4}\noutputs: [h]\n", file="m.yaml")
    with pytest.raises(graphdef.GraphDefError, match=r"takes 2 inputs \(h, x\), given 1 carried \(inputs\), 0 sequences"):
        graphdef.loads("graphdef: 1\nname: m\ninputs: {xs: {shape: [8, 3]}}\nnodes:\n"
                       "  h: {op: repeat, function: gru_cell, times: 8, inputs: [xs], input: 3, hidden: 4}\n"
                       "outputs: [h]\n")


def test_several_outputs_are_named_not_chosen_by_an_attribute():
    m = model("  p: {op: split, inputs: [x], sections: 3}\n  c: {op: lstm_cell, inputs: [p, p/1, p/2], input: 2,"
              " hidden: 2}", "x: {shape: [6]}", "p/2, c, c/c_next")
    values = m.forward({"x": np.arange(6.0)})
    close(values["p/2"], [4.0, 5.0], "third part")
    assert values["c/c_next"].shape == (2,)
    with pytest.raises(graphdef.GraphDefError, match="op 'split' has no attribute 'output'"):
        model("  p: {op: split, inputs: [x], sections: 3, output: 2}", "x: {shape: [6]}", "p")


def test_a_token_id_beyond_the_vocabulary_is_named():
    m = model("  e: {op: embedding, inputs: [ids], vocabulary: 5, dim: 2}", "ids: {shape: [3], dtype: int64}", "e")
    with pytest.raises(graphdef.GraphDefError, match=r"index 7 is outside axis 0 of size 5 \(for an embedding: a "
                                                     r"token id beyond its vocabulary\)"):
        m.forward({"ids": [1, 7, 2]})
    close(m.forward({"ids": [-1, 0, 4]})["e"][0], m.parameters["e/E"][4], "-1 counts from the end, as in ONNX")


def test_shared_steps_share_the_parameters_of_nested_calls_and_integers_pass_through_functions():
    m = model("  h: {op: repeat, function: cell, times: 3, inputs: [x], shared: true}", "x: {shape: [4]}", "h",
              extra="functions:\n  cell:\n    inputs: [v]\n    nodes: {d: {op: dense, inputs: [v], in: 4, out: 4,"
                    " activation: tanh}}\n    outputs: [d]\n")
    assert sorted(m.parameters) == ["h1/d/W", "h1/d/b"]
    m = model("  a: {op: f, inputs: [t]}\n  e: {op: embedding, inputs: [a/v], vocabulary: 5, dim: 2}",
              "t: {shape: [3], dtype: int64}", "e",
              extra="functions:\n  f:\n    inputs: [v]\n    nodes: {r: {op: reshape, inputs: [v], shape: [3, 1]}}\n"
                    "    outputs: [r, v]\n")
    assert m.graph.vertices["a/v"].dtype == "int64"
