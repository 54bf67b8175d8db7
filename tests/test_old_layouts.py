"""Folders written by older mmcore versions, read by today's: a sweep restarted over an older
sweep's folder, and a run resumed across a change of how numbers are computed. The old layouts are
written here by hand, in the shapes those versions wrote."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.rundir import NUMERICS
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.plugins import get_registry
from mmcore.recipe import dump_yaml, load_yaml, parse_yaml
from mmcore.sweep import run_sweep
from mmcore.sweep.grid import expand, parse_axes
from mmcore.sweep.runner import plan_runs, run_state
from mmcore.testing import tiny_recipe

from recipe_helpers import SMALL_RECIPE, quiet_console, small_recipe_file

RECIPE = SMALL_RECIPE.replace(", log_every: 1", "")  # the default log_every, which changed since


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return small_recipe_file(tmp_path, RECIPE)


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
    run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
    assert (run_dir / "recipe.yaml").read_bytes() == before and not (run_dir / "checkpoints").exists()  # skipped
    rows = (sweep_dir / "results.csv").read_text()
    assert "0.625" in rows and "0.25" in rows  # the old run's numbers, not a new training


def test_an_old_default_is_named_with_the_overrides_that_reuse_the_runs(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    run_dir = _old_finished_run(recipe, sweep_dir, log_every=50, dropout_masks="torch")
    with pytest.raises(MMCoreError) as error:
        run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
    message = str(error.value)
    assert "differs at 'train.log_every' from the recipe planned for it now (saved: 50, now: null)" in message
    assert message.endswith("if they were made by an older mmcore whose defaults differed, add train.log_every=50 "
                            "train.dropout_masks=torch (as overrides, or to the recipe) to reuse them")
    assert run_state(run_dir) == "finished"  # nothing touched
    reuse = ["train.log_every=50", "train.dropout_masks=torch"]
    run_sweep(recipe, reuse, [], seeds="0", out=sweep_dir, console=quiet_console())
    assert "0.625" in (sweep_dir / "results.csv").read_text() and not (run_dir / "checkpoints").exists()


def test_a_key_today_refuses_is_named_without_a_reuse_hint(recipe, tmp_path):
    """A saved recipe today's schema refuses (a key it no longer knows) is compared as written: the
    run is named, and no overrides are offered (none would plan it)."""
    sweep_dir = tmp_path / "sw"
    run_dir = _old_finished_run(recipe, sweep_dir, retired_option=3)
    with pytest.raises(MMCoreError) as error:
        run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
    message = str(error.value)
    assert f"{run_dir}: its recipe.yaml differs at 'missing.train.mechanism'" in message  # compared as written
    assert message.endswith("use another --out directory, or delete those runs to redo them")
    assert run_state(run_dir) == "finished"


def _stopped(tmp_path: Path, *overrides: str) -> Path:
    """A tiny run stopped at step 3, resumable."""
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=2", "train.max_steps=3", *overrides)
    return run(recipe, show_progress=False).run_dir


def _manifest(run_dir: Path, **changes: object) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(changes)
    (run_dir / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if v is not None}))


def test_a_run_records_its_numerics_and_another_version_is_refused_on_resume(tmp_path):
    run_dir = _stopped(tmp_path)
    assert json.loads((run_dir / "manifest.json").read_text())["numerics"] == NUMERICS
    _manifest(run_dir, numerics=NUMERICS + 1)
    result = CliRunner().invoke(app, ["resume", str(run_dir), "train.max_steps=null", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"manifest.json: 'numerics' is {NUMERICS + 1}, expected {NUMERICS}" in " ".join(result.output.split())
    assert not (run_dir / "eval.json").exists()


def test_a_run_whose_fixed_masks_are_drawn_differently_now_is_refused_on_resume(tmp_path):
    run_dir = _stopped(tmp_path)
    recorded = json.loads((run_dir / "manifest.json").read_text())["train_mask_sha256"]
    assert isinstance(recorded, str) and len(recorded) == 64
    _manifest(run_dir, train_mask_sha256="0" * 64)  # as an mmcore that drew other masks for this recipe
    result = CliRunner().invoke(app, ["resume", str(run_dir), "train.max_steps=null", "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "manifest.json: 'train_mask_sha256' differs from the training masks drawn now" in " ".join(result.output.split())
    assert not (run_dir / "eval.json").exists()
    _manifest(run_dir, train_mask_sha256=recorded)
    result = CliRunner().invoke(app, ["resume", str(run_dir), "train.max_steps=null", "--no-progress"])
    assert result.exit_code == 0 and (run_dir / "eval.json").exists()


@pytest.mark.parametrize("sequence", [False, True], ids=["vectors", "sequences"])
def test_a_run_from_before_the_record_resumes_and_a_sequence_run_warns(tmp_path, sequence):
    extra = ("dataset.sequence=true", "dataset.max_len=6") if sequence else ()
    run_dir = _stopped(tmp_path, *extra)
    _manifest(run_dir, numerics=None)  # as every run written before 2026-12-08
    recipe = load_yaml(run_dir / "recipe.yaml")
    recipe["train"]["max_steps"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = run(recipe, run_dir=run_dir, resume=True, show_progress=False)
    said = [str(w.message) for w in caught if "'numerics' record" in str(w.message)]
    assert done.step == 10 and len(said) == int(sequence)
