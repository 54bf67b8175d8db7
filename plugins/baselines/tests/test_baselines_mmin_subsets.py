"""``hide_rule: subsets`` (MMIN's own hiding draw, ``mmcore.hiding``) inside real tiny runs: the option
reaches the imputer, changes what it trains on, and a run stopped mid-epoch resumes bit for bit
(the draws come from the checkpointed global RNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mmcore.recipe import load_yaml
from mmcore.testing import check_resume, short_run, tiny_recipe

from imputer_data import one_thread  # noqa: F401  (an autouse fixture: importing it applies it)

IMPUTERS: dict[str, dict[str, Any]] = {
    "baselines.mmin": {"type": "baselines.mmin", "hidden": [8], "blocks": 1},
    "redcore.vib": {"type": "redcore.vib", "hidden": [8], "blocks": 1},
}


def _recipe(tmp_path: Path, name: str, **hiding: object) -> dict[str, Any]:
    return tiny_recipe(tmp_path / "runs", "train.epochs=2", imputer={**IMPUTERS[name], **hiding})


@pytest.mark.parametrize("name", sorted(IMPUTERS))
def test_a_subsets_run_resumes_bit_exactly(tmp_path: Path, name: str) -> None:
    """5 steps an epoch: stopping after 7 stops inside the second epoch, between hiding draws."""
    recipe = _recipe(tmp_path, name, hide_rate=1.0, hide_rule="subsets")
    check = check_resume(recipe, stop_after=7)
    saved = load_yaml(Path(check.straight.run_dir) / "recipe.yaml")["model"]["imputer"]
    assert (saved["hide_rule"], saved["hide_rate"]) == ("subsets", 1.0)


def test_the_rule_changes_what_is_trained(tmp_path: Path) -> None:
    """Same seed and rate, the two rules: different weights, so the option reaches the imputer."""
    weights = {}
    for rule in ("independent", "subsets"):
        run = short_run(_recipe(tmp_path / rule, "baselines.mmin", hide_rate=0.5, hide_rule=rule))
        weights[rule] = load_file(str(Path(run.run_dir) / "checkpoints" / "last" / "model.safetensors"))
    assert weights["independent"].keys() == weights["subsets"].keys()
    assert any(not torch.equal(weights["independent"][k], weights["subsets"][k]) for k in weights["subsets"])


def test_the_default_rule_is_independent(tmp_path: Path) -> None:
    """Recipes that never name the rule resolve to the rule every earlier run trained with."""
    for name in IMPUTERS:
        assert _recipe(tmp_path, name)["model"]["imputer"]["hide_rule"] == "independent"
