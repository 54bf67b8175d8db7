"""PMR and MMPareto: their rules by hand on tiny cases, and exact resume inside real (tiny) runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.components import EpochView, StepView
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.testing import check_resume, tiny_recipe
from mmcore.types import StepStats
from mmcore_baselines.agm import AGM, agm_coefficients, shapley_contributions
from mmcore_baselines.gblending import GBlending, blending_weights
from mmcore_baselines.mmpareto import MMPareto, pareto_weights
from mmcore_baselines.pmr import PMR, pmr_coefficients, prototypes

# ------------------------------------------------------------------------------------------ PMR


def test_pmr_coefficients_by_hand():
    seen = torch.tensor([True, True, True])
    # best 0.8: 0.8/0.8-1 = 0; 0.8/0.4-1 = 1; 0.8/0.5-1 = 0.6
    assert torch.allclose(pmr_coefficients(torch.tensor([0.8, 0.4, 0.5]), seen), torch.tensor([0.0, 1.0, 0.6]))
    # two modalities: the reference's beta/lambda, clip(rho - 1, 0, 1) for the weaker one only
    assert torch.allclose(pmr_coefficients(torch.tensor([0.6, 0.5]), seen[:2]), torch.tensor([0.0, 0.2]))
    assert torch.allclose(pmr_coefficients(torch.tensor([0.9, 0.1]), seen[:2]), torch.tensor([0.0, 1.0]))  # clipped
    # a modality absent from the batch neither counts as best nor gets a coefficient
    assert torch.allclose(pmr_coefficients(torch.tensor([0.9, 0.3, 0.6]), torch.tensor([False, True, True])), torch.tensor([0.0, 1.0, 0.0]))


def test_prototypes_are_class_means_of_present_rows():
    z = torch.tensor([[[1.0], [10.0]], [[3.0], [20.0]], [[5.0], [30.0]]])  # [N=3, M=2, d=1]
    target = torch.tensor([0, 0, 1])
    present = torch.tensor([[True, True], [True, False], [True, True]])
    proto, seen = prototypes(z, target, present, 2)
    assert torch.equal(proto.squeeze(-1), torch.tensor([[2.0, 5.0], [10.0, 30.0]]))  # m1 class 0: only row 0
    assert seen.all()


def test_pmr_loss_by_hand():
    bal = PMR(["a", "b"], alpha=0.5)
    bal.proto = torch.tensor([[[0.0], [2.0]], [[0.0], [2.0]]])  # [M, C, d]: classes at 0 and 2 for both
    bal.epochs = 1
    z = torch.tensor([[[0.0], [1.0]]])  # one sample of class 0: a is on its prototype, b halfway
    view = StepView(1, torch.zeros(1, 2), None, z, z, torch.tensor([0]), torch.ones(1, 2, dtype=torch.bool), lambda m: m)
    loss = bal.extra_loss(view)
    # a: logits (0, -2) -> p = 1/(1+e^-2); b: logits (-1, -1) -> p = 1/2
    pa, pb = 1 / (1 + math.exp(-2)), 0.5
    coef_b = pa / pb - 1  # 0.762, not clipped
    assert torch.allclose(bal.coef, torch.tensor([0.0, coef_b]), atol=1e-6)
    assert loss is not None and math.isclose(float(loss), 0.5 * coef_b * -math.log(pb), rel_tol=1e-5)


def test_pmr_is_off_before_prototypes_and_rejects_regression():
    bal = PMR(["a"])
    z = torch.zeros(2, 1, 3)
    view = StepView(0, torch.zeros(2, 2), None, z, z, torch.tensor([0, 1]), torch.ones(2, 1, dtype=torch.bool), lambda m: m)
    assert bal.extra_loss(view) is None
    with pytest.raises(MMCoreError, match="baselines.pmr is for classification"):
        bal.extra_loss(StepView(0, torch.zeros(2, 1), None, z, z, torch.zeros(2), view.present, lambda m: m))


# ------------------------------------------------------------------------------------- MMPareto


def test_pareto_weights_by_hand():
    cos, k = pareto_weights(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert float(cos) > 0 and float(k) == 0.5  # agreeing: equal weights
    cos, k = pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
    # conflict: gamma = (uu - mu) / (mm + uu - 2 mu) = (2 + 1) / (1 + 2 + 2) = 0.6
    assert math.isclose(float(cos), -1 / math.sqrt(2), rel_tol=1e-6) and math.isclose(float(k), 0.6, rel_tol=1e-6)
    _, k = pareto_weights(torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 0.0]))  # mu <= uu, mu >= mm? no: opposite
    assert math.isclose(float(k), 2 / 3, rel_tol=1e-6)  # (4 + 2) / (1 + 4 + 4)


def test_mmpareto_modulation_by_hand():
    model = nn.Module()
    model.encoders = nn.ModuleDict({"a": nn.Linear(2, 1, bias=False)})
    model.encoders["a"].weight.grad = torch.tensor([[0.0, 1.0]])  # total = g_mm + g_u
    stats = StepStats(0, {}, torch.ones(1), group_grads={"unimodal": [[torch.tensor([[-1.0, 1.0]])]]})
    bal = MMPareto(["a"])
    bal.modulate_gradients(model, stats)
    # g_mm = [1, 0], k = 0.6: new = 1.2*[1,0] + 0.8*[-1,1] = [0.4, 0.8]; |total| / |new| = 1/sqrt(0.8) > 1
    expected = 1.5 / math.sqrt(0.8) * torch.tensor([[0.4, 0.8]])
    assert torch.allclose(model.encoders["a"].weight.grad, expected)
    assert torch.allclose(bal.k, torch.tensor([0.6]))


# ------------------------------------------------------------------------------------------ AGM


def test_shapley_contributions_by_hand():
    # two modalities: o_a = 1/2 (f(a) - 0) + 1/2 (f(ab) - f(b)), the reference's GradMod_2
    f = {frozenset({0}): torch.tensor([2.0]), frozenset({1}): torch.tensor([4.0]), frozenset({0, 1}): torch.tensor([10.0])}
    o = shapley_contributions(f, 2)
    assert torch.allclose(o[0], torch.tensor([0.5 * 2 + 0.5 * (10 - 4)]))  # 4
    assert torch.allclose(o[1], torch.tensor([0.5 * 4 + 0.5 * (10 - 2)]))  # 6
    assert torch.allclose(o[0] + o[1], f[frozenset({0, 1})])  # efficiency: they add up to f(all)
    # three additive modalities: each gets exactly its own part
    parts = [1.0, 2.0, 3.0]
    f3 = {frozenset(s): torch.tensor([sum(parts[i] for i in s)]) for n in (1, 2, 3) for s in __import__("itertools").combinations(range(3), n)}
    assert torch.allclose(torch.cat(shapley_contributions(f3, 3)), torch.tensor(parts))


def test_agm_coefficients_by_hand():
    score, running = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0])
    # M/(M-1) = 2: r = exp(2 * (-1, 1)); r_hat = (1, 1); k = exp(0.1 * (1 - r)), r_hat - r >= -inf, <= 7
    r = torch.exp(torch.tensor([-2.0, 2.0]))
    assert torch.allclose(agm_coefficients(score, running, 0.1), torch.exp(0.1 * (1 - r)))
    big = agm_coefficients(torch.tensor([0.0, 100.0]), torch.tensor([100.0, 0.0]), 1.0)
    assert math.isclose(float(big[0]), math.exp(7.0), rel_tol=1e-6)  # the gap is capped at 7


def test_agm_step_updates_running_scores_and_scales_gradients():
    bal = AGM(["a", "b"], alpha=0.1)
    h = torch.zeros(2, 2, 1)
    # a probe whose logits depend on which modalities are kept: class 0 gets 3 per kept 'a', 1 per 'b'
    probe = lambda mask: torch.stack([3.0 * mask[:, 0].float() + 1.0 * mask[:, 1].float(), torch.zeros(2)], dim=1)  # noqa: E731
    view = StepView(0, torch.zeros(2, 2), None, h, h, torch.tensor([0, 0]), torch.ones(2, 2, dtype=torch.bool), probe)
    assert bal.extra_loss(view) is None
    s = torch.tensor([-math.log(1 / (1 + math.exp(-3))), -math.log(1 / (1 + math.exp(-1)))])  # o_a = (3, 0), o_b = (1, 0)
    assert torch.allclose(bal.running, s, atol=1e-6)  # t = 1: the first score is the running mean
    r = torch.exp(2 * (s - s.mean()))
    assert torch.allclose(bal.coef, torch.exp(0.1 * torch.clamp(1 - r, max=7)), atol=1e-6)  # r_hat = 1 before the update
    model = nn.Module()
    model.encoders = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 1)})
    for enc in model.encoders.values():
        enc.weight.grad, enc.bias.grad = torch.ones(1, 2), torch.ones(1)
    bal.modulate_gradients(model, StepStats(0, {}, torch.ones(2)))
    assert torch.allclose(model.encoders["b"].weight.grad, bal.coef[1] * torch.ones(1, 2))
    assert torch.equal(model.encoders["b"].bias.grad, torch.ones(1))  # 1-D gradients are left alone


# ------------------------------------------------------------------------------------ G-Blending


def test_blending_weights_by_hand():
    prev_t, prev_v = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.2, 1.2, 1.2])
    now_t, now_v = torch.tensor([0.5, 0.8, 0.6]), torch.tensor([1.0, 1.1, 0.9])
    # G = (-0.2, -0.1, -0.3); O = (0.5-0.2, 0.3-0.2, 0.3-0.2) = (0.3, 0.1, 0.1)
    raw = torch.tensor([0.2 / 0.09, 0.1 / 0.01, 0.3 / 0.01])
    assert torch.allclose(blending_weights(prev_t, prev_v, now_t, now_v), raw / raw.sum(), rtol=1e-5)


def test_gblending_refreshes_from_epoch_losses():
    bal = GBlending(["a", "b"], max_weight=10.0)
    table = {
        1: ({"task": torch.tensor(1.0), "unimodal": torch.tensor([1.0, 1.0])}, {"task": torch.tensor(1.2), "unimodal": torch.tensor([1.2, 1.2])}),
        2: ({"task": torch.tensor(0.6), "unimodal": torch.tensor([0.5, 0.8])}, {"task": torch.tensor(0.9), "unimodal": torch.tensor([1.0, 1.1])}),
    }
    for epoch in (1, 2):
        bal.end_epoch(EpochView(epoch, 0, {}, lambda: None, lambda split, e=epoch: table[e][0 if split == "train" else 1]))
        if epoch == 1:
            assert torch.equal(bal.weights(), torch.ones(2))  # a first measurement only
    raw = torch.tensor([0.2 / 0.09, 0.1 / 0.01, 0.3 / 0.01])  # heads a, b, then the fusion head
    assert torch.allclose(bal.weights(), raw[:2] / raw[2], rtol=1e-5)


# ----------------------------------------------------------------------------------- in the engine

NODES = {
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 300, "dim": 8},
    "dim": 8,
    "encoders": {"default": {"type": "mmcore.mlp", "layers": [16]}},
    "fusion": {"type": "mmcore.concat", "layers": [16]},
    "unimodal_heads": {"layers": [8]},
}


@pytest.mark.parametrize(
    "balancer,imputer,keys",
    [
        ("baselines.pmr", "mmcore.zero", {"pmr_coef.m0", "balancer_loss"}),
        ("baselines.mmpareto", "redcore.vib", {"pareto_k.m2", "pareto_cos.m0"}),
        ("baselines.agm", "baselines.mean", {"agm_coef.m1", "agm_score.m0"}),
        ("baselines.gblending", "mmcore.zero", {"blend.m0", "blend.m2"}),
    ],
)
def test_resume_equals_straight_run(tmp_path: Path, balancer: str, imputer: str, keys: set[str]) -> None:
    r = tiny_recipe(tmp_path / "runs", "train.epochs=3", **NODES, imputer={"type": imputer}, balancer={"type": balancer})
    check = check_resume(r, stop_after=6)  # mid-epoch 2 (4 steps an epoch)
    assert keys <= check.logged()


def test_mmpareto_without_heads_says_what_to_set(tmp_path: Path) -> None:
    r = tiny_recipe(tmp_path / "runs", "model.unimodal_heads=false", **{**NODES, "unimodal_heads": False}, balancer={"type": "baselines.mmpareto"})
    with pytest.raises(MMCoreError, match="needs the gradients of loss group.*unimodal.*set model.unimodal_heads=true"):
        run({**r, "train": {**r["train"], "max_steps": 1}}, show_progress=False)


@pytest.mark.parametrize("name", ["baselines.pmr", "baselines.agm", "baselines.ogm_ge"])
def test_classification_only_balancers_are_rejected_at_validation_for_regression(name: str) -> None:
    from mmcore.errors import RecipeError
    from mmcore.recipe import load_recipe

    root = Path(__file__).resolve().parents[3]
    with pytest.raises(RecipeError, match=f"balancer: {name} is defined for classification only; this dataset's task is regression"):
        load_recipe(root / "recipes" / "mosei_regression.yaml", [f"balancer={name}"])


def test_a_balancer_reading_confidences_without_heads_is_a_validation_error(tmp_path: Path) -> None:
    from mmcore.errors import RecipeError

    with pytest.raises(RecipeError, match=r"balancer: baselines.ogm_ge reads the unimodal heads' confidences; set model.unimodal_heads"):
        tiny_recipe(tmp_path / "runs", "model.unimodal_heads=false", balancer={"type": "baselines.ogm_ge"})
