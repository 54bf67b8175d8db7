"""budget: {steps: N} becomes whole epochs per run, the recipe's schedule scales with the budget,
and a run trained under a step budget makes exactly N optimiser steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.record import RunRecord
from mmcore.study.run import plan

# 200 samples, 15 % val and 15 % test per class: 140 training rows, batch 64 -> 3 steps an epoch
RECIPE = """\
name: tiny
device: cpu
dataset: {type: mmcore.synthetic, modalities: 2, classes: 3, samples: 200, dim: 4}
missing: {train: {rates: {m0: 0.3, m1: 0.3}}, eval: {conditions: all}}
model: {dim: 4, encoders: {default: {type: mmcore.mlp, layers: [4]}}, fusion: {type: mmcore.concat, layers: [4]}}
train: {epochs: 4, batch_size: 64, log_every: 1, schedule: {type: linear, constant_epochs: 2, warmup_epochs: 1}}
"""
STUDY = """\
name: b
recipe: recipe.yaml
budget: {steps: 6}
seeds: 2
arms:
  uniform: {balancer: mmcore.uniform}
  held: {balancer: mmcore.uniform, train.schedule.constant_epochs: 1}
analysis: {primary: test.average.macro_f1, compare: [[held, uniform]]}
"""


def _study(tmp_path: Path, text: str = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "study.yaml").write_text(text)
    return tmp_path / "study.yaml"


def test_steps_become_epochs_and_the_schedule_scales(tmp_path):
    runs = {r.arm: r.recipe["train"] for r in plan(_study(tmp_path), tmp_path / "d").main}
    assert runs["uniform"]["epochs"] == 2  # 6 steps / 3 per epoch
    # the recipe's 2 of 4 constant epochs and 1 warm-up epoch, scaled to 2 epochs: 1 and round(0.5) = 0
    assert runs["uniform"]["schedule"]["constant_epochs"] == 1 and runs["uniform"]["schedule"]["warmup_epochs"] == 0
    assert runs["held"]["schedule"]["constant_epochs"] == 1  # set by the arm: it stands


def test_epoch_budget_scales_the_schedule_too(tmp_path):
    path = _study(tmp_path, STUDY.replace("budget: {steps: 6}", "budget: {epochs: 8}"))
    train = plan(path, tmp_path / "d").main[0].recipe["train"]
    assert train["epochs"] == 8 and train["schedule"]["constant_epochs"] == 4 and train["schedule"]["warmup_epochs"] == 2


def test_a_budget_that_is_not_whole_epochs_is_one_line(tmp_path):
    path = _study(tmp_path, STUDY.replace("budget: {steps: 6}", "budget: {steps: 7}"))
    result = CliRunner().invoke(app, ["study", "run", str(path), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}: budget.steps: 7 is not a whole number of epochs" in result.output
    assert "3 steps per epoch); expected a multiple of 3, e.g. 6 or 9" in result.output
    assert not (tmp_path / "d").exists()


def test_a_run_under_a_step_budget_makes_exactly_that_many_steps(tmp_path):
    path = _study(tmp_path, STUDY.replace("seeds: 2", "seeds: [0]").replace(
        "  held: {balancer: mmcore.uniform, train.schedule.constant_epochs: 1}\n", "").replace(
        ", compare: [[held, uniform]]", ""))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mmcore", "study", "run", str(path), "--out", str(tmp_path / "d")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    record = RunRecord(tmp_path / "d" / "runs" / "uniform" / "base" / "seed0")
    assert record.finished and record.steps_done() == 6
