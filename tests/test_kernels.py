"""The fast kernels of the window ops and einsum against PyTorch, over random geometries the registry's examples
do not reach: convolutions as one product of kernels and im2col rows (leading axes folded into rows, groups
stacked, kernels per sample), pooling one kernel offset at a time, einsum as a stacked matrix product.
Values and every gradient are compared on inputs and gradients in any memory order: C order, channels
last, or channel-major (channels outermost, as a convolution hands its output to the next op).
"""
import numpy as np
import pytest

from graphdef.ops import OPS, ShapeError

torch = pytest.importorskip("torch")

CASES = 40


def reordered(x, channel_axis: int, rng):
    """The same values in memory of another order: as given, channels last, or channels outermost."""
    if x.ndim == 0:
        return x
    to = rng.choice([channel_axis, -1, 0])
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, channel_axis, to)), to, channel_axis)


def check(op_name: str, arrays: list, attrs: dict, rng, rtol=1e-10):
    """Forward and every gradient of op on these arrays, against the op's PyTorch expression and autograd."""
    op = OPS[op_name]
    attrs = op.bind(attrs)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    theirs = op.torch_function()(*tensors, **attrs)
    ours = op.forward(*arrays, **attrs)
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=rtol)
    g = reordered(rng.normal(size=ours.shape), attrs.get("batch_dims", 0), rng)
    (theirs * torch.tensor(g)).sum().backward()
    saved = op.saved(ours, *arrays, **attrs)
    for k, (rule, t) in enumerate(zip(op.backward, tensors)):
        np.testing.assert_allclose(rule(g, saved, *arrays, **attrs), t.grad.numpy(), rtol=rtol, atol=rtol,
                                   err_msg=f"{op_name} ∂/∂input {k} with {attrs}")


def _geometry(rng, n: int, transposed: bool = False) -> dict:
    kernel = [int(k) for k in rng.integers(1, 4, n)]
    stride = [int(s) for s in rng.integers(1, 3, n)]
    dilation = [int(d) for d in rng.integers(1, 3, n)]
    padding = [int(rng.integers(0, k * d)) if transposed else int(rng.integers(0, 3)) for k, d in zip(kernel, dilation)]
    if not transposed and rng.random() < 0.2 and stride == [1] * n:
        padding = "same"
    return {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": padding}


@pytest.mark.parametrize("seed", range(CASES))
@pytest.mark.parametrize("n", [1, 2])
def test_convolutions_match_pytorch(n, seed):
    rng = np.random.default_rng(seed)
    geometry, groups = _geometry(rng, n), int(rng.integers(1, 4))
    per_group_in, per_group_out = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    batch_dims = int(rng.integers(0, 3))
    spatial = [int(rng.integers(s * d * (k - 1) + 1, s * d * (k - 1) + 6))
               for k, s, d in zip(geometry["kernel"], geometry["stride"], geometry["dilation"])]
    x = rng.normal(size=[int(rng.integers(1, 4)) for _ in range(batch_dims)] + [groups * per_group_in] + spatial)
    x = reordered(x, batch_dims, rng)
    w = rng.normal(size=[groups * per_group_out, per_group_in] + geometry.pop("kernel"))
    check(f"conv{n}d", [x, w], {**geometry, "groups": groups, "batch_dims": batch_dims}, rng)


@pytest.mark.parametrize("seed", range(CASES // 2))
def test_conv_transpose2d_matches_pytorch(seed):
    rng = np.random.default_rng(seed)
    while True:  # a geometry whose output is not empty
        geometry, groups = _geometry(rng, 2, transposed=True), int(rng.integers(1, 3))
        extra = [int(rng.integers(0, s)) for s in geometry["stride"]]
        batch_dims = int(rng.integers(0, 2))
        x = rng.normal(size=[2] * batch_dims + [groups * int(rng.integers(1, 3))] + list(rng.integers(1, 5, 2)))
        w = rng.normal(size=[x.shape[batch_dims], int(rng.integers(1, 3))] + geometry.pop("kernel"))
        attrs = {**geometry, "output_padding": extra, "groups": groups, "batch_dims": batch_dims}
        try:
            OPS["conv_transpose2d"].shape(x.shape, w.shape, **OPS["conv_transpose2d"].bind(attrs))
            break
        except ShapeError:
            continue
    check("conv_transpose2d", [x, w], attrs, rng)


def test_a_batch_of_kernels_lines_up_with_the_batch_of_samples():
    """Kernels with a leading axis (a batched parameter) are products per sample, not rows of one product."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 4, 5, 6)), rng.normal(size=(3, 2, 2, 2, 3))
    op = OPS["conv2d"]
    attrs = op.bind({"groups": 2, "padding": 1})
    ours = op.forward(x, w, **attrs)
    for i in range(3):
        np.testing.assert_allclose(ours[i], op.forward(x[i], w[i], **attrs), rtol=1e-12)
    g = rng.normal(size=ours.shape)
    saved = op.saved(ours, x, w, **attrs)
    grads = [rule(g, saved, x, w, **attrs) for rule in op.backward]
    for i in range(3):
        alone = op.saved(ours[i], x[i], w[i], **attrs)
        for rule, grad in zip(op.backward, grads):
            np.testing.assert_allclose(grad[i], rule(g[i], alone, x[i], w[i], **attrs), rtol=1e-12)


def test_a_convolution_hands_on_its_output_channel_major():
    """The output is a view of the product (O, rows): channels outermost in memory, no copy back to NCHW."""
    rng = np.random.default_rng(0)
    y = OPS["conv2d"].forward(rng.normal(size=(4, 3, 6, 6)), rng.normal(size=(5, 3, 3, 3)), padding=1, stride=1,
                              dilation=1, groups=1, batch_dims=1)
    assert y.shape == (4, 5, 6, 6) and np.moveaxis(y, 1, 0).flags.c_contiguous


@pytest.mark.parametrize("seed", range(CASES))
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pooling_matches_pytorch(name, seed):
    rng = np.random.default_rng(seed)
    kernel = [int(k) for k in rng.integers(1, 4, 2)]
    attrs = {"kernel_size": kernel, "stride": [int(s) for s in rng.integers(1, 4, 2)],
             "padding": [int(rng.integers(0, k // 2 + 1)) for k in kernel], "ceil_mode": bool(rng.random() < 0.5),
             "batch_dims": int(rng.integers(0, 2))}
    if name == "max_pool2d":
        attrs["dilation"] = [int(d) for d in rng.integers(1, 3, 2)]
    else:
        attrs["count_include_pad"] = bool(rng.random() < 0.5)
    spans = [d * (k - 1) + 1 for k, d in zip(kernel, attrs.get("dilation", [1, 1]))]
    x = rng.normal(size=[2] * attrs["batch_dims"] + [int(rng.integers(1, 4))] + [int(rng.integers(s, s + 5))
                                                                                   for s in spans])
    if name == "max_pool2d" and rng.random() < 0.5:
        x = np.round(x)  # ties: the first largest takes the gradient, as in PyTorch
    x = reordered(x, attrs["batch_dims"], rng)
    check(name, [x], attrs, rng)


ROLES = ("stack", "rows", "cols", "inner", "x alone", "y alone")


@pytest.mark.parametrize("seed", range(CASES))
def test_einsum_matches_pytorch(seed):
    """Random two-operand equations: letters both operands and the output share (a stack), each operand's own
    kept letters, summed letters, letters only one operand has; shared ones sometimes broadcast (size 1)."""
    rng = np.random.default_rng(seed)
    letters = rng.permutation(list("abcdefgh"))[:int(rng.integers(1, 7))]
    roles = {c: ROLES[int(rng.integers(len(ROLES)))] for c in letters}
    x_letters = [c for c in letters if roles[c] in ("stack", "rows", "inner", "x alone")]
    y_letters = [c for c in letters if roles[c] in ("stack", "cols", "inner", "y alone")]
    out = [c for c in letters if roles[c] in ("stack", "rows", "cols")]
    x_terms, y_terms, out = (list(rng.permutation(t)) if t else [] for t in (x_letters, y_letters, out))
    sizes = {c: int(rng.integers(1, 4)) for c in letters}

    def shape(term):  # a shared letter is sometimes 1 in one operand: broadcast
        return [1 if roles[c] in ("stack", "inner") and rng.random() < 0.2 else sizes[c] for c in term]
    x, y = rng.normal(size=shape(x_terms)), rng.normal(size=shape(y_terms))
    equation = f"{''.join(x_terms)},{''.join(y_terms)}->{''.join(out)}"
    check("einsum", [reordered(x, 0, rng), reordered(y, 0, rng)], {"equation": equation}, rng)
