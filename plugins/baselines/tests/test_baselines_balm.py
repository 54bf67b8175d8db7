"""baselines.balm: KL progress coefficients by hand, the gradient scaling, resume, ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.components import StepView
from mmcore.types import StepStats
from mmcore_baselines.balm import BALM, balm_coefficients, kl_to_fused


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
    bal = BALM(["a", "b"], rho=2.0)
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

    recipe = tiny_recipe(tmp_path, balancer={"type": "baselines.balm", "noise": noise})
    check = check_resume(recipe, stop_after=3)
    assert any(k.startswith("balm_coef.") for k in check.logged())


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
