"""Validation a user can rely on: every problem of a recipe in one pass (cross-field ones beside
type errors), and, for the commands that run a recipe here, its data files and this machine's
devices (``mmcore.recipe.machine``): each one line naming the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.plugins import get_registry
from mmcore.recipe import validate_recipe
from mmcore.recipe.machine import device_problems
from recipe_helpers import raises

runner = CliRunner()


def _tree(tmp_path: Path, **sections) -> dict:
    return {"name": "x", "output": str(tmp_path / "runs"), "dataset": {"type": "mmcore.synthetic"}, **sections}


def _no_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_a_misspelt_modality_is_reported_beside_type_errors(tmp_path):
    tree = _tree(tmp_path, model={"dim": -4}, train={"epochs": "ten"}, missing={"train": {"rates": {"m0": 0.5, "mo1": 0.2}}})
    assert raises(validate_recipe, tree, get_registry(), "r.yaml") == [
        "r.yaml: model.dim: expected int >= 1, got int -4",
        "r.yaml: train.epochs: expected int >= 1, got str 'ten'",
        "r.yaml: missing.train.rates.mo1: not a modality of this dataset; did you mean 'm1'? available: m0, m1, m2",
    ]


def test_a_check_is_skipped_only_where_its_own_values_are_wrong(tmp_path):
    """A bad encoder option leaves the modality names of ``model.encoders`` unchecked (they are
    part of the broken value), while ``train.select`` is still checked against the task."""
    tree = _tree(tmp_path, model={"encoders": {"m7": {"type": "mmcore.mlp", "layerz": 1}}}, train={"select": "val.mae"})
    problems = raises(validate_recipe, tree, get_registry(), "r.yaml")
    assert len(problems) == 2, problems
    assert problems[0].startswith("r.yaml: model.encoders.m7.layerz: unknown option of mmcore.mlp")
    assert problems[1].startswith("r.yaml: train.select: 'mae' is not a classification metric")


def test_missing_dataset_root_is_a_machine_check(tmp_path):
    pytest.importorskip("mmcore_corpora")
    tree = {**_tree(tmp_path), "dataset": {"type": "corpora.features", "root": str(tmp_path / "nope")}}
    assert raises(validate_recipe, tree, get_registry(), "r.yaml", machine=True) == [
        f"r.yaml: dataset.root: not found: {tmp_path / 'nope'}; expected the corpora.features data files or folder "
        "(`mmcore components corpora.features` says which)"
    ]
    # the recipe alone is fine: a sweep may plan here and run where the data is
    assert validate_recipe(tree, get_registry(), "r.yaml")["dataset"]["root"] == str(tmp_path / "nope")


def test_what_describe_finds_wrong_is_reported_by_the_machine_check(tmp_path):
    tree = {**_tree(tmp_path), "dataset": {"type": "mmcore.synthetic", "modalities": 2, "names": ["a"]}}
    assert raises(validate_recipe, tree, get_registry(), "r.yaml", machine=True) == [
        "r.yaml: dataset: mmcore.synthetic: 'names' needs 2 values, got 1"
    ]


def test_a_fold_that_does_not_exist(tmp_path):
    pytest.importorskip("mmcore_corpora")
    tree = {**_tree(tmp_path), "dataset": {"type": "corpora.msp_improv", "root": str(tmp_path), "fold": 13}}
    assert raises(validate_recipe, tree, get_registry(), "r.yaml") == [
        "r.yaml: dataset.fold: expected int in [1, 12], got int 13"
    ]


def test_cuda_without_cuda(monkeypatch, tmp_path):
    _no_cuda(monkeypatch)
    tree = _tree(tmp_path, device="cuda")
    assert raises(validate_recipe, tree, get_registry(), "r.yaml", machine=True) == [
        "r.yaml: device: 'cuda' requested but this machine has no CUDA device; available: cpu (or device=auto)"
    ]
    assert device_problems("auto", nproc=4) == [] and device_problems("cpu", nproc=4) == []  # gloo processes


def test_a_gpu_index_or_process_count_beyond_the_gpus(monkeypatch):
    _gpus(monkeypatch, 2)
    assert device_problems("cuda:3") == ["device: 'cuda:3' does not exist on this machine; available: cuda:0, cuda:1, cpu"]
    assert device_problems("cuda:1") == [] and device_problems("cuda", nproc=2) == []
    assert device_problems("auto", nproc=3) == [
        "device: 'auto' with --nproc 3 needs 3 CUDA devices, one per process; this machine has 2 (cuda:0, cuda:1); "
        "expected --nproc at most 2, or device=cpu (gloo processes)"
    ]
    assert device_problems("cpu", nproc=3) == []


def test_cli_validate_lists_all_problems_and_checks_the_machine(monkeypatch, tmp_path):
    _no_cuda(monkeypatch)
    recipe = tmp_path / "three.yaml"
    recipe.write_text(
        "name: three\ndevice: cuda\ndataset: {type: mmcore.synthetic}\n"
        "missing: {train: {rates: {m0: 0.5, audio: 0.3}}}\nmodel: {dim: 0}\n"
    )
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [
        f"error: {recipe}: model.dim: expected int >= 1, got int 0",
        f"error: {recipe}: missing.train.rates.audio: not a modality of this dataset; available: m0, m1, m2",
        f"error: {recipe}: device: 'cuda' requested but this machine has no CUDA device; available: cpu (or device=auto)",
    ]


def test_cli_validate_checks_nproc_against_the_gpus(monkeypatch, tmp_path):
    _gpus(monkeypatch, 1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\noutput: {tmp_path / 'runs'}\ndataset: mmcore.synthetic\n")
    result = runner.invoke(app, ["validate", str(recipe), "--nproc", "2"])
    assert result.exit_code == 2 and "expected --nproc at most 1" in result.output, result.output
    assert runner.invoke(app, ["validate", str(recipe), "--nproc", "2", "device=cpu"]).exit_code == 0
