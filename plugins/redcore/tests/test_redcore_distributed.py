"""Under torch.distributed the engine pools every rank's statistics (mmcore.engine.losses.pool_stats), so every
rank's balancer applies the same β — the one a single process with the pooled batch computes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmcore.engine.losses import pool_stats
from mmcore.engine.runtime import Runtime
from mmcore.types import StepStats
from mmcore_redcore.balancer import RelativeAdvantage

NAMES = ["a", "b", "c"]
# Per rank and step: (recon terms, present counts). Rank 1 sees "c" at step 0, rank 0 does not.
STEPS = {
    0: [([1.0, 2.0, 9.0], [1, 3, 0]), ([2.0, 1.0, 1.0], [2, 2, 2])],
    1: [([3.0, 4.0, 5.0], [3, 1, 2]), ([4.0, 3.0, 2.0], [2, 2, 2])],
}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world)
        bal = RelativeAdvantage(NAMES, interval=1)
        for step, (recon, counts) in enumerate(STEPS[rank]):
            bal.observe(pool_stats(StepStats(step, {"recon": torch.tensor(recon)}, torch.tensor(counts)), runtime))
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(bal.state_dict()))
    finally:
        dist.destroy_process_group()


def test_ranks_pool_statistics_and_agree(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    states = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert states[0] == states[1]

    # One process that sees the pooled batch: count-weighted means over the present samples.
    # step 0: a (1·1 + 3·3)/4 = 2.5, b (2·3 + 4·1)/4 = 2.5, c (5·2)/2 = 5 (rank 0's 9 had no sample)
    # step 1: a (2·2 + 4·2)/4 = 3,   b 2,                     c 1.5
    single = RelativeAdvantage(NAMES, interval=1)
    single.observe(StepStats(0, {"recon": torch.tensor([2.5, 2.5, 5.0])}, torch.tensor([4, 4, 2])))
    single.observe(StepStats(1, {"recon": torch.tensor([3.0, 2.0, 1.5])}, torch.tensor([4, 4, 4])))
    assert states[0]["ema"] == single.state_dict()["ema"]
    assert states[0]["beta"] == single.state_dict()["beta"]
    # by hand: L̄ after step 0 = 0.7·[2.5, 2.5, 5] = [1.75, 1.75, 3.5]; after step 1 = [2.625, 1.925, 2.1]
    assert torch.allclose(torch.tensor(states[0]["ema"]), torch.tensor([2.625, 1.925, 2.1]), atol=1e-6)
