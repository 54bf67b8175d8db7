"""baselines.ogm_ge: coefficients by hand for three modalities, gradients scaled by them, the
Gaussian enhancement, the step window, the error without unimodal heads, and its state."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from mmcore.components import Balancer
from mmcore.errors import MMCoreError
from mmcore.types import StepStats
from mmcore_baselines import OGMGE, coefficients

NAMES = ["a", "b", "c"]
# mean true-class probabilities of the unimodal heads: a dominates, b a little, c lags
CONF = torch.tensor([0.5, 0.4, 0.1])
# ratio_m = conf_m / mean of the others' conf:
#   a: 0.5 / ((0.4 + 0.1)/2) = 2      b: 0.4 / ((0.5 + 0.1)/2) = 4/3      c: 0.1 / ((0.5 + 0.4)/2) = 2/9
RATIO = [2.0, 4.0 / 3.0, 2.0 / 9.0]
# shifted, α = 0.5: a: 1 − tanh(0.5·1) = 0.5378828427; b: 1 − tanh(0.5·1/3) = 0.8348595871; c: ratio < 1 → 1
K_SHIFTED = [0.5378828427399902, 0.8348595870753707, 1.0]
# reference (paper Eq. 10), α = 0.5: a: 1 − tanh(1) = 0.2384058440; b: 1 − tanh(2/3) = 0.4172170547; c: 1
K_REFERENCE = [0.23840584404423515, 0.4172170546520898, 1.0]


def stats(step: int = 0, conf: torch.Tensor | None = CONF) -> StepStats:
    return StepStats(step=step, losses={"unimodal": torch.ones(3)}, present_counts=torch.tensor([4, 4, 4]), unimodal_confidence=conf)


class Model(nn.Module):
    """What the engine hands over: encoders keyed by modality, and other parts that must not be touched."""

    def __init__(self, names: list[str] = NAMES) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({n: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)) for n in names})
        self.fusion = nn.Linear(2 * len(names), 2)


def grads_of(model: Model, seed: int = 0) -> dict[str, torch.Tensor]:
    """Give every parameter a known random gradient; returns copies of them."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_hand_computed_coefficients_for_three_modalities() -> None:
    ratio, k = coefficients(CONF, alpha=0.5)
    assert torch.allclose(ratio, torch.tensor(RATIO), atol=1e-6)
    assert torch.allclose(k, torch.tensor(K_SHIFTED), atol=1e-6)
    assert k[2].item() == 1.0  # the lagging modality, ratio < 1, is left alone
    assert math.isclose(K_SHIFTED[0], 1 - math.tanh(0.5), rel_tol=1e-12)
    _, k_ref = coefficients(CONF, alpha=0.5, formula="reference")
    assert torch.allclose(k_ref, torch.tensor(K_REFERENCE), atol=1e-6)


def test_two_modalities_reduce_to_the_reference_ratio_and_one_modality_to_no_change() -> None:
    ratio, k = coefficients(torch.tensor([0.6, 0.3]), alpha=0.1, formula="reference")
    assert torch.allclose(ratio, torch.tensor([2.0, 0.5]))  # score_v / score_a and its inverse
    assert torch.allclose(k, torch.tensor([1 - math.tanh(0.2), 1.0]))
    ratio, k = coefficients(torch.tensor([0.7]), alpha=0.1)
    assert torch.equal(k, torch.ones(1)) and torch.equal(ratio, torch.ones(1))


def test_others_at_zero_confidence_give_finite_coefficients() -> None:
    ratio, k = coefficients(torch.tensor([0.3, 0.0, 0.0]), alpha=0.1)
    assert torch.isfinite(k).all() and 0.0 <= k[0].item() < 1e-6 and torch.equal(k[1:], torch.ones(2))
    _, k = coefficients(torch.zeros(3), alpha=0.1)
    assert torch.equal(k, torch.ones(3))


def test_without_ge_encoder_gradients_are_scaled_by_k_and_the_rest_is_untouched() -> None:
    model = Model()
    before = grads_of(model)
    bal = OGMGE(NAMES, alpha=0.5, ge=False)
    bal.modulate_gradients(model, stats())
    for name, p in model.named_parameters():
        if name.startswith("encoders."):
            k = K_SHIFTED[NAMES.index(name.split(".")[1])]
            assert torch.allclose(p.grad, before[name] * k, atol=1e-6), name
        else:
            assert torch.equal(p.grad, before[name]), name
    assert torch.allclose(bal.log_values()["ogm_coef"], torch.tensor(K_SHIFTED), atol=1e-6)
    assert torch.allclose(bal.log_values()["ogm_ratio"], torch.tensor(RATIO), atol=1e-6)


def test_ge_adds_noise_with_the_gradient_std_from_the_global_rng() -> None:
    model = Model()
    before = grads_of(model)
    bal = OGMGE(NAMES, alpha=0.5)
    torch.manual_seed(3)
    bal.modulate_gradients(model, stats())
    # the same draws, in modality order then parameter order: k·g + N(0, (std(g) + 1e-8)²)
    torch.manual_seed(3)
    for i, name in enumerate(NAMES):
        for pname, p in model.encoders[name].named_parameters():
            g = before[f"encoders.{name}.{pname}"]
            expected = g * K_SHIFTED[i] + torch.randn_like(g) * (g.std() + 1e-8)
            assert torch.allclose(p.grad, expected, atol=1e-6), (name, pname)


def test_ge_noise_has_the_std_of_the_unscaled_gradient() -> None:
    enc = nn.ModuleDict({n: nn.Linear(100, 100, bias=False) for n in NAMES})
    model = nn.Module()
    model.encoders = enc
    for i, n in enumerate(NAMES):
        enc[n].weight.grad = torch.randn(100, 100, generator=torch.Generator().manual_seed(i)) * (i + 1)
    before = [enc[n].weight.grad.clone() for n in NAMES]
    OGMGE(NAMES, alpha=0.5).modulate_gradients(model, stats())
    for i, n in enumerate(NAMES):
        noise = enc[n].weight.grad - K_SHIFTED[i] * before[i]
        assert abs(noise.mean().item()) < 0.05 * (i + 1)
        assert noise.std().item() == pytest.approx(before[i].std().item(), rel=0.03)


def test_modulation_happens_only_inside_the_step_window() -> None:
    bal = OGMGE(NAMES, alpha=0.5, ge=False, start_step=2, end_step=3)
    for step, inside in [(0, False), (1, False), (2, True), (3, True), (4, False)]:
        model = Model()
        before = grads_of(model, seed=step)
        bal.modulate_gradients(model, stats(step))
        g = model.encoders["a"][0].weight.grad
        if inside:
            assert torch.allclose(g, before["encoders.a.0.weight"] * K_SHIFTED[0], atol=1e-6)
            assert torch.allclose(bal.coef, torch.tensor(K_SHIFTED), atol=1e-6)
        else:
            assert torch.equal(g, before["encoders.a.0.weight"])
            assert torch.equal(bal.coef, torch.ones(3))  # logged as 1: nothing applied
        assert torch.allclose(bal.ratio, torch.tensor(RATIO), atol=1e-6)  # the ratio is always observed


def test_no_unimodal_heads_is_a_clear_error_at_the_first_step() -> None:
    with pytest.raises(MMCoreError, match=r"baselines.ogm_ge needs .* set 'model.unimodal_heads: true'"):
        OGMGE(NAMES).modulate_gradients(Model(), stats(conf=None))


def test_weights_are_ones_for_the_unimodal_group_and_options_are_checked() -> None:
    bal = OGMGE(NAMES)
    assert isinstance(bal, Balancer) and bal.target == "unimodal"
    assert torch.equal(bal.weights(), torch.ones(3))
    with pytest.raises(MMCoreError, match="end_step .* must be >= start_step"):
        OGMGE(NAMES, start_step=5, end_step=2)
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=r"alpha: expected float >= 0.0 \(finite\), got float -0.1"):
        get_registry().get("balancer", "baselines.ogm_ge").build({"modalities": NAMES}, {"alpha": -0.1})


def test_state_round_trip_through_json() -> None:
    bal = OGMGE(NAMES, alpha=0.5, ge=False)
    bal.modulate_gradients(Model(), stats())
    fresh = OGMGE(NAMES, alpha=0.5, ge=False)
    fresh.load_state_dict(json.loads(json.dumps(bal.state_dict())))
    assert torch.equal(fresh.coef, bal.coef) and torch.equal(fresh.ratio, bal.ratio)
    with pytest.raises(MMCoreError, match=r"saved for modalities \['a', 'b', 'c'\], this run has \['x', 'y', 'z'\]"):
        OGMGE(["x", "y", "z"]).load_state_dict(bal.state_dict())
