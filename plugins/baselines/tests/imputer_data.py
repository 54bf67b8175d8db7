"""Shared by the ShaSpec and neighbours tests: tiny specs and masks, latents with absent rows
zeroed, their noisy twin (noise only where absent), and the tiny engine run both imputers get."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.testing import ResumeCheck, check_resume, tiny_recipe
from mmcore.types import ModalitySpec

SPECS = [ModalitySpec("a", 4), ModalitySpec("b", 3), ModalitySpec("c", 2)]
RECIPES = Path(__file__).resolve().parents[3] / "recipes"
PRESENT = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)  # "c" never present
NODES: dict[str, Any] = {
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 300, "dim": 8},
    "missing": {"train": {"rates": {"m0": 0.2, "m1": 0.5, "m2": 0.6}}, "eval": {"conditions": "all"}},
    "dim": 8,
    "encoders": {"default": {"type": "mmcore.mlp", "layers": [16]}},
    "fusion": {"type": "mmcore.concat", "layers": [16]},
    "unimodal_heads": {"layers": [8]},
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny loops run faster on one thread and do not fight other processes for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def latents(present: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*present.shape, dim, generator=gen) * present.unsqueeze(-1)


def noisy(h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(99)
    return h + 100.0 * torch.randn(h.shape, generator=gen) * (~present).unsqueeze(-1)


def run_and_resume(tmp_path: Path, imputer: dict[str, Any], target: str) -> ResumeCheck:
    """A tiny run with ``baselines.inverse_rate`` weighing the imputer's group ``target``, stopped
    mid-epoch and resumed exactly; the group's terms and their weights are logged."""
    nodes = {**NODES, "imputer": imputer, "balancer": {"type": "baselines.inverse_rate"}}
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=2", f"+balancer.target={target}", **nodes)
    check = check_resume(recipe, stop_after=3)
    assert {f"{target}.m0", f"{target}.m2", "weight.m1"} <= set(json.loads(check.lines[0]))
    return check


def validate_targets(imputer: str, target: str, wrong: str) -> None:
    """``mmcore validate`` accepts the imputer's group as the balancer target and rejects another."""
    runner = CliRunner()
    recipe = str(RECIPES / "quickstart.yaml")
    ok = runner.invoke(app, ["validate", recipe, f"model.imputer={imputer}", f"balancer.target={target}"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["validate", recipe, f"model.imputer={imputer}", f"balancer.target={wrong}"])
    assert bad.exit_code == 2 and f"'{wrong}' is not a loss group" in bad.output and target in bad.output
