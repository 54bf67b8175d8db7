"""baselines.inverse_rate: weights by hand, normalisation, bad rates, the target group, state."""

from __future__ import annotations

import json

import pytest
import torch

from mmcore.errors import MMCoreError
from mmcore.lossgroups import check_target
from mmcore.types import StepStats
from mmcore_baselines import InverseRate

NAMES = ["a", "b", "c"]


def test_weights_by_hand() -> None:
    # 1/(1 − r) = [1, 2, 4], sum 7; normalised to mean 1: 3·[1, 2, 4]/7
    bal = InverseRate(NAMES, missing_rates={"a": 0.0, "b": 0.5, "c": 0.75})
    assert torch.allclose(bal.weights(), torch.tensor([3 / 7, 6 / 7, 12 / 7]))
    assert bal.weights().mean().item() == pytest.approx(1.0)
    assert bal.target == "recon"
    # the rates of the contract suite: 1/0.9, 1/0.5, 1/0.3 = 1.1111, 2, 3.3333; sum 6.4444
    bal = InverseRate(NAMES, missing_rates={"a": 0.1, "b": 0.5, "c": 0.7})
    assert torch.allclose(bal.weights(), torch.tensor([0.51724138, 0.93103448, 1.55172414]))


def test_equal_rates_are_uniform_and_dict_order_does_not_matter() -> None:
    assert torch.equal(InverseRate(NAMES, {"a": 0.3, "b": 0.3, "c": 0.3}).weights(), torch.ones(3))
    w = InverseRate(["b", "a"], {"a": 0.0, "b": 0.5}).weights()
    assert torch.allclose(w, torch.tensor([4 / 3, 2 / 3]))  # modality order, not the dict's


@pytest.mark.parametrize(
    "rates,message",
    [
        ({"a": 0.1, "b": 1.0, "c": 0.2}, "modality 'b' has missing rate 1.0; it must be in \\[0, 1\\)"),
        ({"a": -0.1, "b": 0.1, "c": 0.2}, "modality 'a' has missing rate -0.1"),
        ({"a": 0.1, "b": 0.2}, r"no missing rate for modalities \['c'\]"),
    ],
)
def test_impossible_rates_are_clear_errors(rates: dict[str, float], message: str) -> None:
    with pytest.raises(MMCoreError, match=f"baselines.inverse_rate: {message}"):
        InverseRate(NAMES, rates)


def test_a_target_group_the_model_lacks_is_an_error_at_the_first_step() -> None:
    """The engine's one check on the first step (``target_required``), against the model's groups."""
    bal = InverseRate(NAMES, {"a": 0.1, "b": 0.5, "c": 0.7})
    with pytest.raises(MMCoreError, match="balancer.target: 'recon' is not a loss group .*available: unimodal"):
        check_target(bal, {"unimodal"}, "mmcore.zero", True, "baselines.inverse_rate")
    check_target(InverseRate(NAMES, {"a": 0.1, "b": 0.5, "c": 0.7}, target="unimodal"), {"unimodal"}, "mmcore.zero", True, "x")


def test_state_round_trip_and_a_changed_rate_is_refused() -> None:
    bal = InverseRate(NAMES, {"a": 0.1, "b": 0.5, "c": 0.7})
    state = json.loads(json.dumps(bal.state_dict()))
    fresh = InverseRate(NAMES, {"a": 0.1, "b": 0.5, "c": 0.7})
    fresh.load_state_dict(state)
    assert torch.equal(fresh.weights(), bal.weights())
    assert torch.equal(bal.log_values()["weight"], bal.weights())
    with pytest.raises(MMCoreError, match="checkpoint was saved with missing rates"):
        InverseRate(NAMES, {"a": 0.1, "b": 0.5, "c": 0.6}).load_state_dict(state)


def test_unit_l2_norm_by_hand() -> None:
    # 1/(1 − r) = [1, 2, 4]; ‖·‖₂ = √21, so w = [1, 2, 4]/√21 — the scale of RedCore's β
    bal = InverseRate(NAMES, {"a": 0.0, "b": 0.5, "c": 0.75}, norm="l2")
    root = 21**0.5
    assert torch.allclose(bal.weights(), torch.tensor([1 / root, 2 / root, 4 / root]))
    assert bal.weights().norm().item() == pytest.approx(1.0)
    # same direction as the default (mean 1), only the length differs
    mean1 = InverseRate(NAMES, {"a": 0.0, "b": 0.5, "c": 0.75}).weights()
    assert torch.allclose(bal.weights() / bal.weights().sum(), mean1 / mean1.sum())
    # equal rates at unit norm are mmcore.uniform at unit norm: 1/√M each
    assert torch.allclose(InverseRate(NAMES, {"a": 0.3, "b": 0.3, "c": 0.3}, norm="l2").weights(), torch.full((3,), 3**-0.5))


def test_total_scales_the_chosen_norm() -> None:
    bal = InverseRate(NAMES, {"a": 0.0, "b": 0.5, "c": 0.75}, norm="mean", total=2.0)
    assert torch.allclose(bal.weights(), torch.tensor([6 / 7, 12 / 7, 24 / 7]))
