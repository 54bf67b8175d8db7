"""``mmcore resume`` on a finished run says so and rewrites nothing (exit 0); on a run whose
``recipe.yaml`` was edited after it started, it refuses with the keys that differ (exit 2)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.launch import edited_keys
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe

runner = CliRunner()


def _run(tmp_path: Path, *overrides: str) -> Path:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(dump_yaml(tiny_recipe(tmp_path / "runs", "train.epochs=1", "train.log_every=50")))
    result = runner.invoke(app, ["run", str(recipe), *overrides, "--no-progress"])
    assert result.exit_code == 0, result.output
    return next((tmp_path / "runs" / "tiny").iterdir())


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.rglob("*")) if p.is_file()
    }


def test_resume_of_a_finished_run_says_so_and_rewrites_nothing(tmp_path):
    run_dir = _run(tmp_path)
    before = _files(run_dir)
    again = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert again.exit_code == 0, again.output
    lines = [line for line in again.output.splitlines() if line.strip()]
    assert lines == [f"{run_dir}: finished (eval.json is written); nothing to resume. Evaluate it again with: mmcore eval {run_dir}"]
    assert _files(run_dir) == before  # eval.json, metrics.jsonl, checkpoints: bytes and times unchanged


def test_resume_of_a_finished_run_with_overrides_refuses_them(tmp_path):
    """Overrides on a finished run would be ignored in silence; a malformed one is named as such."""
    run_dir = _run(tmp_path)
    before = _files(run_dir)
    result = runner.invoke(app, ["resume", str(run_dir), "train.max_steps=5", "--no-progress"])
    assert result.exit_code == 1 and "train.max_steps=5 cannot apply, there is nothing to resume" in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    malformed = runner.invoke(app, ["resume", str(run_dir), "a.b", "--no-progress"])
    assert malformed.exit_code == 2 and "'a.b' is not an override; expected KEY=VALUE" in malformed.output
    assert _files(run_dir) == before


def test_resume_refuses_an_edited_recipe_and_names_the_keys(tmp_path):
    run_dir = _run(tmp_path, "train.max_steps=2")  # stopped early: resumable
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    saved["train"]["batch_size"] = 32
    saved["model"]["dim"] = 8
    saved["train"]["max_steps"] = None  # a key a resume may change: not named
    (run_dir / "recipe.yaml").write_text(dump_yaml(saved))
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    refused = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert refused.exit_code == 2, refused.output
    lines = [line for line in refused.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {run_dir / 'recipe.yaml'}: edited after the run started ")
    assert "(model.dim, train.batch_size differ from manifest.json's recipe)" in lines[0]
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics and not (run_dir / "eval.json").exists()
    saved["train"]["batch_size"], saved["model"]["dim"] = 64, 16  # restored: the resume goes on to the end
    (run_dir / "recipe.yaml").write_text(dump_yaml(saved))
    resumed = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert resumed.exit_code == 0 and (run_dir / "eval.json").is_file(), resumed.output


def test_edited_keys_are_dotted_and_leave_out_what_a_resume_may_change():
    started = {"seed": 0, "device": "cuda", "train": {"epochs": 3, "max_steps": 5}, "logging": [{"type": "a"}]}
    now = {"seed": 1, "device": "cpu", "train": {"epochs": 3, "max_steps": None, "extra": 1}, "logging": []}
    assert edited_keys(started, now) == ["seed", "train.extra"]
