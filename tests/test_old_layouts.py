"""Folders written by older mmcore versions, read by today's: a sweep restarted over an older
sweep's folder. The old layouts are written here by hand, in the shapes those versions wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from mmcore.errors import MMCoreError
from mmcore.plugins import get_registry
from mmcore.recipe import dump_yaml, load_yaml, parse_yaml
from mmcore.sweep import run_sweep
from mmcore.sweep.grid import expand, parse_axes
from mmcore.sweep.runner import plan_runs, run_state

from recipe_helpers import SMALL_RECIPE

RECIPE = SMALL_RECIPE.replace(", log_every: 1", "")  # the default log_every, which changed since


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(output=tmp_path / "runs"))
    return path


def _quiet() -> Console:
    return Console(file=open(os.devnull, "w"), width=120)


def _old_finished_run(recipe: Path, sweep_dir: Path, **old_train: object) -> Path:
    """A finished run as mmcore before 12-06 saved it: the resolved recipe without
    missing.train.mechanism (added since), train keys at the defaults of then, and an eval.json."""
    (run,) = plan_runs(load_yaml(recipe), str(recipe), [], expand(parse_axes([])), [0], sweep_dir, get_registry())
    tree = parse_yaml(dump_yaml(run.recipe), "planned")
    del tree["missing"]["train"]["mechanism"]
    tree["train"].update(old_train)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "recipe.yaml").write_text(dump_yaml(tree), encoding="utf-8")
    results = {"val": {"average": {"accuracy": 0.5, "macro_f1": 0.5}},
               "test": {"average": {"accuracy": 0.625, "macro_f1": 0.25}}}
    (run.run_dir / "eval.json").write_text(json.dumps({"best_epoch": 1, "select": "val.macro_f1", "results": results}))
    assert run_state(run.run_dir) == "finished"
    return run.run_dir


def test_a_key_added_since_the_old_run_does_not_make_it_stale(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    run_dir = _old_finished_run(recipe, sweep_dir)
    before = (run_dir / "recipe.yaml").read_bytes()
    run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=_quiet())
    assert (run_dir / "recipe.yaml").read_bytes() == before and not (run_dir / "checkpoints").exists()  # skipped
    rows = (sweep_dir / "results.csv").read_text()
    assert "0.625" in rows and "0.25" in rows  # the old run's numbers, not a new training


def test_an_old_default_is_named_with_the_overrides_that_reuse_the_runs(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    run_dir = _old_finished_run(recipe, sweep_dir, log_every=50, dropout_masks="torch")
    with pytest.raises(MMCoreError) as error:
        run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=_quiet())
    message = str(error.value)
    assert "differs at 'train.log_every' from the recipe planned for it now (saved: 50, now: null)" in message
    assert message.endswith("if they were made by an older mmcore whose defaults differed, add train.log_every=50 "
                            "train.dropout_masks=torch (as overrides, or to the recipe) to reuse them")
    assert run_state(run_dir) == "finished"  # nothing touched
    reuse = ["train.log_every=50", "train.dropout_masks=torch"]
    run_sweep(recipe, reuse, [], seeds="0", out=sweep_dir, console=_quiet())
    assert "0.625" in (sweep_dir / "results.csv").read_text() and not (run_dir / "checkpoints").exists()


def test_a_key_today_refuses_is_named_without_a_reuse_hint(recipe, tmp_path):
    """A saved recipe today's schema refuses (a key it no longer knows) is compared as written: the
    run is named, and no overrides are offered (none would plan it)."""
    sweep_dir = tmp_path / "sw"
    run_dir = _old_finished_run(recipe, sweep_dir, retired_option=3)
    with pytest.raises(MMCoreError) as error:
        run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=_quiet())
    message = str(error.value)
    assert f"{run_dir}: its recipe.yaml differs at 'missing.train.mechanism'" in message  # compared as written
    assert message.endswith("use another --out directory, or delete those runs to redo them")
    assert run_state(run_dir) == "finished"
