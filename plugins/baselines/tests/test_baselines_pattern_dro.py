"""baselines.pattern_dro: the group-DRO update by hand, the objective it makes, resume, ranks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mmcore.components import StepView
from mmcore.errors import MMCoreError
from mmcore_baselines import PatternDRO, pattern_index


def _view(rows: torch.Tensor, present: torch.Tensor) -> StepView:
    b = rows.shape[0]
    z = torch.zeros(b, present.shape[1], 2)
    return StepView(0, torch.zeros(b, 2), None, z, z, torch.zeros(b, dtype=torch.long), present, lambda m: m, task_rows=rows)


def test_pattern_index_is_the_bit_mask() -> None:
    present = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.bool)
    assert pattern_index(present).tolist() == [1, 2, 3]


def test_update_and_objective_by_hand() -> None:
    # two modalities: patterns 1 = {a}, 2 = {b}, 3 = {a, b}; q starts at 1/3 each (pattern 0 never occurs)
    bal = PatternDRO(["a", "b"], eta=1.0)
    assert bal.q.tolist() == [0.0, pytest.approx(1 / 3), pytest.approx(1 / 3), pytest.approx(1 / 3)]
    present = torch.tensor([[1, 1], [1, 1], [1, 0]], dtype=torch.bool)  # patterns 3, 3, 1
    rows = torch.tensor([1.0, 3.0, 4.0], requires_grad=True)
    extra = bal.extra_loss(_view(rows, present))
    # L_1 = 4, L_2 = 0 (no row), L_3 = 2; q ∝ (e^4, e^0, e^2)
    z = math.exp(4) + 1 + math.exp(2)
    q = [math.exp(4) / z, 1 / z, math.exp(2) / z]
    assert bal.q[1:].tolist() == pytest.approx(q)
    # objective Σ q_g L_g replaces the mean (8/3): extra = Σ q_g L_g − mean
    assert extra.item() == pytest.approx(q[0] * 4 + q[2] * 2 - 8 / 3, rel=1e-5)
    # gradient of mean + extra: row i gets q_g / n_g for its pattern g
    (rows.mean() + extra).backward()
    assert rows.grad.tolist() == pytest.approx([q[2] / 2, q[2] / 2, q[0]], rel=1e-5)


def test_mix_zero_is_the_plain_mean_and_eta_zero_keeps_q() -> None:
    present = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    rows = torch.tensor([1.0, 5.0])
    assert PatternDRO(["a", "b"], mix=0.0).extra_loss(_view(rows, present)).item() == 0.0
    bal = PatternDRO(["a", "b"], eta=0.0)
    bal.extra_loss(_view(rows, present))
    assert bal.q[1:].tolist() == pytest.approx([1 / 3] * 3)


def test_state_round_trip_and_a_mismatch_is_refused() -> None:
    bal = PatternDRO(["a", "b", "c"], eta=0.5)
    bal.extra_loss(_view(torch.tensor([1.0, 2.0]), torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)))
    fresh = PatternDRO(["a", "b", "c"], eta=0.5)
    fresh.load_state_dict(json.loads(json.dumps(bal.state_dict())))
    assert torch.equal(fresh.q, bal.q)
    with pytest.raises(MMCoreError, match="baselines.pattern_dro: checkpoint state is for modalities"):
        PatternDRO(["a", "b"]).load_state_dict(bal.state_dict())


def test_resume_equals_straight(tmp_path) -> None:
    from mmcore.testing import check_resume, tiny_recipe

    recipe = tiny_recipe(tmp_path, balancer={"type": "baselines.pattern_dro", "eta": 0.1})
    check = check_resume(recipe, stop_after=3)  # mid-epoch
    assert {"balancer_loss", "dro_max_q"} <= check.logged()


# Per rank: (row losses, present rows). Rank 1 alone has pattern {a}.
RANKS = {
    0: ([1.0, 3.0], [[1, 1], [0, 1]]),
    1: ([5.0, 2.0], [[1, 1], [1, 0]]),
}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from mmcore.engine.runtime import Runtime

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world)
        bal = PatternDRO(["a", "b"], eta=0.5)
        rows, present = RANKS[rank]
        view = _view(torch.tensor(rows), torch.tensor(present, dtype=torch.bool))
        view.mean_over_ranks = runtime.all_reduce_mean
        bal.extra_loss(view)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(bal.state_dict()))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_and_equal_one_process_with_the_pooled_batch(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    states = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert states[0] == states[1]
    single = PatternDRO(["a", "b"], eta=0.5)
    rows = torch.tensor(RANKS[0][0] + RANKS[1][0])
    single.extra_loss(_view(rows, torch.tensor(RANKS[0][1] + RANKS[1][1], dtype=torch.bool)))
    assert states[0]["q"] == pytest.approx(single.state_dict()["q"], rel=1e-6)
