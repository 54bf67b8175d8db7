"""Recipe validation and the resolved recipe (YAML loading: test_recipe_yaml.py; overrides:
test_recipe_overrides.py).

Most tests use a small registry of local factories, so that they pin the recipe machinery and
not the built-in components' options; the last tests run against the real registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from mmcore.recipe import check_value, dump_yaml, load_recipe, parse_yaml, validate_recipe
from mmcore.registry import Registry
from recipe_helpers import raises, write

# ---------------------------------------------------------------- a tiny registry


def toy_dataset(samples: int = 100, noise: float = 1.0, seed: int = 0) -> None:
    """A dataset factory whose options are plain numbers."""


def toy_mlp(spec: Any = None, dim: int = 8, layers: list[int] = [256], dropout: float = 0.0) -> None:  # noqa: B006
    """An encoder: ``spec`` and ``dim`` are injected by the framework."""


def toy_zero(specs: Any = None, dim: int = 8) -> None:
    """An imputer without options."""


def toy_vib(specs: Any = None, dim: int = 8, kl_weight: float = 1, mode: Literal["a", "b"] = "a") -> None:
    """An imputer with an int default on a float option (written 1.0)."""


def toy_concat(specs: Any = None, dim: int = 8, out_dim: int = 2, layers: tuple[int, ...] = (128, 128)) -> None:
    """A fusion head with a tuple default (written as a list)."""


def toy_uniform(modalities: Any = None, target: str = "recon") -> None:
    """The default balancer."""


def toy_advantage(modalities: Any = None, rho: float = 0.7, target: str = "recon") -> None:
    """A balancer with its own options."""


def toy_strict(modalities: Any = None, *, alpha: float, target: str = "recon") -> None:
    """A balancer with a required option."""


def toy_open(modalities: Any = None, target: str = "recon", **extra: Any) -> None:
    """A balancer that takes any keyword."""


def toy_logger() -> None:
    """A logger with no options."""


@pytest.fixture()
def registry() -> Registry:
    reg = Registry()
    for kind, name, factory in [
        ("dataset", "mmcore.synthetic", toy_dataset),
        ("encoder", "mmcore.mlp", toy_mlp),
        ("imputer", "mmcore.zero", toy_zero),
        ("imputer", "redcore.vib", toy_vib),
        ("fusion", "mmcore.concat", toy_concat),
        ("balancer", "mmcore.uniform", toy_uniform),
        ("balancer", "redcore.relative_advantage", toy_advantage),
        ("balancer", "test.strict", toy_strict),
        ("balancer", "test.open", toy_open),
        ("logger", "mmcore.jsonl", toy_logger),
        ("logger", "mmcore.console", toy_logger),
    ]:
        reg.register(kind, name, factory, origin="test")
    return reg


# ---------------------------------------------------------------- check_value


@pytest.mark.parametrize(
    ("value", "annotation", "problems"),
    [
        (3, int, []),
        (True, int, ["x: expected int, got bool true"]),
        (3, float, []),
        ("3", float, ["x: expected float, got str '3'"]),
        (None, int | None, []),
        (2.5, int | str, ["x: expected int | str, got float 2.5"]),
        ("b", Literal["a", "b"], []),
        ("c", Literal["a", "b"], ["x: expected 'a' | 'b', got str 'c'"]),
        ([1, "a", 3], list[int], ["x.1: expected int, got str 'a'"]),
        ([1, "a"], tuple[int, str], []),
        ([1], tuple[int, str], ["x: expected [int, str], got list [1]"]),
        ({"a": 1, "b": "no"}, dict[str, float], ["x.b: expected float, got str 'no'"]),
        ({1: 0.5}, dict[str, float], ["x.1: key must be str, got int 1"]),
        ([1, "a"], list[int] | None, ["x.1: expected int, got str 'a'"]),
        ({"any": object}, Any, []),
        (None, None, []),
        (0, None, ["x: expected null, got int 0"]),
    ],
)
def test_check_value(value: Any, annotation: Any, problems: list[str]) -> None:
    assert check_value(value, annotation, "x") == problems


# ---------------------------------------------------------------- validation


def test_broken_recipe_reports_every_problem_at_once(registry: Registry) -> None:
    tree = {
        "name": "broken",
        "dataset": {"type": "mmcore.synthetic"},
        "model": {"imputer": {"type": "mmcore.zer"}},
        "train": {"epocs": 3, "batch_size": "big"},
    }
    assert raises(validate_recipe, tree, registry, "broken.yaml") == [
        "broken.yaml: model.imputer.type: unknown imputer 'mmcore.zer'; did you mean 'mmcore.zero'? "
        "available: mmcore.zero, redcore.vib",
        "broken.yaml: train.epocs: unknown key; did you mean 'epochs'? allowed: absent_rows, batch_order, batch_size, "
        "dropout_masks, epochs, eval_batch_size, grad_clip, log_every, max_steps, modality_dropout, optimizer, schedule, select, task_loss",
        "broken.yaml: train.batch_size: expected int >= 1, got str 'big'",
    ]


def test_ranges_choices_and_component_options(registry: Registry) -> None:
    tree = {
        "name": "r",
        "dataset": {"type": "mmcore.synthetic", "samples": 1.5, "nosie": 1},
        "missing": {"train": {"rates": {"a": 1.5}}},
        "model": {
            "dim": 0,
            "encoders": {"a": {"type": "mmcore.mlp", "dim": 4}},
            "imputer": {"type": "redcore.vib", "mode": "c"},
        },
        "train": {"epochs": True, "optimizer": {"type": "adamm"}, "select": "test.acc"},
        "balancer": {"type": "test.strict"},
        "precision": "fp16",
    }
    assert raises(validate_recipe, tree, registry, "r.yaml") == [
        "r.yaml: dataset.samples: expected int, got float 1.5",
        "r.yaml: dataset.nosie: unknown option of mmcore.synthetic; did you mean 'noise'? "
        "allowed: noise, samples, seed",
        "r.yaml: missing.train.rates.a: expected float in [0, 1], got float 1.5",
        "r.yaml: model.dim: expected int >= 1, got int 0",
        "r.yaml: model.encoders.a.dim: set by the framework, not an option of mmcore.mlp; allowed: dropout, layers",
        "r.yaml: model.imputer.mode: expected 'a' | 'b', got str 'c'",
        "r.yaml: train.epochs: expected int >= 1, got bool true",
        "r.yaml: train.optimizer.type: expected 'adam' | 'adamw' | 'sgd', got str 'adamm'; did you mean 'adam'?",
        "r.yaml: train.select: expected str starting with 'val.', got str 'test.acc'",
        "r.yaml: balancer.alpha: missing required option of test.strict; expected float",
        "r.yaml: precision: expected 'fp32' | 'bf16', got str 'fp16'; did you mean 'bf16'?",  # in the file's order
    ]


def test_required_keys(registry: Registry) -> None:
    assert raises(validate_recipe, {"seed": 1}, registry, "r.yaml") == [
        "r.yaml: name: missing required key; expected str (a directory name: 1 to 255 characters, no '/', '\\' or control characters)",
        "r.yaml: dataset: missing required key; expected a dataset node {type: NAME, ...options}; "
        "available: mmcore.synthetic",
    ]
    assert raises(validate_recipe, {"name": "a/b", "dataset": {"samples": 3}}, registry, "r.yaml") == [
        "r.yaml: name: expected str (a directory name: 1 to 255 characters, no '/', '\\' or control characters), got str 'a/b'",
        "r.yaml: dataset.type: missing required key; expected the name of a registered dataset; "
        "available: mmcore.synthetic",
    ]
    assert raises(validate_recipe, ["name"], registry, "r.yaml") == [
        "r.yaml: a recipe must be a mapping (name: ..., dataset: ..., ...)"
    ]


def test_defaults_are_filled_in(registry: Registry) -> None:
    resolved = validate_recipe({"name": "d", "dataset": "mmcore.synthetic"}, registry, "d.yaml")
    assert list(resolved) == [
        "name", "seed", "device", "precision", "compile", "rank_timeout", "output", "dataset", "data", "missing", "model",
        "balancer", "train", "logging",
    ]  # fmt: skip
    assert resolved["rank_timeout"] == 600  # seconds a rank waits for the others (mmcore.engine.ddp)
    assert resolved["logging"] == [{"type": "mmcore.jsonl"}, {"type": "mmcore.console"}]
    assert resolved["dataset"] == {"type": "mmcore.synthetic", "samples": 100, "noise": 1.0, "seed": 0}
    assert resolved["missing"] == {
        "train": {
            "rates": {}, "sample_rate": None, "min_present": 1, "mechanism": "mcar", "depends_on": None,
            "strength": 2.0, "policy": "fixed",
        },
        "eval": {"conditions": "all"},
        "frames": {"rate": 0.0, "segment": 1, "eval_rate": None, "seed": 0, "modalities": None},
    }
    assert resolved["model"] == {
        "dim": 128,
        "encoders": {"default": {"type": "mmcore.mlp", "layers": [256], "dropout": 0.0}},
        "imputer": {"type": "mmcore.zero"},
        "fusion": {"type": "mmcore.concat", "layers": [128, 128]},
        "unimodal_heads": False,
        "init": "default",
    }
    assert resolved["balancer"] == {"type": "mmcore.uniform", "target": "recon"}
    assert resolved["train"] == {
        "epochs": 10,
        "batch_size": 128,
        "eval_batch_size": 1024,
        "optimizer": {
            "type": "adam", "lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "momentum": 0.9,
            "implementation": "foreach",
        },
        "schedule": {"type": "constant", "constant_epochs": 0, "warmup_epochs": 0},
        "grad_clip": None,
        "select": "val.macro_f1",
        "log_every": None,
        "task_loss": "auto",
        "max_steps": None,
        "modality_dropout": 0.0,
        "batch_order": "shuffle",
        "dropout_masks": "auto",
        "absent_rows": "skip",
    }
    top = {k: resolved[k] for k in ("seed", "device", "precision", "compile", "output")}
    assert top == {"seed": 0, "device": "auto", "precision": "fp32", "compile": False, "output": "runs"}
    # an int given for a float (and an int default on a float option) is written as a float
    vib = validate_recipe({"name": "v", "dataset": "mmcore.synthetic", "model": {"imputer": "redcore.vib"},
                           "train": {"optimizer": {"lr": 1}}}, registry, "v.yaml")  # fmt: skip
    assert vib["model"]["imputer"] == {"type": "redcore.vib", "kl_weight": 1.0, "mode": "a"}
    assert type(vib["model"]["imputer"]["kl_weight"]) is float and type(vib["train"]["optimizer"]["lr"]) is float


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        (False, False),
        (True, {"layers": [128, 128], "dropout": 0.0, "weight": 1.0}),
        ({"weight": 2}, {"layers": [128, 128], "dropout": 0.0, "weight": 2.0}),
    ],
)
def test_unimodal_heads_resolution(registry: Registry, given: Any, resolved: Any) -> None:
    tree = {"name": "u", "dataset": "mmcore.synthetic", "model": {"unimodal_heads": given}}
    assert validate_recipe(tree, registry, "u.yaml")["model"]["unimodal_heads"] == resolved


def test_unimodal_heads_errors(registry: Registry) -> None:
    def problems(heads: Any) -> list[str]:
        tree = {"name": "u", "dataset": "mmcore.synthetic", "model": {"unimodal_heads": heads}}
        return raises(validate_recipe, tree, registry, "u.yaml")

    assert problems("yes") == ["u.yaml: model.unimodal_heads: expected bool | mapping, got str 'yes'"]
    assert problems({"dropout": 1.0, "layer": [3]}) == [
        "u.yaml: model.unimodal_heads.dropout: expected float in [0, 1), got float 1.0",
        "u.yaml: model.unimodal_heads.layer: unknown key; did you mean 'layers'? allowed: dropout, layers, weight",
    ]


def test_component_nodes_shorthand_and_open_factories(registry: Registry) -> None:
    tree = {"name": "n", "dataset": "mmcore.synthetic", "balancer": {"type": "test.open", "anything": [1, 2]}}
    open_node = validate_recipe(tree, registry, "n.yaml")["balancer"]
    assert open_node == {"type": "test.open", "target": "recon", "anything": [1, 2]}  # **extra takes any key
    tree["balancer"] = "os.system"  # names are looked up in the registry, never imported
    assert raises(validate_recipe, tree, registry, "n.yaml") == [
        "n.yaml: balancer.type: unknown balancer 'os.system'; available: mmcore.uniform, redcore.relative_advantage, "
        "test.open, test.strict"
    ]
    tree["balancer"] = 3
    assert raises(validate_recipe, tree, registry, "n.yaml") == [
        "n.yaml: balancer: expected a balancer node (a registered name or a mapping with 'type'), got int 3"
    ]


def test_missing_section_shapes(registry: Registry) -> None:
    conditions = ["a+v", ["a", "v"], {"random": {"rates": {"a": 0.5}}, "seed": 3}]
    tree = {"name": "m", "dataset": "mmcore.synthetic", "missing": {"eval": {"conditions": conditions}}}
    assert validate_recipe(tree, registry, "m.yaml")["missing"]["eval"]["conditions"] == [
        "a+v",
        ["a", "v"],
        {
            "random": {"rates": {"a": 0.5}, "sample_rate": None, "min_present": 1, "mechanism": "mcar", "depends_on": None, "strength": 2.0},
            "seed": 3, "name": "random",
        },
    ]
    tree["missing"] = {
        "train": {"rates": {"a": 0.2}, "sample_rate": 0.5, "policy": "fixed"},
        "eval": {"conditions": []},
    }
    assert raises(validate_recipe, tree, registry, "m.yaml") == [  # both, in one pass
        "m.yaml: missing.eval.conditions: expected list[str | list[str] | mapping] (non-empty), got list []",
        "m.yaml: missing.train: give per-modality 'rates' or one 'sample_rate', not both; expected one of them",
    ]
    tree["missing"]["eval"] = {"conditions": "all"}
    assert raises(validate_recipe, tree, registry, "m.yaml") == [
        "m.yaml: missing.train: give per-modality 'rates' or one 'sample_rate', not both; expected one of them"
    ]


def test_resolved_recipe_round_trips(tmp_path: Path, registry: Registry) -> None:
    path = write(
        tmp_path,
        "name: rt\ndataset: {type: mmcore.synthetic, noise: 2}\n"
        "model: {imputer: {type: redcore.vib, kl_weight: 8.0e-4}, unimodal_heads: true}\n"
        "balancer: redcore.relative_advantage\ntrain: {optimizer: {lr: 3e-4}, grad_clip: 5}\n",
    )
    overrides = ["train.epochs=2", "missing.eval.conditions=[a, [a, b]]", "model.fusion=mmcore.concat"]
    resolved = load_recipe(path, overrides, registry)
    again_path = write(tmp_path, dump_yaml(resolved), "resolved.yaml")
    again = load_recipe(again_path, [], registry)
    assert json.dumps(again) == json.dumps(resolved)  # equal, key order and int/float types included
    assert resolved["train"]["optimizer"]["lr"] == 0.0003 and resolved["train"]["epochs"] == 2
    assert resolved["balancer"] == {"type": "redcore.relative_advantage", "rho": 0.7, "target": "recon"}
    assert resolved["model"]["fusion"] == {"type": "mmcore.concat", "layers": [128, 128]}  # a node the file left out


def test_load_recipe_names_the_file_and_the_override(tmp_path: Path, registry: Registry) -> None:
    path = write(tmp_path, "name: o\ndataset: {type: mmcore.synthetic}\nbalancer: {type: test.strict, alpha: 1}\n")
    swapped = load_recipe(path, ["balancer=mmcore.uniform"], registry)
    assert swapped["balancer"] == {"type": "mmcore.uniform", "target": "recon"}
    assert raises(load_recipe, path, ["train.batch_size=big"], registry) == [
        f"{path}: train.batch_size: expected int >= 1, got str 'big'"
    ]
    assert raises(load_recipe, path, ["~seed"], registry) == [
        "command line: override '~seed': seed does not exist, nothing to delete"
    ]


# ---------------------------------------------------------------- the real registry


def test_real_registry_builtins() -> None:
    from mmcore.plugins import get_registry

    real = get_registry()
    resolved = validate_recipe({"name": "real", "dataset": {"type": "mmcore.synthetic"}}, real, "real.yaml")
    for node, kind in [
        (resolved["dataset"], "dataset"),
        (resolved["model"]["encoders"]["default"], "encoder"),
        (resolved["model"]["imputer"], "imputer"),
        (resolved["model"]["fusion"], "fusion"),
        (resolved["balancer"], "balancer"),
    ]:
        options = real.get(kind, node["type"]).options()
        assert list(node) == ["type", *[o.name for o in options]]  # every option written out, in order
    assert validate_recipe(parse_yaml(dump_yaml(resolved), "real.yaml"), real, "real.yaml") == resolved
    broken = {"name": "real", "dataset": "mmcore.synthetic", "model": {"imputer": "mmcore.zer"}}
    (problem,) = raises(validate_recipe, broken, real, "broken.yaml")
    assert problem.startswith(
        "broken.yaml: model.imputer.type: unknown imputer 'mmcore.zer'; did you mean 'mmcore.zero'? available: "
    )
    assert "mmcore.zero" in problem.split("available: ")[1].split(", ")
