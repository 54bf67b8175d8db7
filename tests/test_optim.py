"""train.optimizer.implementation: foreach gives torch's per-tensor numbers exactly; fused trains too."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcore.engine.optim import build_optimizer

BASE = {"lr": 1e-2, "betas": [0.9, 0.999], "weight_decay": 0.01, "momentum": 0.9}


def _train(optimizer_for, steps: int = 30) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = optimizer_for(model)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_foreach_is_bit_identical_to_the_per_tensor_loop(kind):
    cfg = {**BASE, "type": kind, "implementation": "foreach"}
    loop = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[kind]
    extra = {"momentum": 0.9} if kind == "sgd" else {"betas": (0.9, 0.999)}

    def reference(model):
        return loop(model.parameters(), lr=1e-2, weight_decay=0.01, foreach=False, **extra)

    assert build_optimizer(cfg, nn.Linear(2, 2)).defaults["foreach"] is True
    assert torch.equal(_train(lambda m: build_optimizer(cfg, m)), _train(reference))


def test_fused_follows_the_same_update_up_to_rounding():
    cfg = {**BASE, "type": "adam"}
    fused = _train(lambda m: build_optimizer({**cfg, "implementation": "fused"}, m), steps=3)
    loop = _train(lambda m: build_optimizer({**cfg, "implementation": "foreach"}, m), steps=3)
    assert build_optimizer({**cfg, "implementation": "fused"}, nn.Linear(2, 2)).defaults["fused"] is True
    assert torch.allclose(fused, loop, atol=1e-5)  # three steps: rounding has not yet compounded


def test_state_dict_moves_between_implementations():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    fused = build_optimizer({**BASE, "type": "adam", "implementation": "fused"}, model)
    model(torch.randn(3, 4)).sum().backward()
    fused.step()
    other = build_optimizer({**BASE, "type": "adam", "implementation": "foreach"}, model)
    other.load_state_dict(fused.state_dict())
    state = other.state_dict()["state"][0]
    assert float(state["step"]) == 1.0 and state["exp_avg"].shape == (2, 4)
