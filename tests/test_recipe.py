"""Recipes: YAML loading, command-line overrides, validation and the resolved recipe.

Most tests use a small registry of local factories, so that they pin the recipe machinery and
not the built-in components' options; the last tests run against the real registry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from mmcore.errors import RecipeError
from mmcore.recipe import apply_overrides, check_value, dump_yaml, load_recipe, load_yaml, parse_yaml, validate_recipe
from mmcore.recipe.overrides import FORMS
from mmcore.registry import Registry

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


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def raises(fn: Any, *args: Any, **kwargs: Any) -> list[str]:
    """The problems of the RecipeError that ``fn`` raises."""
    with pytest.raises(RecipeError) as info:
        fn(*args, **kwargs)
    return info.value.problems


# ---------------------------------------------------------------- loading


def test_yaml_12_floats_and_scalars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "lr: 3e-4\nbig: 1e5\nhalf: .5\nneg: -2.5E-3\nwith_dot: 8.0e-4\nn: 3\n"
        "word: on\nzero_led: 012\nday: 2024-05-01\ntime: 1:30\nyes_: true\nnothing: null\n",
    )
    tree = load_yaml(path)
    assert tree["lr"] == 0.0003 and type(tree["lr"]) is float
    assert tree["big"] == 100000.0 and type(tree["big"]) is float
    assert tree["half"] == 0.5 and tree["neg"] == -0.0025 and tree["with_dot"] == 0.0008
    assert tree["n"] == 3 and type(tree["n"]) is int
    # YAML 1.1 oddities are plain values in YAML 1.2
    assert tree["word"] == "on" and tree["zero_led"] == 12 and tree["day"] == "2024-05-01" and tree["time"] == "1:30"
    assert tree["yes_"] is True and tree["nothing"] is None


def test_duplicate_keys_are_reported_with_lines(tmp_path: Path) -> None:
    text = "name: a\ntrain:\n  optimizer:\n    lr: 1e-3\n    lr: 2e-3\nname: b\n"
    path = write(tmp_path, text)
    assert raises(load_yaml, path) == [
        f"{path}:5: duplicate key 'lr' in train.optimizer (first at line 4)",
        f"{path}:6: duplicate key 'name' at the top level (first at line 1)",
    ]


def test_merge_keys_may_reset_values(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {lr: 1, wd: 2}\nopt:\n  <<: *b\n  lr: 3\n")
    assert load_yaml(path)["opt"] == {"lr": 3, "wd": 2}


def test_syntax_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmodel:\n  dim: [1, 2\ntrain: {}\n")
    problems = raises(load_yaml, path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(f"{path}:4: invalid YAML: ")
    assert problems[0].endswith("while parsing a flow sequence started at line 3)")  # points at the open '['


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.getcwd []\n")
    (problem,) = raises(load_yaml, path)
    assert problem.startswith(f"{path}:1: invalid YAML: could not determine a constructor")


def test_missing_file_and_bad_top_level(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert raises(load_yaml, missing) == [f"{missing}: no such recipe file"]
    as_list = write(tmp_path, "- a\n- b\n", "list.yaml")
    assert raises(load_yaml, as_list) == [
        f"{as_list}: a recipe must be a mapping (name: ..., dataset: ..., ...); got a list"
    ]
    empty = write(tmp_path, "# nothing\n", "empty.yaml")
    assert raises(load_yaml, empty)[0].endswith("got an empty file")


def test_dump_quotes_strings_that_look_like_other_types() -> None:
    tree = {"a": "3e-4", "b": "on", "c": "012", "d": 1e-05, "e": [1, 2], "f": {"g": None, "h": True}, "i": ""}
    text = dump_yaml(tree)
    assert parse_yaml(text, "dump") == tree
    assert yaml.safe_load(text) == tree  # a YAML 1.1 reader agrees
    assert "e: [1, 2]\n" in text  # short scalar lists stay on one line


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
        "broken.yaml: train.epocs: unknown key; did you mean 'epochs'? allowed: batch_order, batch_size, "
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
        "name", "seed", "device", "precision", "compile", "output", "dataset", "data", "missing", "model", "balancer",
        "train", "logging",
    ]  # fmt: skip
    assert resolved["logging"] == [{"type": "mmcore.jsonl"}, {"type": "mmcore.console"}]
    assert resolved["dataset"] == {"type": "mmcore.synthetic", "samples": 100, "noise": 1.0, "seed": 0}
    assert resolved["missing"] == {
        "train": {"rates": {}, "sample_rate": None, "min_present": 1, "policy": "fixed"},
        "eval": {"conditions": "all"},
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
        "log_every": 50,
        "task_loss": "auto",
        "max_steps": None,
        "modality_dropout": 0.0,
        "batch_order": "shuffle",
        "dropout_masks": "torch",
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
        {"random": {"rates": {"a": 0.5}, "sample_rate": None, "min_present": 1}, "seed": 3, "name": "random"},
    ]
    tree["missing"] = {
        "train": {"rates": {"a": 0.2}, "sample_rate": 0.5, "policy": "fixed"},
        "eval": {"conditions": []},
    }
    assert raises(validate_recipe, tree, registry, "m.yaml") == [
        "m.yaml: missing.eval.conditions: expected list[str | list[str] | mapping] (non-empty), got list []"
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
