"""Optimizers against torch.optim, step by step; schedules; clipping; initializers."""
import math

import numpy as np
import pytest

from graphdef.format.initializers import INITIALIZERS, initialize
from graphdef.training.optimizers import DEFAULTS, Optimizer, clip_by_norm, scheduled_lr

torch = pytest.importorskip("torch")

TORCH = {
    "sgd": lambda p, s: torch.optim.SGD(p, lr=s["lr"], weight_decay=s["weight_decay"]),
    "momentum": lambda p, s: torch.optim.SGD(p, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"]),
    "nesterov": lambda p, s: torch.optim.SGD(p, lr=s["lr"], momentum=s["momentum"], nesterov=True,
                                             weight_decay=s["weight_decay"]),
    "adam": lambda p, s: torch.optim.Adam(p, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"],
                                          weight_decay=s["weight_decay"]),
    "adamw": lambda p, s: torch.optim.AdamW(p, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"],
                                            weight_decay=s["weight_decay"]),
}


def test_every_optimizer_has_a_torch_twin():
    assert set(DEFAULTS) == set(TORCH)


@pytest.mark.parametrize("name", sorted(DEFAULTS))
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_optimizer_matches_torch_over_several_steps(name, weight_decay):
    rng = np.random.default_rng(0)
    ours = Optimizer(name, lr=0.05, weight_decay=weight_decay)
    params = {"w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    torch_opt = TORCH[name](list(theirs.values()), ours.settings)
    for _ in range(5):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        ours.step(params, grads, ours.lr)
        for k, t in theirs.items():
            t.grad = torch.tensor(grads[k])
        torch_opt.step()
    for k in params:
        np.testing.assert_allclose(params[k], theirs[k].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_schedules():
    assert [scheduled_lr(1.0, e, 30, {"name": "step", "step_size": 10, "gamma": 0.5}) for e in (0, 9, 10, 25)] == \
        [1.0, 1.0, 0.5, 0.25]
    cosine = [scheduled_lr(1.0, e, 10, {"name": "cosine", "min_lr": 0.1}) for e in range(10)]
    assert cosine[0] == 1.0 and all(a > b for a, b in zip(cosine, cosine[1:])) and cosine[-1] > 0.1
    assert cosine[5] == pytest.approx(0.55)
    assert [scheduled_lr(1.0, e, 10, {"name": "constant", "warmup_epochs": 3}) for e in range(5)] == \
        [0.25, 0.5, 0.75, 1.0, 1.0]


def test_clip_by_global_norm():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0, 4.0]])}
    clipped = clip_by_norm(grads, 1.0)
    assert math.sqrt(sum(float((g ** 2).sum()) for g in clipped.values())) == pytest.approx(1.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    assert clip_by_norm(grads, 10.0) is grads


@pytest.mark.parametrize("name", sorted(INITIALIZERS))
def test_initializers_are_seeded_and_shaped(name):
    a = initialize(name, (64, 32), np.random.default_rng(3))
    b = initialize(name, (64, 32), np.random.default_rng(3))
    assert a.shape == (64, 32) and np.array_equal(a, b)


def test_initializer_scales():
    rng = np.random.default_rng(0)
    assert initialize("he_normal", (400, 300), rng).std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert np.abs(initialize("glorot_uniform", (400, 300), rng)).max() <= math.sqrt(6 / 700)
    assert initialize({"type": "normal", "mean": 2, "std": 0.5}, (1000,), rng).mean() == pytest.approx(2, abs=0.05)
