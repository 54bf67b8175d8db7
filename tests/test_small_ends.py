"""Small user-facing defects found by audits: each test failed before its fix.

The export README that named inputs an ONNX file does not have, the screenshot script that
exited 127 in silence, the CLI's rule lines as wide as a pipe allows, the scaffold README's
list of kinds, the sweep report's Holm family, and Shapley's "not evaluated" for a diverged value.
"""

from __future__ import annotations

import html
import os
import re
import runpy
import subprocess
from pathlib import Path

import pytest
import torch

from mmcore.after.export import export_run
from mmcore.engine.trainer import run as train_run
from mmcore.testing import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(out: Path, *overrides: str) -> Path:
    recipe = tiny_recipe(out, "train.epochs=1", "dataset.modalities=2", "dataset.samples=120",
                         *overrides, missing={"train": {"rates": {"m0": 0.3, "m1": 0.3}}, "eval": {"conditions": "all"}})
    return train_run(recipe, show_progress=False).run_dir


def _readme_code(run_dir: Path) -> str:
    text = (run_dir / "exports" / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.S).group(1)


def _run_example(run_dir: Path) -> dict:
    """Runs the README's example where a user would, next to the file."""
    before = Path.cwd()
    os.chdir(run_dir / "exports")
    try:
        return runpy.run_path(str(_write(run_dir, _readme_code(run_dir))))
    finally:
        os.chdir(before)


def _write(run_dir: Path, code: str) -> Path:
    path = run_dir / "example.py"
    path.write_text(code)
    return path


# 1: the ONNX README listed "(lengths: any [B] int64)" for vector inputs the file does not have,
# and its example fed 'x.m0' whatever the run's modalities; neither example ran as printed
def test_export_readme_example_runs_for_torchscript_and_names_unused_lengths(tmp_path: Path) -> None:
    run_dir = _train(tmp_path)
    record = export_run(run_dir, "torchscript")
    assert record["inputs"] == ["m0: [B, 8] float32 (its lengths: any [B] int64, unused)",
                                "m1: [B, 8] float32 (its lengths: any [B] int64, unused)", "present: [B, 2] bool"]
    prediction = _run_example(run_dir)["prediction"]
    assert prediction.shape == (2, 4) and torch.isfinite(prediction).all()


@pytest.mark.parametrize("sequence", [False, True], ids=["vectors", "sequences"])
def test_onnx_readme_lists_the_files_own_inputs_and_its_example_runs(tmp_path: Path, sequence: bool) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    overrides = ("dataset.sequence=true", "dataset.max_len=5") if sequence else ()
    run_dir = _train(tmp_path, *overrides)
    record = export_run(run_dir, "onnx")
    if sequence:
        assert record["inputs"] == ["x.m0: [B, 5, 8] float32", "x.m1: [B, 5, 8] float32", "len.m0: [B] int64",
                                    "len.m1: [B] int64", "present: [B, 2] bool"]
    else:  # the exporter pruned the vectors' unused lengths: the README must not ask for them
        assert record["inputs"] == ["x.m0: [B, 8] float32", "x.m1: [B, 8] float32", "present: [B, 2] bool"]
    assert "lengths: any" not in (run_dir / "exports" / "README.md").read_text()
    prediction = _run_example(run_dir)["prediction"]
    assert prediction.shape == (2, 4)


# 2: without chromium the script trained a run, then exited 127 with nothing said (its
# `2>/dev/null` on chromium hid "command not found")
def test_report_screenshot_without_chromium_says_so_before_training(tmp_path: Path) -> None:
    empty = tmp_path / "bin"  # a PATH with nothing on it: no chromium, whatever this machine has
    empty.mkdir()
    result = subprocess.run(["/bin/bash", str(ROOT / "benchmarks" / "report_screenshot.sh"), str(tmp_path / "out")],
                            env={"PATH": str(empty)}, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("report_screenshot.sh: 'chromium' is not on PATH "
                             "(install it: apt-get install -y chromium)\n")
    assert not (tmp_path / "out").exists()  # stopped before anything was made


# 3: `mmcore components KIND | head`: the header rule was PIPE_WIDTH (1000) dashes wide
def test_components_rules_stay_readable_when_piped_and_text_still_does_not_wrap() -> None:
    from typer.testing import CliRunner

    from mmcore.cli import app
    from mmcore.clitools import PIPE_RULE_WIDTH

    result = CliRunner().invoke(app, ["components", "imputer"])
    assert result.exit_code == 0
    rule = result.output.splitlines()[0]
    assert rule.startswith("imputer ─") and set(rule[len("imputer "):]) == {"─"}
    assert len(rule) <= PIPE_RULE_WIDTH


def test_a_piped_console_draws_rules_100_wide_and_keeps_long_lines_whole(monkeypatch, capsys) -> None:
    from mmcore.clitools import PIPE_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()  # pytest's captured stdout is not a terminal
    console.rule("kind", align="left")
    console.print("x" * 150, soft_wrap=True)
    assert console.width == PIPE_WIDTH
    assert capsys.readouterr().out.splitlines() == ["kind " + "─" * 95, "x" * 150]


# 4: the scaffold README read "a balancer, `mybal.flat` and an imputer, `mybal.mean_of_present`"
@pytest.mark.parametrize(("kinds", "sentence"), [
    ("imputer", "An mmcore plugin with an imputer (`mybal.mean_of_present`)."),
    ("balancer,imputer", "An mmcore plugin with a balancer (`mybal.flat`) and an imputer (`mybal.mean_of_present`)."),
    ("encoder,imputer,fusion", "An mmcore plugin with an encoder (`mybal.mean_mlp`), an imputer "
                               "(`mybal.mean_of_present`) and a fusion (`mybal.masked_mean`)."),
])
def test_scaffold_readme_lists_its_kinds_in_a_sentence(tmp_path: Path, kinds: str, sentence: str) -> None:
    from mmcore.scaffold import new_plugin

    root = new_plugin("mybal", kinds, tmp_path / "pkg")
    assert (root / "README.md").read_text().splitlines()[2] == sentence


# 5: the sweep report said Holm was "across all pairs above" while compare_all leaves the
# pairs without a test out of the family (their Holm p is NaN, the others' is smaller)
def _seeds(*values: float) -> dict[int, dict[str, dict[str, float]]]:
    from mmcore.conditions import AVERAGE

    return {seed: {AVERAGE: {"accuracy": value}} for seed, value in enumerate(values)}


def test_sweep_report_names_the_holm_family_it_used() -> None:
    from mmcore.report import stats
    from mmcore.report.html import Document
    from mmcore.report.sweep import _paired, holm_family

    points = [{"label": "A", "seeds": _seeds(0.9, 0.8, 0.7)}, {"label": "B", "seeds": _seeds(0.5, 0.6, 0.2)},
              {"label": "C", "seeds": _seeds(0.4)}]  # C shares one seed with each: no test
    doc = Document("sweep")
    _paired(doc, points, "accuracy", higher=True)
    text = html.unescape(doc.render())
    assert ("Holm's correction across the 1 of the 3 pairs above that have a test "
            "(the 2 shown n/a are not counted in the family)") in text
    assert "all pairs above" not in text
    ab = stats.compare_all({"A": {0: 0.9, 1: 0.8, 2: 0.7}, "B": {0: 0.5, 1: 0.6, 2: 0.2}, "C": {0: 0.4}})[0]
    assert ab.p_holm == ab.t.p  # a family of one: the text above is what was done
    tested = stats.compare_all({"A": {0: 0.9, 1: 0.8}, "B": {0: 0.5, 1: 0.6}})
    assert holm_family(tested) == "across the 1 pair above"


# 6: Shapley said "were not evaluated" of a subset that was evaluated and came out NaN
def test_shapley_tells_a_diverged_subset_from_one_not_evaluated() -> None:
    from mmcore.report.shapley import shapley

    nan = shapley({"a": 0.5, "b": float("nan"), "a+b": 0.9}, ["a", "b"])
    assert nan.values is None and nan.reason == (
        "not available: 1 of 3 subsets were evaluated but are not finite (b = nan): "
        "the model diverged or the metric is undefined there")
    both = shapley({"a": 0.5, "b": float("inf")}, ["a", "b"]).reason
    assert both == ("not available: 1 of 3 subsets were not evaluated (a+b); evaluate with conditions: all; "
                    "1 of 3 subsets were evaluated but are not finite (b = inf): "
                    "the model diverged or the metric is undefined there")
    assert shapley({"a": 0.5, "b": 0.25, "a+b": 0.75}, ["a", "b"]).values == {"a": 0.5, "b": 0.25}
