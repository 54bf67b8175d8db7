"""The journey the project exists for, end to end at tiny size: a researcher scaffolds a balancer
(`mmcore new plugin`), makes it visible to mmcore without touching the environment, writes the
study of CONTRIBUTING.md's "Compare your method against the rivals" (their balancer, RedCore's
relative advantage, uniform weighting), runs it with `mmcore study run`, and reads a verdict for
each pre-registered comparison in `study.md`.

The study's runs are worker processes that find plugins through entry points, so registering a
module in this process (``tests/plugin_helpers.py``) does not reach them; a hand-written
``.dist-info`` on ``PYTHONPATH`` is what ``pip install -e`` leaves behind, minus the venv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmcore.cli import app

# CONTRIBUTING.md's study, at tiny size: the documented knobs only (the recipe's dataset size
# through `overrides`, `budget`, `seeds`); 5 seeds is the least that gives a verdict.
STUDY = """\
name: newcomer
recipe: recipes/newbal.yaml
output: {out}
overrides: {{model.unimodal_heads: true, dataset.samples: 160, train.batch_size: 32}}
budget: {{epochs: 1}}
seeds: 5
arms:
  mine: {{balancer: {{type: newbal.flat, weight: 3.0}}}}
  relative-advantage: {{balancer: {{type: redcore.relative_advantage, target: unimodal}}}}
  uniform: {{balancer: mmcore.uniform}}
analysis:
  primary: test.average.macro_f1
  compare: [[mine, relative-advantage], [mine, uniform]]
"""
VERDICTS = ("win", "loss", "tie")


def _register_without_installing(package: Path, site: Path) -> dict[str, str]:
    """The entry point `pip install -e` would write, as metadata on a path of its own."""
    info = site / "mmcore_newbal-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmcore-newbal\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text("[mmcore]\nnewbal = mmcore_newbal.plugin\n")
    path = os.pathsep.join([str(site), str(package), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _mmcore(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mmcore", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow  # 59 s: a 15-run study in worker processes
def test_scaffolded_balancer_against_redcore_gets_a_verdict_per_comparison(tmp_path: Path) -> None:
    package = tmp_path / "mmcore-newbal"
    made = CliRunner().invoke(app, ["new", "plugin", "newbal", "--kinds", "balancer", "--dir", str(package)])
    assert made.exit_code == 0, made.output
    env = _register_without_installing(package, tmp_path / "site")
    listed = _mmcore(env, package, "components", "newbal.flat")
    assert listed.returncode == 0 and "newbal.flat  (balancer, plugin newbal)" in listed.stdout, listed.stderr

    (package / "study.yaml").write_text(STUDY.format(out=tmp_path / "study"))
    ran = _mmcore(env, package, "study", "run", "study.yaml", "--jobs", "2")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = (tmp_path / "study" / "study.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| mine − ")]
    assert [row.split(" | ")[0] for row in rows] == ["| mine − relative-advantage", "| mine − uniform"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "5" and cells[-1] in VERDICTS, row  # n, and a verdict rather than "n too small"
        assert re.fullmatch(r"\[-?\d\.\d{4}, -?\d\.\d{4}\]", cells[4]), row  # the 95 % interval
    # the scaffold's balancer weighs something: at weight 3 it is not uniform weighting (aimed at
    # `recon`, which this model lacks, it weighed nothing and every difference was exactly 0)
    assert float(rows[1].strip("|").split("|")[3]) != 0.0, rows[1]
    assert "Holm over exactly these 2 declared comparisons." in report
    assert "verdict: win or loss when the Holm p is below 0.05" in report  # what the word means
    assert ("Scope: 5 seeds per cell, 1 epoch, recipe newbal.yaml, no tuning. Not shown: other data, budgets "
            "or settings, cells not run, and equal methods behind a tie.") in report  # what it does not show
    assert "| mine |" in report and "cost per arm" in report


def test_scaffolded_balancer_weighs_a_group_the_model_has(tmp_path: Path, monkeypatch) -> None:
    """The balancer-only scaffold used to aim `recon` in a model without it (the default imputer
    has no loss group): its recipe, its tests and the study above trained a balancer that weighed
    nothing, and an edit to `weights()` changed no number. Now the template weighs the unimodal
    heads, which its recipe turns on, and says so when they are gone; the message named the heads
    twice."""
    import importlib

    from mmcore.errors import RecipeError
    from mmcore.plugins import load_plugins
    from mmcore.recipe import load_recipe

    package = tmp_path / "mmcore-solo"
    assert CliRunner().invoke(app, ["new", "plugin", "solo", "--kinds", "balancer", "--dir", str(package)]).exit_code == 0
    monkeypatch.syspath_prepend(str(package))
    registry = load_plugins(extra={"solo": importlib.import_module("mmcore_solo.plugin")}).registry
    recipe = package / "recipes" / "solo.yaml"
    resolved = load_recipe(recipe, [], registry)
    assert resolved["balancer"]["target"] == "unimodal" and resolved["model"]["unimodal_heads"]
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe, ["~model.unimodal_heads"], registry)
    assert str(info.value) == (
        f"{recipe}: balancer.target: 'unimodal' is not a loss group of this model (imputer 'mmcore.zero'), "
        "and solo.flat weighs its target; available: none; set model.unimodal_heads=true, or balancer=mmcore.uniform")


SMALL = """\
name: small
recipe: recipe.yaml
budget: {budget}
seeds: 2
arms:
  uniform: {{balancer: mmcore.uniform}}
  dropout: {{from: uniform, train.modality_dropout: 0.3}}
analysis:
  primary: test.average.macro_f1
  compare: [[dropout, uniform]]
"""


def _small_study(tmp_path: Path, budget: str) -> Path:
    from test_study_ports import RECIPE  # the tiny two-modality recipe: 3 steps an epoch at batch 64

    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "study.yaml").write_text(SMALL.format(budget=budget))
    return tmp_path / "study.yaml"


def test_a_step_budget_that_is_not_whole_epochs_is_said_once(tmp_path: Path) -> None:
    """Shrinking a study's budget to try it is the first thing a newcomer does; a budget off the
    epoch grid printed the same refusal once per arm and cell (14 lines for a 4-arm study)."""
    path = _small_study(tmp_path, "{steps: 4}")
    result = CliRunner().invoke(app, ["study", "run", str(path), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("is not a whole number of epochs") == 1, result.output
    assert (f"{path}: budget.steps: 4 is not a whole number of epochs at arm uniform, base and every run with "
            "its data and batch (") in result.output
    assert "3 steps per epoch); expected a multiple of 3, e.g. 3 or 6" in result.output


def test_a_study_whose_runs_failed_ends_saying_what_to_do(tmp_path: Path, monkeypatch) -> None:
    """The per-run "failed" lines scroll by and the study exited 1 with nothing after them: now a
    last line says how many did not finish, that no outputs were written, and the two ways on."""
    from mmcore.study import execute

    def failing(run_dir: str, resume: bool, log: str, env: Any = None, started: Any = None) -> int:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        Path(log).write_text("RuntimeError: the method blew up\n")
        return 1

    monkeypatch.setattr(execute, "execute", failing)
    path = _small_study(tmp_path, "{epochs: 1}")
    out = tmp_path / "d"
    result = CliRunner().invoke(app, ["study", "run", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"error: 4 of 4 runs did not finish (listed above; logs in {out / 'logs'}), so the study's outputs were "
        f"not written: fix the cause and run 'mmcore study run {path}' again (finished runs are kept), or "
        f"'mmcore study report {path}' for the finished runs alone")
    assert not (out / "study.md").exists()


@pytest.mark.parametrize(("budget", "tune", "said"), [
    ({"steps": 1}, None, "3 seeds per cell, 1 optimiser step, recipe r.yaml, no tuning."),
    ({"epochs": 40}, object(), "3 seeds per cell, 40 epochs, recipe r.yaml, settings tuned on validation (the tuning table)."),
    ({}, None, "3 seeds per cell, the recipe's epochs, recipe r.yaml, no tuning."),
])
def test_the_scope_note_says_what_the_verdicts_stand_on(budget: dict[str, int], tune: Any, said: str) -> None:
    from types import SimpleNamespace

    from mmcore.study.outputs import scope_note

    study = SimpleNamespace(budget=budget, tune=tune, seeds=[0, 1, 2], recipe=Path("/x/r.yaml"))
    assert scope_note(study) == f"Scope: {said} Not shown: other data, budgets or settings, cells not run, and equal methods behind a tie."
