"""baselines.inforeg: the window, the coefficients and the proximal gradient by hand, its state
through JSON (epoch-start parameters included), exact resume inside a real tiny run, the contract."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.components import EpochView
from mmcore.errors import MMCoreError, RecipeError
from mmcore.plugins import load_plugins
from mmcore.testing import check_balancer, check_resume, run_contract, tiny_recipe
from mmcore.types import StepStats
from mmcore_baselines import InfoReg
from mmcore_baselines.inforeg import acquisition_rate, information_amount, regulation_coefficients

B = 0.95 * math.exp(math.tanh(1.6))  # β of the leader in the two-modality case below (gap 3.2 - 1.6)


def stats(conf: list[float], batch: int = 4, step: int = 0) -> StepStats:
    m = len(conf)
    return StepStats(step, {"unimodal": torch.ones(m)}, torch.full((m,), batch), torch.tensor(conf), batch_size=batch)


def model(wa: list[float], wb: list[float]) -> nn.Module:
    """Two one-layer encoders with known weights (no bias), and a fusion part that must not be touched."""
    net = nn.Module()
    net.encoders = nn.ModuleDict({"a": nn.Linear(2, 1, bias=False), "b": nn.Linear(2, 1, bias=False)})
    net.fusion = nn.Linear(2, 1)
    with torch.no_grad():
        net.encoders["a"].weight.copy_(torch.tensor([wa]))
        net.encoders["b"].weight.copy_(torch.tensor([wb]))
    return net


def set_grads(net: nn.Module, ga: list[float], gb: list[float]) -> None:
    net.encoders["a"].weight.grad = torch.tensor([ga])
    net.encoders["b"].weight.grad = torch.tensor([gb])
    net.fusion.weight.grad = torch.ones(1, 2)


def end_epoch(bal: InfoReg, epoch: int) -> None:
    bal.end_epoch(EpochView(epoch, 0, {}, lambda: None))


# ------------------------------------------------------------------------------------ the rule


def test_acquisition_rate_by_hand() -> None:
    assert torch.equal(acquisition_rate(torch.zeros(0, 2), 10), torch.ones(2))  # before any epoch: in the window
    # window 3, padded with three zeros: a = (0,0,0,2,4): (2 - 2/3) / 2; b = (0,0,0,4,4): (8/3 - 4/3) / (8/3)
    rate = acquisition_rate(torch.tensor([[2.0, 4.0], [4.0, 4.0]]), 3)
    assert torch.allclose(rate, torch.tensor([2 / 3, 0.5]))
    # a full window: (0,0,1,3,2), window 2: new (3+2)/2, old (1+3)/2 -> 0.2 = (2 - 1) / (3 + 2)
    assert torch.allclose(acquisition_rate(torch.tensor([[1.0], [3.0], [2.0]]), 2), torch.tensor([0.2]))
    # the reference's 10 zeros in front: a constant trace gives 1/n for n <= 10 epochs, then 0
    for n, expected in [(1, 1.0), (4, 0.25), (10, 0.1), (11, 0.0)]:
        assert math.isclose(float(acquisition_rate(torch.ones(n, 1), 10)), expected, abs_tol=1e-7), n
    assert torch.equal(acquisition_rate(torch.zeros(3, 1), 10), torch.zeros(1))  # no information at all: 0


def test_information_amount_counts_weight_tensors_only() -> None:
    grads = [torch.tensor([[1.0, 3.0]]), torch.tensor([5.0]), torch.tensor([[2.0], [2.0]])]
    assert math.isclose(float(information_amount(grads)), (1 + 9) / 2 + 4, rel_tol=1e-7)  # the bias is left out
    assert float(information_amount([])) == 0.0


def test_regulation_coefficients_by_hand() -> None:
    on = torch.tensor([True, True, True])
    # two modalities, batch sums as the reference's score_a/score_v: only the leader is regulated
    gap, coef = regulation_coefficients(torch.tensor([30.0, 20.0]), on[:2], 0.95)
    assert torch.allclose(gap, torch.tensor([10.0, -10.0]))
    assert torch.allclose(coef, torch.tensor([0.95 * math.exp(math.tanh(10.0)), 0.0]))
    # three modalities: each against the mean of the others; b and c trail (0.3 - 0.45)
    gap, coef = regulation_coefficients(torch.tensor([0.6, 0.3, 0.3]), on, 2.0)
    assert torch.allclose(gap, torch.tensor([0.3, -0.15, -0.15]))
    assert torch.allclose(coef, torch.tensor([2.0 * math.exp(math.tanh(0.3)), 0.0, 0.0]))
    _, coef = regulation_coefficients(torch.tensor([0.6, 0.3, 0.3]), torch.tensor([False, True, True]), 2.0)
    assert torch.equal(coef, torch.zeros(3))  # the leader outside its window is left alone
    _, coef = regulation_coefficients(torch.tensor([0.9]), on[:1], 0.95)
    assert torch.equal(coef, torch.zeros(1))  # one modality: nothing to compare


def test_proximal_gradient_and_trace_on_a_tiny_model() -> None:
    net = model([1.0, 2.0], [3.0, 4.0])
    bal = InfoReg(["a", "b"])
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4]))  # first step: θ is the epoch start, the term is 0
    assert torch.equal(net.encoders["a"].weight.grad, torch.tensor([[0.5, 0.5]]))
    assert math.isclose(float(bal.coef[0]), B, rel_tol=1e-6) and float(bal.coef[1]) == 0.0
    with torch.no_grad():  # what an optimiser step would do
        net.encoders["a"].weight.copy_(torch.tensor([[2.0, 0.0]]))
        net.encoders["b"].weight.copy_(torch.tensor([[0.0, 0.0]]))
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4], step=1))  # scores 3.2 and 1.6: a leads by 1.6
    ga = torch.tensor([[0.5 + B * (2 - 1), 0.5 + B * (0 - 2)]])
    assert torch.allclose(net.encoders["a"].weight.grad, ga)
    assert torch.equal(net.encoders["b"].weight.grad, torch.tensor([[1.0, -1.0]]))  # trailing: untouched
    assert torch.equal(net.fusion.weight.grad, torch.ones(1, 2))  # not an encoder
    # the trace: mean(g²) of each step, after the proximal term
    expected = torch.tensor([0.25 + float(ga.square().mean()), 1.0 + 1.0])
    assert torch.allclose(bal.trace, expected)

    end_epoch(bal, 1)
    assert torch.allclose(bal.history, expected.unsqueeze(0)) and torch.equal(bal.trace, torch.zeros(2))
    assert bal.anchor is None and torch.allclose(bal.rate, torch.ones(2))  # one epoch: T1 / T1
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4], step=2))  # a new epoch starts from the current θ
    assert torch.equal(net.encoders["a"].weight.grad, torch.tensor([[0.5, 0.5]]))
    assert torch.equal(bal.anchor["a"][0], torch.tensor([[2.0, 0.0]]))


def test_outside_the_window_the_leader_is_not_regulated() -> None:
    bal = InfoReg(["a", "b"], window=2)
    bal.history = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])  # flat traces: rate 0 <= 0.05
    end_epoch(bal, 3)  # appends this epoch's (zero) trace: rate (0.5 - 1) / 0.5 = -1
    assert bool((bal.rate <= 0.05).all())
    net = model([1.0, 2.0], [3.0, 4.0])
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4]))
    with torch.no_grad():
        net.encoders["a"].weight.add_(1.0)
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4], step=1))
    assert torch.equal(net.encoders["a"].weight.grad, torch.tensor([[0.5, 0.5]])) and torch.equal(bal.coef, torch.zeros(2))


def test_mean_scores_and_the_errors() -> None:
    bal = InfoReg(["a", "b"], score="mean", beta=1.0)
    net = model([1.0, 2.0], [3.0, 4.0])
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4], batch=64))
    assert math.isclose(float(bal.coef[0]), math.exp(math.tanh(0.4)), rel_tol=1e-6)  # the batch size plays no part
    with pytest.raises(MMCoreError, match=r"baselines.inforeg needs .* set 'model.unimodal_heads: true'"):
        bal.modulate_gradients(net, StepStats(0, {}, torch.ones(2)))
    with pytest.raises(MMCoreError, match="threshold must be a finite number"):
        InfoReg(["a"], threshold=float("nan"))
    with pytest.raises(RecipeError, match="balancer: baselines.inforeg is defined for classification only"):
        from mmcore.recipe import load_recipe

        load_recipe(Path(__file__).resolve().parents[3] / "recipes" / "mosei_regression.yaml", ["balancer=baselines.inforeg"])


# ------------------------------------------------------------------------------------- state


def test_state_round_trip_through_json_mid_epoch() -> None:
    bal = InfoReg(["a", "b"])
    net = model([1.0, 2.0], [3.0, 4.0])
    set_grads(net, [0.5, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.8, 0.4]))
    end_epoch(bal, 1)
    set_grads(net, [0.25, 0.5], [1.0, -1.0])
    bal.modulate_gradients(net, stats([0.7, 0.4], step=1))  # anchor of epoch 2 taken, trace part-way
    with torch.no_grad():
        net.encoders["a"].weight.copy_(torch.tensor([[1.1, 2.3]]))
    text = json.dumps(bal.state_dict())
    fresh = InfoReg(["a", "b"])
    fresh.load_state_dict(json.loads(text))
    assert json.dumps(fresh.state_dict()) == text
    assert fresh.epochs == 1 and torch.equal(fresh.history, bal.history) and torch.equal(fresh.trace, bal.trace)
    assert torch.equal(fresh.rate, bal.rate) and torch.equal(fresh.anchor["a"][0], torch.tensor([[1.0, 2.0]]))
    grads = []
    for b in (bal, fresh):  # the same next step, exactly
        set_grads(net, [0.5, 0.5], [1.0, -1.0])
        b.modulate_gradients(net, stats([0.9, 0.1], step=2))
        grads.append(net.encoders["a"].weight.grad.clone())
    assert torch.equal(grads[0], grads[1]) and not torch.equal(grads[0], torch.tensor([[0.5, 0.5]]))
    assert json.dumps(fresh.state_dict()) == json.dumps(bal.state_dict())

    end_epoch(bal, 2)
    assert bal.state_dict()["anchor"] is None  # at an epoch's end there is nothing to store
    with pytest.raises(MMCoreError, match=r"saved for modalities \['a', 'b'\], this run has \['x', 'y'\]"):
        InfoReg(["x", "y"]).load_state_dict(json.loads(text))
    wrong = InfoReg(["a", "b"])
    wrong.load_state_dict(json.loads(text))
    other = nn.Module()
    other.encoders = nn.ModuleDict({"a": nn.Linear(3, 1, bias=False), "b": nn.Linear(2, 1, bias=False)})
    with pytest.raises(MMCoreError, match="epoch-start parameters of encoder 'a' .* do not match"):
        wrong.modulate_gradients(other, stats([0.5, 0.5]))


def test_contract() -> None:
    check_balancer(InfoReg)
    check_balancer(InfoReg, options={"score": "mean", "threshold": -1.0, "window": 2})
    run_contract(load_plugins().registry, "balancer", "baselines.inforeg")


# ------------------------------------------------------------------------------------ in the engine

NODES = {
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 300, "dim": 8},
    "dim": 8,
    "encoders": {"default": {"type": "mmcore.mlp", "layers": [16]}},
    "fusion": {"type": "mmcore.concat", "layers": [16]},
    "unimodal_heads": {"layers": [8]},
}


def test_resume_mid_epoch_equals_straight_run(tmp_path: Path) -> None:
    nodes = {**NODES, "imputer": {"type": "mmcore.zero"}, "balancer": {"type": "baselines.inforeg"}}
    r = tiny_recipe(tmp_path / "runs", "train.epochs=3", **nodes)
    check = check_resume(r, stop_after=6)  # mid-epoch 2 (4 steps an epoch)
    saved = check.stopped_state["balancer"]
    assert saved["anchor"] is not None and len(saved["history"]) == 1  # epoch 2's start travels in the checkpoint
    steps = [json.loads(line) for line in check.lines if "inforeg_coef.m0" in line]
    assert {"inforeg_rate.m2", "inforeg_trace.m1"} <= set(steps[0])
    assert any(s[f"inforeg_coef.m{i}"] > 0 for s in steps for i in range(3))  # the regulation really acted
