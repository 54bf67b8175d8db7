"""tune.optuna: seeded TPE trials (the extra ``tune``), the choice on validation, restart without
redoing a trial; without optuna, one line naming the extra. Tiny synthetic runs on the CPU."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.study.run import run_study
from mmcore.study.spec import load_study

RECIPE = """\
name: tiny
device: cpu
dataset: {type: mmcore.synthetic, modalities: 2, classes: 3, samples: 120, dim: 4}
missing: {train: {rates: {m0: 0.3, m1: 0.3}}, eval: {conditions: all}}
model: {dim: 4, encoders: {default: {type: mmcore.mlp, layers: [4]}}, fusion: {type: mmcore.concat, layers: [4]}}
train: {epochs: 1, batch_size: 32, log_every: 1}
"""
STUDY = """\
name: t
recipe: recipe.yaml
budget: {epochs: 1}
seeds: [0]
arms:
  uniform: {balancer: mmcore.uniform}
tune:
  space: {train.optimizer.lr: {low: 1.0e-3, high: 3.0e-2, log: true}, train.modality_dropout: [0.0, 0.2]}
  optuna: {trials: 3, seed: 7}
  seeds: [0]
analysis: {primary: test.average.macro_f1}
"""


def _study(tmp_path: Path, text: str = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "study.yaml").write_text(text)
    return tmp_path / "study.yaml"


def test_tpe_trials_choose_on_validation_and_restart_redoes_nothing(tmp_path):
    pytest.importorskip("optuna")
    path, out = _study(tmp_path), tmp_path / "d"
    quiet = Console(file=io.StringIO())
    state, outcomes = run_study(path, out=out, console=quiet)
    assert [o.status for o in outcomes] == ["done"] * 4  # 3 trials x 1 tuning seed, then the run
    table = json.loads((out / "tune.json").read_text())["uniform"]
    assert [t["candidate"] for t in table["trials"]] == ["t0", "t1", "t2"]
    values = [t["values"] for t in table["trials"]]
    assert all(1e-3 <= v["train.optimizer.lr"] <= 3e-2 and v["train.modality_dropout"] in (0.0, 0.2) for v in values)
    assert len({v["train.optimizer.lr"] for v in values}) == 3
    best = max(table["trials"], key=lambda t: t["mean"])
    assert table["chosen"] == best["values"] == state.main[0].values
    assert state.main[0].recipe["train"]["optimizer"]["lr"] == best["values"]["train.optimizer.lr"]
    assert "tuning (val.macro_f1, validation only)" in (out / "study.md").read_text()
    # a restart asks the seeded sampler again, finds the same values recorded, and trains nothing
    again, outcomes = run_study(path, out=out, console=quiet)
    assert all(o.status == "skipped" for o in outcomes) and again.main[0].values == table["chosen"]


def test_bad_optuna_space_is_one_line(tmp_path):
    path = _study(tmp_path, STUDY.replace("{low: 1.0e-3, high: 3.0e-2, log: true}", "{low: 0, high: 3.0e-2, log: true}"))
    result = CliRunner().invoke(app, ["study", "run", str(path)])
    assert result.exit_code == 2 and "tune.space.train.optimizer.lr: expected a range" in result.output
    grid = _study(tmp_path, STUDY.replace("  optuna: {trials: 3, seed: 7}\n", ""))
    with pytest.raises(Exception, match="expected a non-empty list of values"):
        load_study(grid)  # a range needs optuna: the grid has no way to enumerate it


def test_without_optuna_the_study_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    path = _study(tmp_path)
    result = CliRunner().invoke(app, ["study", "run", str(path), "--out", str(tmp_path / "d")])
    assert result.exit_code != 0 and "optional extra 'tune'" in result.output and "Traceback" not in result.output
