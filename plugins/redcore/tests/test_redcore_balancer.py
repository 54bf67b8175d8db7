"""redcore.relative_advantage: hand-computed trajectories, η schedule, invariants, state, errors."""

from __future__ import annotations

import json

import pytest
import torch

from mmcore.components import Balancer
from mmcore.errors import MMCoreError
from mmcore.lossgroups import check_target
from mmcore.types import StepStats
from mmcore_redcore.balancer import RelativeAdvantage, relative_advantage

NAMES = ["a", "b", "c"]


def stats(step: int, recon: list[float], counts: list[int], group: str = "recon") -> StepStats:
    return StepStats(step=step, losses={group: torch.tensor(recon)}, present_counts=torch.tensor(counts))


def close(t: torch.Tensor, expected: list[float], tol: float = 1e-6) -> bool:
    return torch.allclose(t, torch.tensor(expected, dtype=t.dtype), atol=tol, rtol=0)


def test_hand_computed_trajectory_with_an_absent_modality() -> None:
    bal = RelativeAdvantage(NAMES)
    assert isinstance(bal, Balancer) and bal.target == "recon"
    assert close(bal.weights(), [1.0, 1.0, 1.0])  # β starts at 1; step 0 is weighted by it

    # step 0: L̄ = 0.3·0 + 0.7·[1,2,3] = [0.7, 1.4, 2.1]; η = 0.1·1.5 = 0.15 (growth at step 0);
    # mean 1.4, ra = [0.5, 0, −0.5]; β − η·ra = [0.925, 1, 1.075], ‖·‖ = √3.01125 = 1.7352954
    bal.observe(stats(0, [1, 2, 3], [4, 4, 4]))
    assert close(bal.ema, [0.7, 1.4, 2.1])
    assert bal.eta == pytest.approx(0.15, abs=1e-15)
    assert close(bal.weights(), [0.53305046, 0.57627077, 0.61949108])
    beta0 = bal.weights().clone()

    # step 1: "b" has no present sample, its loss (5) is ignored: L̄_b stays 1.4.
    # L̄_a = 0.21 + 1.4 = 1.61, L̄_c = 0.63 + 0.7 = 1.33. No β update (1 % 3 ≠ 0).
    bal.observe(stats(1, [2, 5, 1], [4, 0, 4]))
    assert close(bal.ema, [1.61, 1.4, 1.33])
    assert torch.equal(bal.weights(), beta0)

    # step 2: L̄ = 0.3·[1.61, 1.4, 1.33] + 0.7 = [1.183, 1.12, 1.099]; still no β update.
    bal.observe(stats(2, [1, 1, 1], [2, 2, 2]))
    assert close(bal.ema, [1.183, 1.12, 1.099])
    assert torch.equal(bal.weights(), beta0)

    # step 3: L̄ = [0.3549 + 0.35, 0.336 + 2.1, 0.3297 + 0.7] = [0.7049, 2.436, 1.0297], mean 1.3902
    # ra = [0.49295065, −0.75226586, 0.25931521]; β − 0.15·ra = [0.45910787, 0.68911065, 0.58059380]
    bal.observe(stats(3, [0.5, 3, 1], [1, 1, 1]))
    assert close(bal.ema, [0.7049, 2.436, 1.0297])
    assert close(relative_advantage(bal.ema), [0.49295065, -0.75226586, 0.25931521])
    assert close(bal.weights(), [0.45397459, 0.68140572, 0.57410219])
    # "b", reconstructed worst, gained weight; "a", best, lost it.
    assert bal.weights()[1] > beta0[1] and bal.weights()[0] < beta0[0]

    # steps 4, 5: only "b" present at 4 (L̄_b = 0.7308 + 2.8 = 3.5308), all at 5.
    bal.observe(stats(4, [4, 4, 4], [0, 3, 0]))
    assert close(bal.ema, [0.7049, 3.5308, 1.0297])
    bal.observe(stats(5, [1, 2, 3], [1, 1, 1]))
    assert close(bal.ema, [0.91147, 2.45924, 2.40891])
    # step 6: L̄ = [1.673441, 2.137772, 2.122673]; the third β update.
    bal.observe(stats(6, [2, 2, 2], [1, 1, 1]))
    assert close(bal.ema, [1.673441, 2.137772, 2.122673])
    assert close(bal.weights(), [0.42896573, 0.69044221, 0.58247571])
    assert bal.step == 7 and bal.eta == pytest.approx(0.15, abs=1e-15)


def test_eta_grows_at_step_0_and_every_500_steps() -> None:
    bal = RelativeAdvantage(NAMES)
    assert bal.eta == 0.1
    etas = []
    for step in range(1001):
        bal.observe(stats(step, [1.0, 1.5, 2.0], [2, 2, 2]))
        etas.append(bal.eta)
    assert etas[0] == pytest.approx(0.15) and etas[499] == pytest.approx(0.15)
    assert etas[500] == pytest.approx(0.225) and etas[999] == pytest.approx(0.225)
    assert etas[1000] == pytest.approx(0.3375)
    assert torch.allclose(bal.weights().norm(), torch.tensor(1.0), atol=1e-6)


def test_floor_clamp_can_end_below_it_and_exact_does_not() -> None:
    # L = [1, 1, 10]: L̄ = [0.7, 0.7, 7], mean 2.8, ra = [0.75, 0.75, −1.5]; η = 2 (no growth)
    # β − η·ra = [−0.5, −0.5, 4].
    clamp = RelativeAdvantage(NAMES, eta=2.0, eta_growth=1.0)
    clamp.observe(stats(0, [1, 1, 10], [1, 1, 1]))
    # clamp: [0.1, 0.1, 4] / √16.02: the clamped entries end at 0.0249844, below the floor (the reference's behaviour)
    assert close(clamp.weights(), [0.02498439, 0.02498439, 0.99937578])
    exact = RelativeAdvantage(NAMES, eta=2.0, eta_growth=1.0, projection="exact")
    exact.observe(stats(0, [1, 1, 10], [1, 1, 1]))
    # exact: the two small entries sit on the floor, the third takes √(1 − 2·0.01) = 0.98994949
    assert close(exact.weights(), [0.1, 0.1, 0.98994949])


@pytest.mark.parametrize("projection", ["clamp", "exact"])
def test_invariants_over_a_long_random_run(projection: str) -> None:
    gen = torch.Generator().manual_seed(0)
    bal = RelativeAdvantage(["a", "b", "c", "d"], projection=projection, eta_every=50, beta_min=0.2)
    for step in range(600):
        recon = torch.rand(4, generator=gen) * torch.tensor([0.5, 1.0, 2.0, 4.0])
        counts = (torch.rand(4, generator=gen) < 0.7).long()
        bal.observe(StepStats(step, {"recon": recon}, counts))
        beta = bal.weights()
        assert torch.isfinite(beta).all() and torch.isfinite(bal.ema).all()
        assert abs(float(beta.norm()) - 1.0) < 1e-5
        if projection == "exact":
            assert bool((beta >= 0.2 - 1e-6).all())
    # η reached 0.1·1.5^12 ≈ 13: the floor binds, the worst-reconstructed modality dominates.
    assert int(torch.argmax(bal.weights())) == 3


def test_all_zero_losses_give_no_nan() -> None:
    bal = RelativeAdvantage(NAMES)
    bal.observe(stats(0, [0, 0, 0], [0, 0, 0]))  # nothing seen: L̄ stays 0, ra = 0, β = normalised ones
    assert close(bal.ema, [0, 0, 0])
    assert close(bal.weights(), [3**-0.5] * 3)


def test_non_finite_losses_are_skipped() -> None:
    bal = RelativeAdvantage(NAMES)
    bal.observe(stats(0, [float("nan"), 1.0, float("inf")], [2, 2, 2]))
    assert close(bal.ema, [0.0, 0.7, 0.0])
    assert torch.isfinite(bal.weights()).all()


def test_log_values_are_the_beta_and_smoothed_loss_vectors() -> None:
    bal = RelativeAdvantage(NAMES)
    bal.observe(stats(0, [1, 2, 3], [4, 4, 4]))
    logged = bal.log_values()
    assert sorted(logged) == ["beta", "recon_ema"]
    assert torch.equal(logged["beta"], bal.weights()) and close(logged["recon_ema"], [0.7, 1.4, 2.1])


def test_target_group_is_configurable_and_checked() -> None:
    bal = RelativeAdvantage(NAMES, target="kl")
    bal.observe(stats(0, [1, 2, 3], [1, 1, 1], group="kl"))
    assert close(bal.ema, [0.7, 1.4, 2.1])
    # a missing group is the engine's one check on the first step (target_required), not observe's
    with pytest.raises(MMCoreError, match="balancer.target: 'recon' is not a loss group .*available: kl"):
        check_target(RelativeAdvantage(NAMES), {"kl"}, "test.imputer", False, "redcore.relative_advantage")


def test_state_round_trip_through_json_continues_identically() -> None:
    gen = torch.Generator().manual_seed(1)
    steps = [(torch.rand(3, generator=gen) * 3, (torch.rand(3, generator=gen) < 0.6).long()) for _ in range(20)]
    first = RelativeAdvantage(NAMES, projection="exact", eta_every=4)
    for t, (recon, counts) in enumerate(steps[:8]):
        first.observe(StepStats(t, {"recon": recon}, counts))
    state = json.loads(json.dumps(first.state_dict()))
    assert state["step"] == 8 and state["modalities"] == NAMES

    resumed = RelativeAdvantage(NAMES, projection="exact", eta_every=4)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.weights(), first.weights()) and torch.equal(resumed.ema, first.ema)
    assert resumed.state_dict() == state
    for t, (recon, counts) in enumerate(steps[8:], start=8):
        first.observe(StepStats(t, {"recon": recon}, counts))
        resumed.observe(StepStats(t, {"recon": recon}, counts))
        assert torch.equal(resumed.weights(), first.weights())
    assert resumed.state_dict() == first.state_dict()

    # Resume equivalence: 20 steps straight equal 8, save/load, 12.
    straight = RelativeAdvantage(NAMES, projection="exact", eta_every=4)
    for t, (recon, counts) in enumerate(steps):
        straight.observe(StepStats(t, {"recon": recon}, counts))
    assert straight.state_dict() == resumed.state_dict()


def test_load_state_dict_rejects_a_mismatched_checkpoint() -> None:
    state = RelativeAdvantage(NAMES).state_dict()
    with pytest.raises(MMCoreError, match="saved for modalities"):
        RelativeAdvantage(["a", "b"]).load_state_dict(state)
    with pytest.raises(MMCoreError, match="lacks beta"):
        RelativeAdvantage(NAMES).load_state_dict({k: v for k, v in state.items() if k != "beta"})
    with pytest.raises(MMCoreError, match="targets 'recon', this run 'kl'"):
        RelativeAdvantage(NAMES, target="kl").load_state_dict(state)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"beta_min": 0.6}, r"beta_min must be in \[0, 1/sqrt\(M\)\] = \[0, 0.5774\] for 3 modalities"),
        ({"rho": 0.0}, r"rho: expected float in \(0, 1\], got float 0.0"),
        ({"interval": 0}, "interval: expected int >= 1, got int 0"),
        ({"eta_every": 0}, "eta_every: expected int >= 1, got int 0"),
        ({"projection": "nearest"}, "projection: expected 'clamp' | 'exact', got str 'nearest'"),
    ],
)
def test_bad_options_are_one_line_errors(options: dict, message: str) -> None:
    """Ranges are in the signature (checked from it before building); beta_min's depends on M."""
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=message):
        get_registry().get("balancer", "redcore.relative_advantage").build({"modalities": NAMES}, options)


def test_to_keeps_state_on_the_device() -> None:
    bal = RelativeAdvantage(NAMES).to("cpu")
    assert bal.weights().device.type == "cpu" and bal.ema.device.type == "cpu"
    assert bal.weights().dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host syncs")
@pytest.mark.parametrize("projection", ["clamp", "exact"])
def test_observe_never_syncs_the_host_on_cuda(projection: str) -> None:
    bal = RelativeAdvantage(NAMES, projection=projection).to("cuda")
    recon, counts = torch.tensor([1.0, 2.0, 3.0], device="cuda"), torch.tensor([1, 0, 2], device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(7):
            bal.observe(StepStats(step, {"recon": recon}, counts))
            bal.weights()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert bal.weights().device.type == "cuda" and abs(float(bal.weights().norm()) - 1.0) < 1e-5
