"""The trainer's live state: running sums survive a JSON round trip exactly, per rank."""

from __future__ import annotations

import json

import pytest
import torch

from mmcore.engine.losses import pool_stats
from mmcore.engine.runtime import Runtime
from mmcore.engine.state import RunningSums, TrainState
from mmcore.types import StepStats


def test_running_sums_round_trip_through_json_exactly():
    rt = Runtime(torch.device("cpu"))
    state = TrainState()
    state.bind(rt)
    state.log.add({"loss": torch.tensor(0.1), "recon": torch.tensor([1.0 / 3, 2.5])})
    state.log.add({"loss": torch.tensor(0.7), "recon": torch.tensor([0.25, 1.0 / 7])})
    state.log.count = 2
    state.step, state.epoch_loss = 2, state.epoch_loss + torch.tensor(0.8)
    saved = json.loads(json.dumps(state.snapshot(rt, {"w": [1.0]}).to_json()))
    assert saved["log_count"] == 2 and saved["rank_log_sums"] is None and saved["step"] == 2
    restored = TrainState.from_json(saved, "state.json")
    restored.bind(rt)
    for key, value in state.log.sums.items():
        assert torch.equal(restored.log.sums[key], value)
    assert torch.equal(restored.epoch_loss, state.epoch_loss)
    assert {k: v.tolist() for k, v in restored.log.means(rt).items()} == {k: v.tolist() for k, v in state.log.means(rt).items()}


def test_a_rank_continues_its_own_sums_when_the_world_size_matches():
    sums = RunningSums({"loss": 1.5}, 3, by_rank=[{"loss": 1.0}, {"loss": 2.0}])
    sums.bind(Runtime(torch.device("cpu"), rank=1, world_size=2))
    assert sums.sums["loss"].item() == 2.0 and sums.count == 3
    other = RunningSums({"loss": 1.5}, 3, by_rank=[{"loss": 1.0}, {"loss": 2.0}])
    other.bind(Runtime(torch.device("cpu")))  # another world size: the mean over ranks
    assert other.sums["loss"].item() == 1.5


def test_runtime_pool_stats_is_a_deprecated_alias_of_losses_pool_stats():
    rt = Runtime(torch.device("cpu"))
    stats = StepStats(0, {"recon": torch.tensor([1.0, 2.0])}, torch.tensor([3, 4]))
    with pytest.warns(DeprecationWarning, match="removed in mmcore"):
        assert rt.pool_stats(stats) is pool_stats(stats, rt)
