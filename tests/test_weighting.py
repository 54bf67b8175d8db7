"""mmcore.weighting and mmcore.uniform's norm/total: scales by hand, bad input, the recipe path."""

from __future__ import annotations

import math

import pytest
import torch

from mmcore.builtins.balancers import Uniform
from mmcore.errors import MMCoreError
from mmcore.weighting import scale_weights


def test_scale_by_hand() -> None:
    assert scale_weights([1.0, 1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0, 1.0]
    assert scale_weights([1.0, 1.0, 1.0, 1.0], "l2") == [0.5, 0.5, 0.5, 0.5]  # 1/√4
    assert scale_weights([3.0, 4.0], "l2", 10.0) == pytest.approx([6.0, 8.0])  # ‖(3,4)‖ = 5
    assert scale_weights([1.0, 3.0], "mean", 4.0) == pytest.approx([2.0, 6.0])  # mean 2 -> 4


@pytest.mark.parametrize(
    "values,norm,total,message",
    [
        ([0.0, 0.0], "mean", 1.0, "all zero"),
        ([1.0, -1.0], "mean", 1.0, "non-negative"),
        ([1.0], "l2", 0.0, "total must be a positive"),
        ([1.0], "l1", 1.0, "norm must be one of mean, l2"),
    ],
)
def test_bad_input_is_a_clear_error(values: list[float], norm: str, total: float, message: str) -> None:
    with pytest.raises(MMCoreError, match=message):
        scale_weights(values, norm, total)  # type: ignore[arg-type]


def test_uniform_default_is_all_ones_and_logs_nothing() -> None:
    bal = Uniform(["a", "b", "c"])
    assert torch.equal(bal.weights(), torch.ones(3))
    assert bal.log_values() == {} and bal.state_dict() == {}


def test_uniform_at_unit_l2_norm_is_constant_beta() -> None:
    bal = Uniform(["a", "b", "c", "d", "e", "f"], norm="l2")
    assert torch.allclose(bal.weights(), torch.full((6,), 1 / math.sqrt(6)))
    assert bal.weights().norm().item() == pytest.approx(1.0)
    assert torch.equal(bal.log_values()["weight"], bal.weights())


def test_options_reach_the_balancer_through_a_recipe(tmp_path) -> None:
    from mmcore.testing import short_run, tiny_recipe

    recipe = tiny_recipe(tmp_path, balancer={"type": "mmcore.uniform", "target": "unimodal", "norm": "l2", "total": 1.0})
    result = short_run(recipe)
    lines = (result.run_dir / "metrics.jsonl").read_text()
    assert '"weight.' in lines
