"""baselines.balm: KL progress coefficients, the direction term and the feature calibration by hand,
the gradient scaling, resume, ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.components import StepView
from mmcore.types import StepStats
from mmcore.errors import MMCoreError
from mmcore_baselines.balm import BALM, balm_coefficients, direction_loss, kl_to_fused
from mmcore_baselines.balm_fcm import FeatureCalibration, default_width


def _view(prediction: torch.Tensor, unimodal: torch.Tensor, step: int = 0) -> StepView:
    b, m = unimodal.shape[:2]
    z = torch.zeros(b, m, 2)
    return StepView(step, prediction, unimodal, z, z, torch.zeros(b, dtype=torch.long), torch.ones(b, m, dtype=torch.bool), lambda x: x)


def test_kl_by_hand() -> None:
    # fused p = softmax(0, 0) = (½, ½); head a = p (KL 0); head b = softmax(log 3, 0) = (¾, ¼)
    prediction = torch.zeros(1, 2)
    unimodal = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    kl = kl_to_fused(prediction, unimodal, regression=False)
    assert kl[0].item() == pytest.approx(0.0, abs=1e-7)
    assert kl[1].item() == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25), rel=1e-6)


def test_coefficients_by_hand() -> None:
    # first step: d = KL = [1, 3], Σ = 4: coef = [(4 − 1)/4, (4 − 3)/4] = [0.75, 0.25]
    assert balm_coefficients(None, torch.tensor([1.0, 3.0])).tolist() == pytest.approx([0.75, 0.25])
    # then d = [1, 3] − [0.5, 1] = [0.5, 2], Σ 2.5: coef = [0.8, 0.2] (the faster learner gets less)
    assert balm_coefficients(torch.tensor([1.0, 3.0]), torch.tensor([0.5, 1.0])).tolist() == pytest.approx([0.8, 0.2])


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})


def test_gradients_are_scaled_by_rho_times_coef() -> None:
    bal = BALM(["a", "b"], rho=2.0, tau=0.0)
    unimodal = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])
    bal.extra_loss(_view(torch.zeros(1, 2), unimodal))
    # KL = [0, k]: d Σ = k, coef = [1, 0]
    assert bal.coef.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    model = _Model()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    bal.modulate_gradients(model, StepStats(0, {}, torch.ones(2, dtype=torch.long)))
    assert torch.allclose(model.encoders["a"].weight.grad, torch.full((2, 2), 2.0))
    assert torch.allclose(model.encoders["b"].weight.grad, torch.zeros(2, 2), atol=1e-5)


def test_state_round_trip() -> None:
    bal = BALM(["a", "b"])
    bal.extra_loss(_view(torch.zeros(2, 3), torch.randn(2, 2, 3)))
    fresh = BALM(["a", "b"])
    fresh.load_state_dict(json.loads(json.dumps(bal.state_dict())))
    assert torch.equal(fresh.coef, bal.coef) and torch.equal(fresh.prev, bal.prev)


@pytest.mark.parametrize("noise", [False, True])
def test_resume_equals_straight(tmp_path: Path, noise: bool) -> None:
    from mmcore.testing import check_resume, tiny_recipe

    # heads end at the fusion's width (32), so the direction term applies; fcm puts weights in the model
    recipe = tiny_recipe(tmp_path, balancer={"type": "baselines.balm", "noise": noise}, unimodal_heads={"layers": [32]})
    check = check_resume(recipe, stop_after=3)
    assert any(k.startswith("balm_coef.") for k in check.logged())
    assert {"calibration.squeeze.weight", "calibration.excite.bias"} <= set(check.weights)
    steps = [json.loads(line) for line in check.lines if "balm_direction" in line]
    assert steps and all(x["balm_direction"] > 0 and -1.0 <= x["balm_cos.m0"] <= 1.0 for x in steps)


def test_direction_needs_output_layers_of_one_shape(tmp_path: Path) -> None:
    from mmcore.testing import short_run, tiny_recipe

    recipe = tiny_recipe(tmp_path, "train.epochs=1", balancer={"type": "baselines.balm"})  # heads [16], fusion [32]
    with pytest.raises(MMCoreError, match=r"fusion's is \(4, 32\) and unimodal head 'm0''s is \(4, 16\)"):
        short_run(recipe, max_steps=1)


RANKS = {0: [[0.0, 0.0], [1.0, 0.0]], 1: [[2.0, 0.0], [0.0, 1.0]]}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from mmcore.engine.runtime import Runtime

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world)
        bal = BALM(["a", "b"])
        view = _view(torch.zeros(1, 2), torch.tensor([RANKS[rank]]))
        view.mean_over_ranks = runtime.all_reduce_mean
        bal.extra_loss(view)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(bal.state_dict()))
    finally:
        dist.destroy_process_group()


def test_ranks_agree(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    states = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert states[0] == states[1]
    single = BALM(["a", "b"])
    single.extra_loss(_view(torch.zeros(2, 2), torch.tensor([RANKS[0], RANKS[1]])))
    assert states[0]["prev"] == pytest.approx(single.state_dict()["prev"], rel=1e-6)


def test_direction_by_hand() -> None:
    # f = vec W_f = (1, 0); W_a = (1, 1): cos = 1/√2; W_b = (−1, 1): cos = −1/√2; coef = (0.5, 1.5)
    # L = (|0.5/√2| + |−1.5/√2|) / 2 = 1/√2
    # ∂cos(w, f)/∂f = w/(|w||f|) − cos · f/|f|² = (0, 1/√2) for both heads, so
    # ∂L/∂f = ½ (0.5 · (+1) + 1.5 · (−1)) · (0, 1/√2) = (0, −1/(2√2))
    f = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss, cos = direction_loss(f, [torch.tensor([[1.0, 1.0]]), torch.tensor([[-1.0, 1.0]])], torch.tensor([0.5, 1.5]))
    assert loss.item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert cos.tolist() == pytest.approx([1 / math.sqrt(2), -1 / math.sqrt(2)], rel=1e-6)
    (grad,) = torch.autograd.grad(loss, f)
    assert grad.flatten().tolist() == pytest.approx([0.0, -1 / (2 * math.sqrt(2))], abs=1e-6)


class _WithHeads(_Model):
    """Encoders, a fusion whose output layer is W_f = (1, 0), heads with W_a = (1, 1), W_b = (−1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fusion = nn.Sequential(nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
        self.unimodal_heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 1)})
        with torch.no_grad():
            self.fusion[2].weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.unimodal_heads["a"].weight.copy_(torch.tensor([[1.0, 1.0]]))
            self.unimodal_heads["b"].weight.copy_(torch.tensor([[-1.0, 1.0]]))


def test_direction_gradient_lands_on_the_fusion_output_layer_only() -> None:
    bal = BALM(["a", "b"], rho=1.0, tau=0.2)
    bal.coef = torch.tensor([0.5, 1.5])
    model = _WithHeads()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    bal.modulate_gradients(model, StepStats(0, {}, torch.ones(2, dtype=torch.long)))
    # tau · ∂L/∂W_f = 0.2 · (0, −1/(2√2)) = (0, −0.0707107) added to the ones already there
    assert model.fusion[2].weight.grad.flatten().tolist() == pytest.approx([1.0, 1.0 - 0.2 / (2 * math.sqrt(2))], abs=1e-6)
    assert torch.equal(model.unimodal_heads["a"].weight.grad, torch.ones(1, 2))  # heads untouched
    assert torch.equal(model.fusion[0].weight.grad, torch.ones(2, 4))
    assert bal.log_values()["balm_direction"].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)


def test_feature_calibration_by_hand() -> None:
    # M = 2, d = 1, squeeze width 1: W_g = (1, 1), W_e = (1, −1)ᵀ, zero biases.
    fcm = FeatureCalibration(2, 1, width=1)
    with torch.no_grad():
        fcm.squeeze.weight.copy_(torch.tensor([[1.0, 1.0]]))
        fcm.excite.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        fcm.squeeze.bias.zero_()
        fcm.excite.bias.zero_()
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # both present, h = (2, 3): g = ReLU(5) = 5, e = (5, −5), out = (2 · 2σ(5), 3 · 2σ(−5))
    both = fcm(torch.tensor([[[2.0], [3.0]]]), torch.tensor([[True, True]]))
    assert both.flatten().tolist() == pytest.approx([2 * 2 * sig(5), 3 * 2 * sig(-5)], rel=1e-6)
    # b absent (its row is noise here; the statistic masks it): g = 2, out_a = 2 · 2σ(2)
    alone = fcm(torch.tensor([[[2.0], [99.0]]]), torch.tensor([[True, False]]))
    assert alone[0, 0, 0].item() == pytest.approx(2 * 2 * sig(2), rel=1e-6)


def test_calibration_follows_the_options() -> None:
    from mmcore.engine.build import build_calibration
    from mmcore.plugins import get_registry
    from mmcore.types import ModalitySpec

    specs = [ModalitySpec("a", 3), ModalitySpec("b", 5)]
    registry = get_registry()
    built = build_calibration({"type": "baselines.balm"}, specs, 8, registry)
    assert isinstance(built, FeatureCalibration) and built.squeeze.out_features == default_width(2, 8) == 4
    narrow = build_calibration({"type": "baselines.balm", "fcm_dim": 3}, specs, 8, registry)
    assert narrow.squeeze.out_features == 3
    assert build_calibration({"type": "baselines.balm", "fcm": False}, specs, 8, registry) is None
    assert build_calibration({"type": "mmcore.uniform"}, specs, 8, registry) is None
    # the factory's defaults and the calibration's agree (one recipe option, two readers)
    import inspect

    init, hook = inspect.signature(BALM.__init__).parameters, inspect.signature(BALM.calibration).parameters
    assert init["fcm"].default == hook["fcm"].default and init["fcm_dim"].default == hook["fcm_dim"].default
