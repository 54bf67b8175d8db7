"""The CLI through typer's test runner: run, resume, validate, show, plugins, components."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.recipe import load_recipe

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
runner = CliRunner()

TINY_RUN = [  # the quickstart (Handwritten, RedCore) shrunk to seconds
    "train.epochs=1",
    "model.dim=8",
    "model.imputer.hidden=[8]",
    "model.imputer.blocks=1",
    "missing.eval.conditions=[fou, fac+kar, fou+fac+kar+pix+zer+mor]",
    "device=cpu",
]


def test_validate_reports_every_problem_at_once(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: broken\n"
        "dataset: {type: mmcore.synthetic}\n"
        "model:\n  imputer: {type: mmcore.zer}\n"
        "train: {epocs: 3, batch_size: big}\n"
    )
    result = runner.invoke(app, ["validate", str(broken)])
    assert result.exit_code == 2
    out = result.output
    assert "Traceback" not in out
    assert "model.imputer.type" in out and "did you mean 'mmcore.zero'" in out
    assert "train.epocs" in out and "did you mean 'epochs'" in out
    assert "train.batch_size" in out and "int" in out
    assert out.count("broken.yaml") >= 3


def test_validate_ok_and_missing_file(tmp_path):
    ok = runner.invoke(app, ["validate", str(RECIPES / "quickstart.yaml")])
    assert ok.exit_code == 0, ok.output
    missing = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml" in missing.output and "Traceback" not in missing.output


def test_show_prints_resolved_recipe_with_overrides():
    result = runner.invoke(app, ["show", str(RECIPES / "quickstart.yaml"), "train.epochs=3", "balancer=mmcore.uniform"])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["train"]["epochs"] == 3
    assert shown["balancer"]["type"] == "mmcore.uniform"
    assert shown["train"]["optimizer"]["betas"] == [0.9, 0.999]  # defaults are filled in


def test_plugins_and_components_listing():
    plugins = runner.invoke(app, ["plugins"])
    assert plugins.exit_code == 0 and "mmcore" in plugins.output and "builtin" in plugins.output
    comps = runner.invoke(app, ["components", "encoder"])
    assert comps.exit_code == 0 and "mmcore.transformer" in comps.output and "mmcore.synthetic" not in comps.output
    bad = runner.invoke(app, ["components", "encoders"])
    assert bad.exit_code == 1 and "did you mean 'encoder'" in bad.output


def test_run_with_node_swap_and_overrides_then_resume(tmp_path):
    args = ["run", str(RECIPES / "quickstart.yaml"), "balancer=mmcore.uniform", "seed=1", f"output={tmp_path}"]
    result = runner.invoke(app, [*args, *TINY_RUN, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "average" in result.output and "test metrics" in result.output and "fac+kar" in result.output
    run_dir = next((tmp_path / "quickstart").iterdir())
    saved = load_recipe(run_dir / "recipe.yaml")
    assert saved["seed"] == 1 and saved["train"]["epochs"] == 1
    again = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])  # finished: says so (test_resume_cli)
    assert again.exit_code == 0 and "finished" in again.output, again.output
    nothing = runner.invoke(app, ["resume", str(tmp_path)])
    assert nothing.exit_code == 1 and "not a run directory" in nothing.output


def test_every_shipped_recipe_validates():
    files = sorted(RECIPES.glob("*.yaml"))
    assert files, "recipes/ is empty"
    for file in files:  # their data is not here: the recipe alone (the machine checks: test_validate_machine)
        result = runner.invoke(app, ["validate", str(file), "--recipe-only"])
        assert result.exit_code == 0, f"{file.name}: {result.output}"
