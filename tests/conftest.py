"""Shared fixtures: a tiny resolved recipe that trains in about a second on the CPU."""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from mmcore.plugins import get_registry
from mmcore.recipe import apply_overrides, validate_recipe

TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 400, "dim": 8},
    "missing": {"train": {"rates": {"m0": 0.3, "m1": 0.3, "m2": 0.3}}, "eval": {"conditions": "all"}},
    "model": {
        "dim": 16,
        "encoders": {"default": {"type": "mmcore.mlp", "layers": [32], "dropout": 0.1}},
        "fusion": {"type": "mmcore.concat", "layers": [32], "dropout": 0.2},
        "unimodal_heads": {"layers": [16]},
    },
    "train": {"epochs": 3, "batch_size": 64, "optimizer": {"type": "adam", "lr": 3e-3}, "log_every": 2},
}


@pytest.fixture
def make_recipe(tmp_path) -> Callable[..., dict[str, Any]]:
    """``make_recipe("train.epochs=2", ...)``: the tiny recipe with overrides, resolved, writing under tmp_path."""

    def make(*overrides: str) -> dict[str, Any]:
        tree = copy.deepcopy(TINY)
        tree["output"] = str(tmp_path / "runs")
        tree = apply_overrides(tree, list(overrides))
        return validate_recipe(tree, get_registry(), "tiny")

    return make
