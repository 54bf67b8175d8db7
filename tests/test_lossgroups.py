"""First-class loss groups: imputers declare them, validation checks ``balancer.target``, the engine once."""

from __future__ import annotations

import pytest
import torch

import mmcore
from mmcore.errors import MMCoreError, RecipeError
from mmcore.lossgroups import check_target, declared_groups, default_target, target_must_exist, weighs_target
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
    assert recipe["balancer"] == {"type": "mmcore.uniform", "target": "recon", "norm": "mean", "total": 1.0}
    assert not weighs_target(mmcore.Balancer) and weighs_target(Halving)


def test_uniform_aimed_at_a_misnamed_group_is_a_validation_error(tmp_path):
    # a target other than the default was chosen, so it must exist even for a balancer that
    # does not declare target_required (uniform would otherwise silently weigh nothing)
    with pytest.raises(RecipeError) as info:
        tiny_recipe(tmp_path, imputer={"type": "redcore.vib"}, balancer={"type": "mmcore.uniform", "target": "recn"})
    message = str(info.value)
    assert "balancer.target: 'recn' is not a loss group" in message
    assert "mmcore.uniform would weigh nothing" in message
    assert "set balancer.target=recon" in message
    recipe = tiny_recipe(tmp_path, imputer={"type": "redcore.vib"}, balancer={"type": "mmcore.uniform", "target": "kl"})
    assert recipe["balancer"]["target"] == "kl"


def test_target_must_exist_rule():
    from mmcore.builtins.balancers import Uniform

    assert default_target(Uniform) == "recon" and default_target(Uniform(["a"])) == "recon"
    assert not target_must_exist(Uniform, "recon")  # the default: a no-op where the group is absent
    assert target_must_exist(Uniform, "recn") and target_must_exist(Halving, "recon")


def test_engine_flags_a_chosen_missing_target_of_an_undeclared_balancer():
    from mmcore.builtins.balancers import Uniform

    with pytest.raises(MMCoreError, match="'unimodal' is not a loss group.*would weigh nothing"):
        check_target(Uniform(["a", "b"], target="unimodal"), {}, "mmcore.zero", False, "mmcore.uniform")
    check_target(Uniform(["a", "b"]), {}, "mmcore.zero", False, "mmcore.uniform")  # default target: fine


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
