"""RedCore inside the engine: exact resume with the balancer's state, β in metrics.jsonl, the
uniform-balancer ablation. Tiny sizes (400 synthetic samples, 5 steps an epoch), CPU, seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file

from mmcore.engine.trainer import run
from mmcore.testing import check_resume, tiny_recipe
from mmcore.types import StepStats
from mmcore_redcore import RelativeAdvantage

NAMES = ["m0", "m1", "m2"]

# The core's tiny test recipe (mmcore.testing.tiny_recipe: 280 training samples, batch 64 → 5
# steps an epoch) with RedCore's components. β updates every 2 steps and η grows every 3 (instead
# of 3 and 500) so that both change many times within a 10–15 step run.
NODES: dict[str, Any] = {
    "missing": {"train": {"rates": {"m0": 0.2, "m1": 0.4, "m2": 0.6}}, "eval": {"conditions": "all"}},
    "imputer": {"type": "redcore.vib", "hidden": [16, 8], "blocks": 2},
    "balancer": {"type": "redcore.relative_advantage", "interval": 2, "eta_every": 3},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine torch's
    default two threads contend with other processes: these runs took minutes instead of
    seconds. One thread for this module, restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_recipe(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``make_recipe("train.epochs=3", ...)``: the tiny recipe with overrides, resolved, under tmp_path."""

    def make(*overrides: str) -> dict[str, Any]:
        return tiny_recipe(tmp_path / "runs", "train.epochs=2", *overrides, **NODES)

    return make


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


def _state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "checkpoints" / "last" / "state.json").read_text())


def _step_lines(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x for x in lines if "loss" in x]


def _beta(line: dict[str, Any]) -> list[float]:
    return [line[f"beta.{m}"] for m in NAMES]


# (interval, eta_every, stop, extra overrides): every stop is mid-epoch (epochs end at 5, 10, 15)
# and between two β updates (updates happen at observed steps 0, interval, 2·interval, ...).
RESUME_CASES = [
    (2, 3, 7, []),
    (3, 4, 8, ["missing.train.policy=resample", "balancer.projection=exact", "train.schedule.type=linear"]),
]


@pytest.mark.parametrize("interval,eta_every,stop,extra", RESUME_CASES)
def test_resume_mid_interval_equals_straight_run(make_recipe, interval, eta_every, stop, extra) -> None:
    assert stop % interval != 0 and stop % 5 != 0  # the case is what its comment says
    recipe = make_recipe(
        "train.epochs=3", f"balancer.interval={interval}", f"balancer.eta_every={eta_every}", *extra
    )
    check = check_resume(recipe, stop_after=stop)  # weights bit for bit, results, metrics.jsonl line for line
    assert check.stopped.stopped_early and check.straight.step == 15
    assert check.resumed.step == 15 and not check.resumed.stopped_early

    # The stopped run's balancer had moved: β off its start, η grown more than once, L̄ > 0.
    mid = check.stopped_state["balancer"]
    assert mid["step"] == stop
    assert mid["eta"] == pytest.approx(0.1 * 1.5 ** (1 + (stop - 1) // eta_every))
    assert mid["beta"] != [1.0, 1.0, 1.0] and all(x > 0 for x in mid["ema"])
    end_a, end_b = _state(check.straight.run_dir)["balancer"], _state(check.resumed.run_dir)["balancer"]
    assert end_a == end_b
    assert end_a["step"] == 15 and end_a["beta"] != mid["beta"]  # β kept moving after the stop


def test_resume_with_a_different_balancer_state_would_differ(make_recipe) -> None:
    """The equality above is not vacuous: a resumed run that forgets β ends with other weights."""
    recipe = make_recipe("train.epochs=3")
    straight = run(recipe, show_progress=False)
    half = run({**recipe, "train": {**recipe["train"], "max_steps": 7}}, show_progress=False)
    path = half.run_dir / "checkpoints" / "last" / "state.json"
    state = json.loads(path.read_text())
    state["balancer"]["beta"] = [1.0, 1.0, 1.0]
    path.write_text(json.dumps(state))
    resumed = run(recipe, run_dir=half.run_dir, resume=True, show_progress=False)
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_beta_logged_at_every_logging_step_and_replays_from_logged_losses(make_recipe) -> None:
    result = run(make_recipe("train.log_every=1"), show_progress=False)
    lines = _step_lines(result.run_dir)
    assert [x["step"] for x in lines] == list(range(1, 11))
    for line in lines:
        assert {f"beta.{m}" for m in NAMES} | {f"recon_ema.{m}" for m in NAMES} <= set(line)
        # the VIB's logged-only mechanism statistics (issue 27): present, finite, never in the loss
        assert all(line[f"sigma2.{m}"] > 0 and line[f"z_sq.{m}"] >= 0 for m in NAMES)
        # β is first updated by step 0's observation, before the first line is written.
        assert math.fsum(b * b for b in _beta(line)) == pytest.approx(1.0, abs=1e-6)
    assert len({tuple(_beta(x)) for x in lines}) > 3  # β moved during the run

    # With log_every=1 each line holds one step's recon terms; feeding them to a fresh balancer
    # reproduces the logged β and L̄ exactly: the engine observes what it logs.
    replay = RelativeAdvantage(NAMES, interval=2, eta_every=3)
    for line in lines:
        recon = torch.tensor([line[f"recon.{m}"] for m in NAMES])
        replay.observe(StepStats(step=line["step"] - 1, losses={"recon": recon}, present_counts=torch.ones(3)))
        assert replay.beta.tolist() == pytest.approx(_beta(line), abs=1e-6)
        assert replay.ema.tolist() == pytest.approx([line[f"recon_ema.{m}"] for m in NAMES], rel=1e-6)
    assert _state(result.run_dir)["balancer"]["beta"] == pytest.approx(replay.beta.tolist(), abs=1e-6)


def test_loss_weighs_recon_by_the_previous_steps_beta(make_recipe) -> None:
    """loss = task + Σ kl + Σ β·recon + Σ unimodal, with β as it stood before the step (one step lag)."""
    lines = _step_lines(run(make_recipe("train.log_every=1"), show_progress=False).run_dir)
    beta_before = [[1.0, 1.0, 1.0]] + [_beta(x) for x in lines[:-1]]  # step 0 is weighted by β = 1
    for line, beta in zip(lines, beta_before):
        recon = sum(b * line[f"recon.{m}"] for b, m in zip(beta, NAMES))
        others = sum(line[f"{g}.{m}"] for g in ("kl", "unimodal") for m in NAMES)
        assert line["loss"] == pytest.approx(line["task_loss"] + others + recon, rel=1e-5)
    # The lag is visible: weighting by the β logged on the same line would not add up.
    line = lines[4]
    same = sum(b * line[f"recon.{m}"] for b, m in zip(_beta(line), NAMES))
    assert abs(same - sum(b * line[f"recon.{m}"] for b, m in zip(beta_before[4], NAMES))) > 1e-6


def test_uniform_balancer_swaps_in_with_the_vib_imputer(make_recipe) -> None:
    recipe = make_recipe("train.log_every=1", "balancer=mmcore.uniform")
    assert recipe["balancer"] == {"type": "mmcore.uniform", "target": "recon", "norm": "mean", "total": 1.0}  # RedCore's options are gone
    result = run(recipe, show_progress=False)
    assert result.results is not None and set(result.results["test"]) == {
        "m0", "m1", "m2", "m0+m1", "m0+m2", "m1+m2", "m0+m1+m2", "average"
    }
    lines = _step_lines(result.run_dir)
    assert lines and not any(k.startswith("beta.") for line in lines for k in line)
    for line in lines:  # every recon term weighs 1
        groups = sum(line[f"{g}.{m}"] for g in ("kl", "recon", "unimodal") for m in NAMES)
        assert line["loss"] == pytest.approx(line["task_loss"] + groups, rel=1e-5)
        assert all(line[f"recon.{m}"] > 0 and line[f"kl.{m}"] > 0 for m in NAMES)
    assert _state(result.run_dir)["balancer"] == {}
