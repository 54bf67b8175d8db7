"""Validation builds the components once, on ``meta``, so that a constructor's own cross-field
check (two options that do not go together) is a recipe problem before anything runs.

Before, ``mmcore validate`` said ok to ``baselines.mmin`` with ``hide_rate: 1.0`` (refused by
its constructor under ``hide_rule: independent``), and a sweep over ``hide_rate`` ran its good
points before the bad one failed at build. A valid recipe is never refused: a constructor that
reads tensor values (``.item()``, formatting) fails on ``meta`` only and is built again for real
before anything is blamed, and without described modality specs nothing is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

import mmcore.cli
from mmcore import ImputerOutput
from mmcore.engine.trainer import run
from mmcore.errors import DataError, RecipeError, checker
from mmcore.recipe import apply_overrides, dump_yaml, validate_recipe
from mmcore.testing import tiny_recipe
from mmcore.types import ModalitySpec, TaskSpec

from plugin_helpers import plugins_of

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


class Passthrough(nn.Module):
    """An imputer that returns its input scaled; the subclasses differ in their constructors."""

    loss_groups = ("recon",)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=h * self.scale, losses={"recon": h.new_zeros(h.shape[1])})


class Pair(Passthrough):
    """Refuses ``low > high`` in its constructor, as a plugin's checker does."""

    def __init__(self, specs: Any, dim: int, low: int = 1, high: int = 2) -> None:
        super().__init__(dim)
        checker("fake.pair")(low <= high, f"low: expected at most high ({high}), got {low}")


class Divides(Passthrough):
    """Raises a plain ValueError for a width its heads do not divide."""

    def __init__(self, specs: Any, dim: int, heads: int = 2) -> None:
        super().__init__(dim)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")


class Reads(Passthrough):
    """Reads its own weights while constructing: impossible on ``meta``, fine on the CPU."""

    def __init__(self, specs: Any, dim: int) -> None:
        super().__init__(dim)
        if self.scale.sum().item() != dim:
            raise ValueError("ones do not sum to dim")
        self.label = f"{self.scale.sum():.1f}"  # a TypeError on meta, where no value is there to format


class ReadsThenGrows(Passthrough):
    """Fails on ``meta`` (it reads a value), then asks for far more parameters than the limit."""

    completed = 0  # constructions that got past the big layer

    def __init__(self, specs: Any, dim: int, width: int = 4) -> None:
        super().__init__(dim)
        float(self.scale.sum())  # no value on meta
        self.huge = nn.Linear(width, width)
        ReadsThenGrows.completed += 1


class Files:
    """A dataset whose ``describe`` needs its files (a header in ``root``)."""

    def __init__(self, root: str) -> None:
        raise AssertionError("never built by validation")

    @staticmethod
    def describe(root: str) -> tuple[list[ModalitySpec], TaskSpec]:
        if not (Path(root) / "header.txt").is_file():
            raise DataError(f"fake.files: {root}: no header.txt")
        return [ModalitySpec(f"m{i}", 8) for i in range(3)], TaskSpec("classification", 4)


@pytest.fixture(scope="module")
def plugins() -> Any:
    imputers = {"fake.pair": Pair, "fake.divides": Divides, "fake.reads": Reads, "fake.grows": ReadsThenGrows}
    return plugins_of("fake", imputers=imputers, datasets={"fake.files": Files})


def _problems(plugins: Any, tree: dict[str, Any], *overrides: str, machine: bool = False) -> list[str]:
    with pytest.raises(RecipeError) as info:
        validate_recipe(apply_overrides(tree, list(overrides)), plugins.registry, "test", machine=machine)
    return info.value.problems


def test_validate_reports_the_mmin_hide_rate_refused_by_its_constructor_exit_2_one_line():
    runner = CliRunner()
    bad = runner.invoke(mmcore.cli.app, ["validate", str(QUICKSTART), "model.imputer={type: baselines.mmin, hide_rate: 1.0}"])
    assert bad.exit_code == 2, bad.output
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1, bad.output
    assert "model.imputer (baselines.mmin): hide_rate: expected float in [0, 1) with hide_rule independent" in lines[0]
    good = runner.invoke(
        mmcore.cli.app, ["validate", str(QUICKSTART), "model.imputer={type: baselines.mmin, hide_rate: 1.0, hide_rule: subsets}"]
    )
    assert good.exit_code == 0, good.output


def test_a_plugins_cross_field_check_is_a_problem_beside_the_others(plugins, tmp_path):
    tree = tiny_recipe(tmp_path)
    problems = _problems(plugins, tree, "model.imputer={type: fake.pair, low: 5, high: 3}", "train.epochs=0")
    assert len(problems) == 2
    assert problems[0].startswith("test: train.epochs:")
    assert problems[1] == "test: model.imputer (fake.pair): low: expected at most high (3), got 5"
    validate_recipe(apply_overrides(tree, ["model.imputer={type: fake.pair, low: 3, high: 3}"]), plugins.registry)


def test_a_factorys_value_error_is_named_with_its_path(plugins, tmp_path):
    problems = _problems(plugins, tiny_recipe(tmp_path), "model.imputer={type: fake.divides, heads: 3}")
    assert problems == ["test: model.imputer (fake.divides): ValueError: dim 16 is not divisible by heads 3"]


def test_a_default_encoder_refused_for_every_modality_is_one_line(plugins, tmp_path):
    problems = _problems(plugins, tiny_recipe(tmp_path), "model.encoders.default={type: mmcore.transformer, heads: 3}")
    assert problems == [
        "test: model.encoders.default (mmcore.transformer): mmcore.transformer for modality 'm0': "
        "latent dim 16 must be divisible by heads=3"
    ]


def test_a_constructor_that_reads_values_validates_and_trains(plugins, tmp_path):
    tree = apply_overrides(tiny_recipe(tmp_path, "train.epochs=1"), ["model.imputer={type: fake.reads}"])
    recipe = validate_recipe(tree, plugins.registry, "test")
    result = run(recipe, plugins=plugins, show_progress=False)
    assert result.results and Path(result.run_dir, "recipe.yaml").is_file()


def test_the_real_build_after_meta_is_counted_and_stops_at_the_size_limit(plugins, tmp_path, monkeypatch):
    """Past the limit, the real build stops before the weights are filled (as the run's own build
    does) and the size is left to the run: validation reports nothing and allocates nothing."""
    monkeypatch.setenv("MMCORE_MAX_PARAMS", "10000")
    tree = apply_overrides(tiny_recipe(tmp_path), ["model.imputer={type: fake.grows, width: 3000}"])  # 9e6 weights
    assert validate_recipe(tree, plugins.registry, "test")["model"]["imputer"]["width"] == 3000
    assert ReadsThenGrows.completed == 0  # stopped at the layer's weight, before its initialisation


def test_validation_leaves_the_random_state_as_it_was(plugins, tmp_path):
    tree = apply_overrides(tiny_recipe(tmp_path), ["model.imputer={type: fake.reads}"])
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    validate_recipe(tree, plugins.registry, "test")
    assert torch.equal(torch.random.get_rng_state(), before)


def test_recipe_only_skips_the_build_when_describe_needs_the_missing_files(plugins, tmp_path):
    root = tmp_path / "data"
    tree = apply_overrides(
        tiny_recipe(tmp_path), [f"dataset={{type: fake.files, root: '{root}'}}", "model.imputer={type: fake.pair, low: 5, high: 3}"]
    )
    validate_recipe(tree, plugins.registry, "test")  # --recipe-only: no specs, nothing built, ok
    assert _problems(plugins, tree, machine=True) == [
        f"test: dataset.root: not found: {root}; expected the fake.files data files or folder "
        "(`mmcore components fake.files` says which)"
    ]
    root.mkdir()
    (root / "header.txt").write_text("m0 m1 m2\n", encoding="utf-8")
    assert _problems(plugins, tree) == ["test: model.imputer (fake.pair): low: expected at most high (3), got 5"]


def test_a_sweep_with_one_bad_grid_value_is_refused_before_any_run(tmp_path, monkeypatch):
    recipe = tmp_path / "tiny.yaml"
    tree = tiny_recipe(tmp_path / "runs", "train.epochs=1", imputer={"type": "baselines.mmin"})
    recipe.write_text(dump_yaml(tree), encoding="utf-8")
    out = tmp_path / "sweep"
    result = CliRunner().invoke(
        mmcore.cli.app, ["sweep", str(recipe), "--grid", "model.imputer.hide_rate=0.5,1.0", "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert "model.imputer (baselines.mmin): hide_rate: expected float in [0, 1) with hide_rule independent" in result.output
    assert "grid point" in result.output
    assert not (out / "points").exists() and not (tmp_path / "runs").exists()


def test_a_study_with_one_bad_arm_is_refused_before_any_run(tmp_path):
    (tmp_path / "recipe.yaml").write_text(
        dump_yaml(tiny_recipe(tmp_path / "runs", "train.epochs=1", imputer={"type": "baselines.mmin"})), encoding="utf-8"
    )
    (tmp_path / "study.yaml").write_text(
        "name: s\nrecipe: recipe.yaml\nseeds: 2\narms:\n  half: {model.imputer.hide_rate: 0.5}\n"
        "  all: {model.imputer.hide_rate: 1.0}\nanalysis: {primary: test.average.macro_f1, compare: [[all, half]]}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(mmcore.cli.app, ["study", "run", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2, result.output
    assert "(arm all, " in result.output and "model.imputer (baselines.mmin): hide_rate: expected float in [0, 1)" in result.output
    assert not (tmp_path / "d").exists() and not (tmp_path / "runs").exists()


class Counted(Passthrough):
    """Counts its constructions, to see which validations built it."""

    built = 0

    def __init__(self, specs: Any, dim: int, low: int = 1, high: int = 2) -> None:
        super().__init__(dim)
        Counted.built += 1
        checker("fake.counted")(low <= high, f"low: expected at most high ({high}), got {low}")


def test_validations_inside_one_build_per_node_build_each_node_once_and_say_the_same(tmp_path):
    from mmcore.recipe.buildcheck import one_build_per_node

    counted = plugins_of("fake", imputers={"fake.counted": Counted})
    tree = tiny_recipe(tmp_path)
    good, bad = "model.imputer={type: fake.counted}", "model.imputer={type: fake.counted, low: 5, high: 3}"

    def problems(*overrides: str) -> list[str]:
        try:
            validate_recipe(apply_overrides(tree, list(overrides)), counted.registry, "test")
        except RecipeError as error:
            return error.problems
        return []

    alone = [problems(bad, f"seed={seed}") for seed in range(3)]
    Counted.built = 0
    with one_build_per_node():
        shared = [problems(bad, f"seed={seed}", f"train.optimizer.lr={lr}") for seed, lr in ((0, 0.1), (1, 0.2), (2, 0.3))]
        assert Counted.built == 2  # on meta, then for real to confirm the refusal; not again for the other seeds
        assert problems(good) == [] and Counted.built == 3  # another node is built
        assert problems("model.dim=8", bad) == alone[0] and Counted.built == 5  # and so is the same node at another width
    assert shared == alone == [["test: model.imputer (fake.counted): low: expected at most high (3), got 5"]] * 3
    problems(bad)
    assert Counted.built == 7  # outside, every validation builds
