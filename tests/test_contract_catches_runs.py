"""Mistakes plugin authors make in balancers and datasets, and what a run makes of two mistakes the
contract suite only warns about (an imputer writing into ``h`` in place, a balancer changing the
stats it observes): see ``test_contract_catches.py`` for encoders, imputers and fusion heads."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

from mmcore.builtins.balancers import Uniform
from mmcore.builtins.synthetic import Synthetic
from mmcore.components import Balancer
from mmcore.engine.trainer import run
from mmcore.recipe import apply_overrides, validate_recipe
from mmcore.types import ImputerOutput
from mmcore.testing import check_balancer, check_dataset, tiny_recipe

from contract_helpers import fails, passes_quietly, warns
from plugin_helpers import plugins_of
from test_contract_catches import FillsInPlace


# ---------------------------------------------------------------------------------------- balancers


class InverseLoss(Balancer):
    """Weights 1 / running mean loss, a common pattern; correct as written."""

    def __init__(self, modalities: list[str], target: str = "recon") -> None:
        super().__init__(modalities, target=target)
        self.avg = torch.ones(len(modalities))

    def to(self, device: torch.device | str) -> "InverseLoss":
        super().to(device)
        self.avg = self.avg.to(self.device)
        return self

    def observe(self, stats: Any) -> None:
        seen = stats.present_counts > 0
        self.avg = torch.where(seen, 0.9 * self.avg + 0.1 * stats.losses[self.target], self.avg)

    def weights(self) -> Tensor:
        return 1.0 / self.avg

    def state_dict(self) -> dict[str, Any]:
        return {"avg": self.avg.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.avg = torch.tensor(state["avg"], dtype=torch.float32, device=self.device)


class LoadsOnTheCpu(InverseLoss):
    """Restores its state on the CPU: a resume on a GPU stops at the first step."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.avg = torch.tensor(state["avg"], dtype=torch.float32)


class NeverMoves(InverseLoss):
    """Forgets to move its tensors in to()."""

    def to(self, device: torch.device | str) -> "InverseLoss":
        return Balancer.to(self, device)


class NanForAnAbsentModality(InverseLoss):
    def observe(self, stats: Any) -> None:
        self.avg = 0.9 * self.avg + 0.1 * stats.losses[self.target] / stats.present_counts * stats.present_counts


class RoundsItsState(InverseLoss):
    def state_dict(self) -> dict[str, Any]:
        return {"avg": [round(v, 3) for v in self.avg.tolist()]}


class FloorsTheLosses(InverseLoss):
    """Clamps the losses it receives in place: the engine logs those tensors after observe()."""

    def observe(self, stats: Any) -> None:
        stats.losses[self.target].clamp_(min=0.3)
        super().observe(stats)


class DoublesTheLosses(InverseLoss):
    """Rescales the losses it receives in place, a change that compounds if stats were reused."""

    def observe(self, stats: Any) -> None:
        stats.losses[self.target].mul_(2.0)
        super().observe(stats)


class OneWeight(InverseLoss):
    def weights(self) -> Tensor:
        return self.avg.mean().reshape(1)


@pytest.mark.parametrize(
    "factory,fragment",
    [
        (NanForAnAbsentModality, "weights must be finite and >= 0, got ["),
        (RoundsItsState, "weights differ after load_state_dict"),
        (OneWeight, "weights() shape (1,), expected (3,)"),
    ],
)
def test_broken_balancer_fails(factory: Any, fragment: str) -> None:
    fails(check_balancer, factory, fragment)


@pytest.mark.parametrize("factory", [FloorsTheLosses, DoublesTheLosses])
def test_balancer_that_changes_the_stats_it_receives_warns(factory: Any) -> None:
    """A warning naming the field, not a resume failure: the engine hands each observe() new stats."""
    message = warns(check_balancer, factory, "observe(stats) modifies stats.losses['recon'] in place")
    assert message.startswith(f"balancer '{factory.__qualname__}' (plugin local): ")


@pytest.mark.parametrize("factory", [LoadsOnTheCpu, NeverMoves])
def test_balancer_whose_state_stays_on_the_cpu_warns(factory: Any) -> None:
    """The engine moves a balancer with to(device), then loads a checkpoint's state into it."""
    warns(check_balancer, factory, "(then given load_state_dict(), as on resuming) it returns a tensor on cpu; weights() must be")


def test_a_correct_balancer_passes_without_warnings() -> None:
    passes_quietly(check_balancer, InverseLoss)


# ---------------------------------------------------------------------------------------- datasets


SMALL = {"modalities": 2, "classes": 3, "samples": 60, "dim": 4}


class RepeatsIds(Synthetic):
    """Ids unique across splits but repeated inside one (a row id column read twice)."""

    contract_options = SMALL

    def split(self, name: str) -> Any:
        data = super().split(name)
        ids = data.ids.clone()
        ids[1] = ids[0]
        return type(data)(data.features, data.lengths, data.target, ids)


class ShufflesUnseeded(Synthetic):
    """Shuffles rows with Python's own random module, which torch.manual_seed does not seed."""

    contract_options = SMALL

    def split(self, name: str) -> Any:
        import random

        data = super().split(name)
        order = torch.tensor(random.sample(range(len(data)), len(data)))
        return type(data)({k: v[order] for k, v in data.features.items()}, data.lengths, data.target[order], data.ids[order])


class OneBasedLabels(Synthetic):
    contract_options = SMALL

    def split(self, name: str) -> Any:
        data = super().split(name)
        return type(data)(data.features, data.lengths, data.target + 1, data.ids)


def describes_too_few_classes(modalities: int = 2, classes: int = 3, samples: int = 60, dim: int = 4) -> Synthetic:
    return Synthetic(modalities=modalities, classes=classes, samples=samples, dim=dim)


def _one_class_short(modalities: int = 2, classes: int = 3, samples: int = 60, dim: int = 4) -> Any:
    return Synthetic.describe(modalities=modalities, classes=classes - 1, dim=dim)


describes_too_few_classes.describe = _one_class_short  # type: ignore[attr-defined]


def test_dataset_with_an_id_repeated_inside_a_split() -> None:
    fails(check_dataset, RepeatsIds, "sample ids are not unique")


def test_dataset_that_shuffles_differently_each_build() -> None:
    fails(check_dataset, ShufflesUnseeded, "building twice gives different train tensors")


def test_dataset_with_labels_from_one() -> None:
    fails(check_dataset, OneBasedLabels, "targets must be int64 class indices in [0, 3)")


def test_dataset_whose_describe_disagrees_warns() -> None:
    warns(check_dataset, describes_too_few_classes, "describe")


# ------------------------------------------------------------------------- what a run makes of it


class FillsWithWhere(FillsInPlace):
    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=torch.where(present.unsqueeze(-1), h, self.token.expand_as(h)))


def test_writing_into_h_in_place_changes_no_number_of_a_run(tmp_path: Any) -> None:
    """Why the suite warns about ``FillsInPlace`` instead of failing it: a run's results and
    weights are those of the same imputer written with ``torch.where``."""

    plugins = plugins_of("tcc", imputers={"tcc.inplace": FillsInPlace, "tcc.where": FillsWithWhere})
    results, weights = [], []
    for name in ("tcc.inplace", "tcc.where"):
        tree = tiny_recipe(tmp_path / name, "train.epochs=1")
        tree["model"]["imputer"] = {"type": name}
        done = run(validate_recipe(tree, plugins.registry, "test"), plugins=plugins, show_progress=False)
        results.append(done.results)
        weights.append(load_file(str(done.run_dir / "checkpoints" / "last" / "model.safetensors")))
    assert results[0] and results[0] == results[1]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


class ZeroesWhatItObserves(Uniform):
    """Uniform weights, but observe() zeroes the step's losses in place."""

    def observe(self, stats: Any) -> None:
        for losses in stats.losses.values():
            losses.zero_()


def test_a_run_logs_the_losses_before_a_balancer_changes_them(tmp_path: Any) -> None:
    """The warning above aside, a run's metrics.jsonl is what the step computed (it was logged after observe())."""
    plugins = plugins_of("zeroing", balancers={"zeroing.uniform": ZeroesWhatItObserves})
    logged = []
    for balancer in ("mmcore.uniform", "zeroing.uniform"):
        recipe = validate_recipe(apply_overrides(tiny_recipe(tmp_path / balancer), [f"balancer={balancer}"]), plugins.registry, "test")
        done = run(recipe, plugins=plugins, show_progress=False)
        lines = [json.loads(x) for x in (done.run_dir / "metrics.jsonl").read_text().splitlines()]
        logged.append([{k: v for k, v in line.items() if k in ("loss", "task_loss") or k.startswith("unimodal.")}
                       for line in lines if "loss" in line])
    assert logged[0] == logged[1]  # before: every unimodal.<m> of the zeroing run was 0.0
    assert all(line["unimodal.m0"] > 0 for line in logged[1])
