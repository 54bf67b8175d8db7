"""Command-line overrides: ``a.b=v`` parsed with the recipe's value rules, ``+a.b=v``, ``~a.b``,
swapping a component node by name, and every malformed override reported at once."""

from __future__ import annotations

from typing import Any

from mmcore.recipe import apply_overrides
from mmcore.recipe.overrides import FORMS
from recipe_helpers import raises


# ---------------------------------------------------------------- overrides


BASE: dict[str, Any] = {
    "name": "x",
    "train": {"epochs": 3, "optimizer": {"type": "adam", "lr": 0.001}, "grad_clip": 1.0},
    "balancer": {"type": "redcore.relative_advantage", "rho": 0.5},
    "model": {"fusion": {"type": "mmcore.concat", "layers": [128, 128]}},
    "seed": 0,
}


def test_set_parses_values_with_recipe_rules() -> None:
    out = apply_overrides(
        BASE,
        [
            "train.optimizer.lr=3e-4",
            "train.epochs=7",
            "model.fusion.layers=[128, 64]",
            "train.grad_clip=null",
            "name='3'",
            "model.dim = 64",
            "model.extra={a: 1, b: [x]}",
        ],
    )
    assert out["train"]["optimizer"]["lr"] == 0.0003 and type(out["train"]["optimizer"]["lr"]) is float
    assert out["train"]["epochs"] == 7
    assert out["model"]["fusion"]["layers"] == [128, 64]
    assert out["train"]["grad_clip"] is None
    assert out["name"] == "3"
    assert out["model"]["dim"] == 64
    assert out["model"]["extra"] == {"a": 1, "b": ["x"]}
    assert BASE["train"]["optimizer"]["lr"] == 0.001  # the input tree is untouched


def test_set_creates_missing_keys_and_list_items() -> None:
    out = apply_overrides(BASE, ["missing.train.rates.a=0.5", "model.fusion.layers.1=32"])
    assert out["missing"] == {"train": {"rates": {"a": 0.5}}}
    assert out["model"]["fusion"]["layers"] == [128, 32]


def test_add_and_add_existing() -> None:
    out = apply_overrides(BASE, ["+model.unimodal_heads=true"])
    assert out["model"]["unimodal_heads"] is True
    assert raises(apply_overrides, BASE, ["+train.epochs=5"]) == [
        "command line: override '+train.epochs=5': train.epochs already exists (value int 3); "
        "set it with train.epochs=..."
    ]


def test_delete_and_delete_missing() -> None:
    out = apply_overrides(BASE, ["~train.grad_clip"])
    assert "grad_clip" not in out["train"] and out["train"]["epochs"] == 3
    assert raises(apply_overrides, BASE, ["~train.grad_clp"]) == [
        "command line: override '~train.grad_clp': train.grad_clp does not exist, nothing to delete; "
        "did you mean 'grad_clip'?"
    ]


def test_string_over_a_component_node_swaps_it() -> None:
    out = apply_overrides(BASE, ["balancer=mmcore.uniform"])
    assert out["balancer"] == {"type": "mmcore.uniform"}  # rho belonged to the other balancer
    kept = apply_overrides(BASE, ["balancer.type=test.open"])
    assert kept["balancer"] == {"type": "test.open", "rho": 0.5}
    whole = apply_overrides(BASE, ["balancer={type: test.strict, alpha: 2}"])
    assert whole["balancer"] == {"type": "test.strict", "alpha": 2}


def test_malformed_overrides_are_all_reported() -> None:
    bad = ["train.epochs", "=3", "~seed=1", "train..epochs=1", "a b=1", "seed.x=1", "name=[1, 2"]
    problems = raises(apply_overrides, BASE, bad)
    assert problems[:5] == [
        f"command line: override 'train.epochs': has no '='; {FORMS}",
        f"command line: override '=3': '' is not a dotted key path like train.optimizer.lr; {FORMS}",
        f"command line: override '~seed=1': a delete takes no value; {FORMS}",
        "command line: override 'train..epochs=1': 'train..epochs' is not a dotted key path like "
        f"train.optimizer.lr; {FORMS}",
        f"command line: override 'a b=1': 'a b' is not a dotted key path like train.optimizer.lr; {FORMS}",
    ]
    assert problems[5] == "command line: override 'seed.x=1': cannot set 'x' under seed: seed is int 0, not a mapping"
    assert problems[6].startswith("command line: override 'name=[1, 2': the value is not valid YAML: ")
    assert len(problems) == 7
