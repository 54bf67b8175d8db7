"""A tiny resolved recipe for engine-level tests of a plugin's components.

Plugins test their components inside the real training loop (resume equivalence, logging,
a node swap); this gives them the core's tiny configuration — synthetic data, 3 modalities,
a few steps an epoch — with their own nodes and overrides on top, instead of a copied dict.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

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
"""280 training samples at batch 64: 5 steps an epoch, 15 in a run."""


def tiny_recipe(output: str | Path, *overrides: str, **nodes: Any) -> dict[str, Any]:
    """The tiny recipe, resolved: ``nodes`` replace top-level keys or ``model`` keys
    (``imputer={...}``, ``balancer={...}``), then ``overrides`` apply (``"train.epochs=2"``).
    Runs write under ``output``."""
    tree = copy.deepcopy(TINY)
    tree["output"] = str(output)
    for key, value in nodes.items():
        (tree["model"] if key in ("dim", "encoders", "imputer", "fusion", "unimodal_heads") else tree)[key] = value
    return validate_recipe(apply_overrides(tree, list(overrides)), get_registry(), "tiny recipe")
