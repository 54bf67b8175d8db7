"""The baselines inside real (tiny) runs: the rates the engine injects, exact resume with the
RNG-using components, the mean buffer in the checkpoint, and the OGM-GE error without heads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcore.engine.build import build_balancer, train_missing_spec
from mmcore.recipe.plan import plan_of
from mmcore.errors import MMCoreError
from mmcore.plugins import get_registry
from mmcore.testing import check_resume, tiny_recipe

# The core's tiny recipe (mmcore.testing.tiny_recipe) with 300 samples (4 steps an epoch), MMIN
# and OGM-GE, and imbalanced rates.
NODES: dict[str, Any] = {
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 300, "dim": 8},
    "missing": {"train": {"rates": {"m0": 0.2, "m1": 0.5, "m2": 0.6}}, "eval": {"conditions": "all"}},
    "dim": 8,
    "encoders": {"default": {"type": "mmcore.mlp", "layers": [16]}},
    "imputer": {"type": "baselines.mmin", "hidden": [8], "blocks": 2},
    "fusion": {"type": "mmcore.concat", "layers": [16]},
    "unimodal_heads": {"layers": [8]},
    "balancer": {"type": "baselines.ogm_ge", "alpha": 0.5},
}


def recipe(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    return tiny_recipe(tmp_path / "runs", "train.epochs=2", *overrides, **NODES)


def test_inverse_rate_gets_the_training_rates_from_the_recipe(tmp_path: Path) -> None:
    r = recipe(tmp_path, "balancer=baselines.inverse_rate")
    names = ["m0", "m1", "m2"]
    bal = build_balancer(r["balancer"], names, train_missing_spec(plan_of(r), names), get_registry())
    # with min_present 1 the realised rates are a little below the nominal ones; weights follow them
    rates = dict(zip(names, bal.rates))
    inverse = torch.tensor([1 / (1 - rates[m]) for m in names])
    assert torch.allclose(bal.weights(), 3 * inverse / inverse.sum())
    assert bal.weights()[0] < bal.weights()[1] < bal.weights()[2]  # the most-missing modality weighs most


# mmin hides modalities and OGM-GE adds noise, both from the global RNG; the mean imputer keeps a buffer.
@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("model.imputer=baselines.mean", "balancer=baselines.inverse_rate", "+balancer.target=unimodal"),
        ("model.imputer=baselines.missing_token", "balancer.ge=false", "balancer.end_step=4"),
    ],
    ids=["mmin+ogm_ge", "mean+inverse_rate", "missing_token+ogm"],
)
def test_resume_equals_straight_run(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    r = recipe(tmp_path, *overrides)
    check = check_resume(r, stop_after=3)  # mid-epoch (5 steps an epoch)
    a, logged = check.weights, json.loads(check.lines[0])
    if not overrides:
        assert {"recon.m0", "cycle.m2", "ogm_coef.m1", "ogm_ratio.m2"} <= set(logged)
    if "model.imputer=baselines.mean" in overrides:
        assert {"weight.m0", "weight.m2"} <= set(logged)
        mean = a["imputer.mean"]
        assert mean.shape == (3, 8) and bool((mean != 0).all()) and a["imputer.seen"].min() > 0


def test_ogm_ge_without_unimodal_heads_is_rejected_at_validation(tmp_path: Path) -> None:
    # validation now says it (mmcore.recipe.crosschecks), before anything is built
    with pytest.raises(MMCoreError, match="reads the unimodal heads' confidences; set model.unimodal_heads"):
        recipe(tmp_path, "model.unimodal_heads=false")
