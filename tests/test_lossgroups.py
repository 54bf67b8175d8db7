"""First-class loss groups: imputers declare them, validation checks ``balancer.target``, the engine once."""

from __future__ import annotations

import pytest
import torch

import mmcore
from mmcore.errors import MMCoreError, RecipeError
from mmcore.lossgroups import check_target, declared_groups, weighs_target
from mmcore.testing import short_run, tiny_recipe


def test_declared_groups_of_the_shipped_imputers():
    from mmcore.builtins.imputers import ZeroImputer
    from mmcore_baselines.mmin import MMINImputer
    from mmcore_redcore.imputer import VIBImputer

    assert declared_groups(ZeroImputer, {}) == frozenset()
    assert declared_groups(VIBImputer, {}) == {"kl", "recon"}
    assert declared_groups(MMINImputer, {"cycle_weight": 2.0}) == {"recon", "cycle"}
    assert declared_groups(MMINImputer, {"cycle_weight": 0.0}) == {"recon"}
    assert declared_groups(object, {}) is None  # undeclared: the first step checks


def test_validation_lists_groups_and_the_target_to_use_after_an_imputer_swap(tmp_path):
    with pytest.raises(RecipeError) as info:
        tiny_recipe(tmp_path, "model.imputer=baselines.mean", balancer={"type": "redcore.relative_advantage"})
    message = str(info.value)
    assert "balancer.target: 'recon' is not a loss group" in message
    assert "imputer 'baselines.mean' + unimodal heads" in message
    assert "available: unimodal; set balancer.target=unimodal" in message


def test_validation_suggests_the_close_group_for_a_typo(tmp_path):
    with pytest.raises(RecipeError, match=r"available: kl, recon, unimodal; set balancer.target=recon \(or kl, unimodal\)"):
        tiny_recipe(tmp_path, "balancer.target=recn", imputer={"type": "redcore.vib"}, balancer={"type": "redcore.relative_advantage"})


def test_uniform_default_target_is_fine_without_the_group(tmp_path):
    recipe = tiny_recipe(tmp_path)  # mmcore.zero (no groups) with mmcore.uniform's default target 'recon'
    assert recipe["balancer"] == {"type": "mmcore.uniform", "target": "recon"}
    assert not weighs_target(mmcore.Balancer) and weighs_target(Halving)


class Halving(mmcore.Balancer):
    target_required = True
    def weights(self) -> torch.Tensor:
        return torch.full((len(self.modalities),), 0.5)


def test_engine_checks_once_against_the_returned_groups():
    bal = Halving(["a", "b"], target="cycle")
    with pytest.raises(MMCoreError, match="'cycle' is not a loss group.*available: recon, unimodal; set balancer.target=recon"):
        check_target(bal, {"recon": None, "unimodal": None}, "x.imp", True, "x.halving")
    check_target(bal, {"cycle": None}, "x.imp", False, "x.halving")  # present: no error


def test_undeclared_imputer_fails_at_step_zero_with_the_same_line(tmp_path, monkeypatch):
    from mmcore.builtins.imputers import ZeroImputer

    monkeypatch.delattr(ZeroImputer, "loss_groups")  # as a third-party imputer that declares nothing
    recipe = tiny_recipe(tmp_path, "model.unimodal_heads=false", balancer={"type": "baselines.inverse_rate", "target": "recon"})
    with pytest.raises(MMCoreError, match="'recon' is not a loss group.*available: none"):
        short_run(recipe, max_steps=1)
