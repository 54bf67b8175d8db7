"""The engine end to end on tiny sizes: learning, no leakage, the run directory, exact resume."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from mmcore.conditions import condition_masks, parse_conditions
from mmcore.engine.build import build_dataset, build_model
from mmcore.recipe.plan import plan_of
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError, RecipeError
from mmcore.plugins import get_registry
from mmcore.testing import check_resume


def test_learns_well_above_chance_under_30_percent_missing(make_recipe):
    recipe = make_recipe("train.epochs=10", "dataset.samples=1200")
    result = run(recipe, show_progress=False)
    test = result.results["test"]
    # 4 balanced classes: chance is 0.25. Every single-modality condition must beat it clearly too.
    assert test["average"]["accuracy"] > 0.6
    assert test["m0+m1+m2"]["accuracy"] > 0.75
    assert min(row["accuracy"] for name, row in test.items()) > 0.35
    assert len(test) == 7 + 1  # every non-empty subset of 3 modalities, plus the average


def test_run_directory_layout(make_recipe):
    result = run(make_recipe("train.epochs=2"), show_progress=False)
    d = result.run_dir
    assert d.parent.name == "tiny"
    for name in ("recipe.yaml", "manifest.json", "metrics.jsonl", "eval.json", "eval.csv"):
        assert (d / name).is_file(), name
    for ckpt in ("last", "best"):
        files = sorted(p.name for p in (d / "checkpoints" / ckpt).iterdir())
        assert files == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert set(manifest["data_sha256"]) == {"train", "val", "test"}
    assert len(manifest["train_mask_sha256"]) == 64
    assert manifest["plugins"][0]["name"] == "mmcore"
    lines = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    step_lines = [x for x in lines if "loss" in x]
    epoch_lines = [x for x in lines if "val.accuracy" in x]
    assert [x["epoch"] for x in epoch_lines] == [1, 2]
    assert {"unimodal.m0", "unimodal.m2", "task_loss", "lr"} <= set(step_lines[0])
    rows = list(csv.DictReader(open(d / "eval.csv")))
    assert {r["split"] for r in rows} == {"val", "test"}
    assert len(rows) == 2 * 8
    evaluation = json.loads((d / "eval.json").read_text())
    assert evaluation["best_epoch"] in (1, 2)
    assert evaluation["results"]["test"]["average"]["accuracy"] == pytest.approx(
        float([r for r in rows if r["split"] == "test" and r["condition"] == "average"][0]["accuracy"])
    )


def test_changing_an_absent_modality_changes_nothing(make_recipe):
    recipe = make_recipe()
    registry = get_registry()
    dataset = build_dataset(recipe["dataset"], registry)
    model = build_model(plan_of(recipe), dataset.modalities, dataset.task, registry).eval()
    split = dataset.split("val")
    batch = split.select(torch.arange(16))
    present = torch.ones(16, 3, dtype=torch.bool)
    present[:, 1] = False
    present[::2, 2] = False
    before = model(batch, present)
    batch.features["m1"] = torch.randn_like(batch.features["m1"]) * 100
    batch.features["m2"][::2] = torch.randn_like(batch.features["m2"][::2]) * 100
    after = model(batch, present)
    assert torch.equal(before.prediction, after.prediction)
    assert torch.equal(before.unimodal, after.unimodal)


@pytest.mark.parametrize("stop", [3, 5])  # mid-epoch (5 steps an epoch) and on an epoch boundary
def test_resume_equals_straight_run(make_recipe, stop):
    recipe = make_recipe("train.epochs=2", "train.schedule.type=linear", "missing.train.policy=resample")
    check = check_resume(recipe, stop_after=stop)  # weights bit for bit, results, metrics.jsonl line for line
    assert check.stopped.stopped_early and check.stopped.results is None
    assert check.resumed.step == check.straight.step == 10


def test_selection_uses_validation_and_declared_condition(make_recipe):
    result = run(make_recipe("train.epochs=2", "train.select=val.m0.accuracy"), show_progress=False)
    state = json.loads((result.run_dir / "checkpoints" / "best" / "state.json").read_text())
    assert state["best_value"] == pytest.approx(result.results["val"]["m0"]["accuracy"])


def test_bad_select_and_unknown_rate_modality_are_one_line_errors(make_recipe):
    """Caught at validation, before any data is loaded (the dataset describes itself)."""
    with pytest.raises(RecipeError, match="train.select: unknown condition 'zz'"):
        make_recipe("train.select=val.zz.accuracy")
    with pytest.raises(RecipeError, match=r"missing.train.rates.m9: not a modality of this dataset"):
        make_recipe("+missing.train.rates.m9=0.5")
    with pytest.raises(RecipeError, match="'macro_f' is not a classification metric; did you mean 'macro_f1'"):
        make_recipe("train.select=val.macro_f")
    with pytest.raises(RecipeError, match="'mae' is not a classification metric"):
        make_recipe("train.select=val.mae")
    # the engine's own check stays for recipes that reach it unvalidated
    recipe = make_recipe()
    with pytest.raises(MMCoreError, match="train.select: unknown condition 'zz'"):
        run({**recipe, "train": {**recipe["train"], "select": "val.zz.accuracy"}}, show_progress=False)


def test_evaluation_conditions_follow_sample_ids():
    conds = parse_conditions([{"random": {"rates": {"a": 0.5, "b": 0.5}}, "seed": 3, "name": "rnd"}], ["a", "b"])
    ids = torch.arange(100)
    full = condition_masks(conds[0], ids, 2)
    part = condition_masks(conds[0], ids[50:], 2)
    assert torch.equal(full[50:], part)
