"""Cross-field checks at validation: output folder, selection metric, and the checks that use a
dataset's ``describe`` (modalities, task) without loading it; no ``describe``, no such checks."""

from __future__ import annotations

from pathlib import Path

import pytest

import mmcore

from mmcore.errors import RecipeError
from mmcore.plugins import get_registry
from mmcore.recipe import validate_recipe
from mmcore.recipe.crosschecks import output_problems
from mmcore.registry import Registry
from mmcore.types import ModalitySpec, TaskSpec


class Described:
    """A dataset that can say what it holds from its options alone."""

    calls = 0

    def __init__(self, views: int = 3, regression: bool = False) -> None:
        raise AssertionError("validate must not build the dataset")

    @classmethod
    def describe(cls, views: int = 3, regression: bool = False) -> tuple[list[ModalitySpec], TaskSpec]:
        cls.calls += 1
        task = TaskSpec("regression") if regression else TaskSpec("classification", 3)
        return [ModalitySpec(f"v{i}", 4) for i in range(views)], task


class Broken(Described):
    @classmethod
    def describe(cls, views: int = 3, regression: bool = False) -> tuple[list[ModalitySpec], TaskSpec]:
        raise FileNotFoundError("no files yet")


class Legacy(mmcore.Balancer):
    """Written before ``needs``: it overrides ``observe`` and so still gets confidences when they exist."""

    def observe(self, stats) -> None:
        pass


class Reads(mmcore.Balancer):
    needs = frozenset({"unimodal_confidence"})


class Silent:
    def __init__(self, views: int = 3, regression: bool = False) -> None:
        raise AssertionError("validate must not build the dataset")


@pytest.fixture(scope="module")
def registry() -> Registry:
    out = Registry()
    for c in get_registry().all():
        out.register(c.kind, c.name, c.factory, origin=c.origin, description=c.description)
    for name, factory in (("described", Described), ("broken", Broken), ("silent", Silent)):
        out.register("dataset", f"test.{name}", factory, origin="test")
    out.register("balancer", "test.legacy", Legacy, origin="test")
    out.register("balancer", "test.reads", Reads, origin="test")
    return out


def _problems(registry: Registry, tmp_path: Path, dataset: str | dict = "test.described", **sections) -> list[str]:
    node = dataset if isinstance(dataset, dict) else {"type": dataset}
    tree = {"name": "x", "output": str(tmp_path / "runs"), "dataset": node, **sections}
    try:
        validate_recipe(tree, registry, "r.yaml")
    except RecipeError as error:
        return error.problems
    return []


def test_a_good_recipe_passes_without_building_the_dataset(registry, tmp_path):
    before = Described.calls
    assert _problems(registry, tmp_path, missing={"train": {"rates": {"v0": 0.5}}}) == []
    assert Described.calls == before + 1


def test_dataset_dependent_problems_are_all_reported(registry, tmp_path):
    problems = _problems(
        registry,
        tmp_path,
        missing={"train": {"rates": {"v0": 0.5, "vx": 0.2}, "min_present": 1}, "eval": {"conditions": ["v0+v9"]}},
        model={"encoders": {"v1": {"type": "mmcore.mlp"}, "audio": {"type": "mmcore.mlp"}}},
        train={"select": "val.v0+v1.mae"},
    )
    assert problems == [
        "r.yaml: model.encoders.audio: not a modality of this dataset; available: v0, v1, v2, default",
        "r.yaml: model.encoders: no encoder for modality 'v0' and no 'default'",
        "r.yaml: model.encoders: no encoder for modality 'v2' and no 'default'",
        "r.yaml: missing.train.rates.vx: not a modality of this dataset; available: v0, v1, v2",
        "r.yaml: missing.eval.conditions[0]: unknown modality 'v9'; available: v0, v1, v2 "
        "(or 'all' / 'full' for the whole list)",
        "r.yaml: train.select: 'mae' is not a classification metric; available: accuracy, balanced_accuracy, "
        "macro_f1, weighted_f1",
    ]


def test_min_present_and_infeasible_rates(registry, tmp_path):
    assert _problems(registry, tmp_path, missing={"train": {"min_present": 4}}) == [
        "r.yaml: missing.train: min_present=4 exceeds the 3 modalities"
    ]
    (problem,) = _problems(registry, tmp_path, missing={"train": {"rates": {"v0": 1.0, "v1": 1.0, "v2": 0.5}}})
    assert "are infeasible with min_present=1: they sum to 2.5 but at most 2 of 3 modalities" in problem


def test_select_condition_must_be_an_evaluated_condition(registry, tmp_path):
    assert _problems(registry, tmp_path, train={"select": "val.v0+v1.macro_f1"}) == []
    assert _problems(
        registry, tmp_path, missing={"eval": {"conditions": "full"}}, train={"select": "val.v0+v1.macro_f1"}
    ) == [
        "r.yaml: train.select: unknown condition 'v0+v1'; did you mean 'v0+v1+v2'? available: v0+v1+v2"
    ]


def test_the_task_decides_the_metrics(registry, tmp_path):
    dataset = {"type": "test.described", "regression": True}
    tree = {"name": "x", "output": str(tmp_path), "dataset": dataset, "train": {"select": "val.mae"}}
    assert validate_recipe(tree, registry, "r.yaml")["train"]["select"] == "val.mae"


@pytest.mark.parametrize("dataset", ["test.broken", "test.silent"])
def test_without_a_description_those_checks_are_skipped(registry, tmp_path, dataset):
    assert _problems(registry, tmp_path, dataset, missing={"train": {"min_present": 9}}) == []
    # the selection metric's name needs no dataset
    assert _problems(registry, tmp_path, dataset, train={"select": "val.macro_f2"}) == [
        "r.yaml: train.select: 'macro_f2' is not a known metric; did you mean 'macro_f1'? available: acc2, acc2_nz, "
        "acc5, acc7, accuracy, balanced_accuracy, corr, f1_2, f1_2_nz, macro_f1, mae, mse, weighted_f1"
    ]


@pytest.mark.parametrize("dataset", ["test.broken", "test.silent"])
def test_the_spec_own_invariants_need_no_description(registry, tmp_path, dataset):
    # the mechanism's fields are checked by the spec's constructor, whatever the dataset can tell
    assert _problems(registry, tmp_path, dataset, missing={"train": {"rates": {"a": 0.5}, "mechanism": "mar"}}) == [
        "r.yaml: missing.train: mechanism 'mar' needs depends_on: the always-present modality whose features "
        "drive the missingness"
    ]


def test_output_must_be_creatable(tmp_path):
    assert output_problems(str(tmp_path / "a" / "b")) == [] and not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
    (tmp_path / "file").write_text("x")
    assert output_problems(str(tmp_path / "file" / "runs")) == [
        f"output: cannot create {tmp_path / 'file' / 'runs'}: {tmp_path / 'file'} is a file, not a folder"
    ]
    assert output_problems("/proc/mmcore-test/runs") == [
        "output: cannot write run directories: a test file could not be created in /proc "
        "(this file system does not allow new files)"
    ]
    assert output_problems("runs\x00x") == ["output: 'runs\\x00x' holds a NUL character, which no path can"]


def test_declared_confidences_need_heads_and_classification_but_a_legacy_balancer_is_not_held_to_them(registry, tmp_path):
    def problems(balancer: str) -> list[str]:
        dataset = {"type": "test.described", "regression": True}
        return _problems(registry, tmp_path, dataset, balancer={"type": balancer}, train={"select": "val.mae"})

    reads = problems("test.reads")
    assert reads == [
        "r.yaml: balancer: test.reads reads the unimodal heads' confidences; set model.unimodal_heads (e.g. {layers: [128], weight: 1.0})",
        "r.yaml: balancer: test.reads is defined for classification only; this dataset's task is regression",
    ]
    assert problems("test.legacy") == []
