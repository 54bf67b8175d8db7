"""mmcore sweep: bad options are refused in one line, exit 1, before any run starts (fuzz D1–D6).

A monkeypatched ``_execute`` stands for training: reaching it means every check passed, and the
tests that expect an error fail if it is ever called.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mmcore.sweep.sweep as sweep_module
from mmcore.cli import app
from test_sweep import RECIPE  # the tiny two-modality recipe, its output folder a field

runner = CliRunner()

class Started(Exception):
    """Raised in place of training: the sweep got past every check."""


@pytest.fixture
def recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    def no_training(*args: object, **kwargs: object) -> None:
        raise Started

    monkeypatch.setattr(sweep_module, "_execute", no_training)
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE.format(output=tmp_path / "runs"))
    return path


def refused(args: list[str], *expected: str) -> str:
    """The sweep's output for ``args``: one line holding every ``expected`` text, exit 1, no run."""
    result = runner.invoke(app, ["sweep", *args])
    assert not isinstance(result.exception, Started), "a run started despite the bad option"
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    for text in expected:
        assert text in result.output, result.output
    return result.output


def accepted(args: list[str]) -> None:
    result = runner.invoke(app, ["sweep", *args])
    assert isinstance(result.exception, Started), result.output


def test_unknown_metric_is_refused_before_training(recipe, tmp_path):  # D1
    out = tmp_path / "sw"
    refused([str(recipe), "--seeds", "0", "--metrics", "nonexist_metric", "--out", str(out)],
            "--metrics: 'nonexist_metric' is not a classification metric; expected one of", "macro_f1")
    refused([str(recipe), "--metrics", "macro_f1,mae", "--out", str(out)], "'mae' is not a classification metric")
    assert not out.exists()
    accepted([str(recipe), "--metrics", "macro_f1,accuracy", "--out", str(out)])


def test_unknown_task_checks_against_every_metric(recipe, tmp_path, monkeypatch):  # D1, task unknown
    monkeypatch.setattr("mmcore.recipe.crosschecks.describe_dataset", lambda node, registry: None)
    out = tmp_path / "sw"
    refused([str(recipe), "--metrics", "nonexist_metric", "--out", str(out)], "is not a known metric", "mae")
    accepted([str(recipe), "--metrics", "mae", "--out", str(out)])


@pytest.mark.parametrize("metrics", ["", " ", "macro_f1,,accuracy", "macro_f1,"])
def test_empty_metrics_are_refused(recipe, tmp_path, metrics):  # D2
    refused([str(recipe), "--metrics", metrics, "--out", str(tmp_path / "sw")], "--metrics: expected comma-separated")


def test_empty_out_is_refused(recipe, tmp_path, monkeypatch):  # D3
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    refused([str(recipe), "--out", ""], "--out: expected a folder path")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_out_that_is_not_a_sweep_folder_is_refused(recipe, tmp_path):  # D4
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "eval.json").write_text("{}")
    (run_dir / "recipe.yaml").write_text("name: x\n")
    refused([str(recipe), "--out", str(run_dir)], f"--out: {run_dir} is not empty and not a sweep folder")
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "eval.json", "recipe.yaml"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused([str(recipe), "--out", str(other)], "not a sweep folder")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def test_out_that_is_empty_or_a_sweep_folder_is_accepted(recipe, tmp_path):  # D4: restarts still work
    empty = tmp_path / "empty"
    empty.mkdir()
    accepted([str(recipe), "--seeds", "0", "--out", str(empty)])
    earlier = tmp_path / "earlier"
    (earlier / "points").mkdir(parents=True)
    (earlier / "sweep.json").write_text(json.dumps({"points": []}))
    (earlier / "sweep.log").write_text("")
    (earlier / "results.csv").write_text("")
    accepted([str(recipe), "--seeds", "0", "--out", str(earlier)])
    stopped = tmp_path / "stopped"  # stopped before sweep.json was written: only the sweep's own entries
    (stopped / "logs").mkdir(parents=True)
    accepted([str(recipe), "--seeds", "0", "--out", str(stopped)])


def test_jobs_with_jobs_per_device_is_refused(recipe, tmp_path):  # D5
    out = tmp_path / "sw"
    refused([str(recipe), "--jobs", "3", "--jobs-per-device", "1", "--out", str(out)], "--jobs: not with --jobs-per-device")
    refused([str(recipe), "--jobs", "1", "--jobs-per-device", "1", "--out", str(out)], "--jobs: not with --jobs-per-device")
    accepted([str(recipe), "--jobs-per-device", "1", "--out", str(out)])
    accepted([str(recipe), "--jobs", "2", "--out", str(out)])


@pytest.mark.parametrize(("option", "value"), [("--ray-address", "x:1"), ("--ray-gpus", "1"), ("--ray-gpus", "0")])
def test_ray_options_need_the_ray_backend(recipe, tmp_path, option, value):  # D6
    out = tmp_path / "sw"
    refused([str(recipe), option, value, "--out", str(out)], f"{option}: only with --backend ray")
    refused([str(recipe), option, value, "--backend", "local", "--out", str(out)], f"{option}: only with --backend ray")
    assert not out.exists()
