"""Bad input to ``mmcore study run|report|check``: one line naming the file and key, a non-zero exit,
and nothing trained or written before the check. No training: studies are refused before their
runs start, and "finished" runs are hand-made eval.json files (as in test_study_ports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.study.plan import level_slug, main_runs
from mmcore.study.run import plan
from mmcore.study.spec import StudyError, load_study
from test_study_ports import RECIPE  # the tiny two-modality recipe

STUDY = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: [0]
arms:
  uniform: {balancer: mmcore.uniform}
  dropout: {from: uniform, train.modality_dropout: 0.3}
analysis:
  primary: test.average.macro_f1
"""


def _study(tmp_path: Path, text: str = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "study.yaml").write_text(text)
    return tmp_path / "study.yaml"


def _cli(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result, code: int, *parts: str) -> str:
    """The error line; exactly one, no traceback, the expected exit code and words."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def _finish(state, value: float = 0.5) -> None:
    """Hand-made finished runs: eval.json with a test and val table."""
    for run in state.main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        table = {"average": {"macro_f1": value + 0.01 * run.seed}, "m0": {"macro_f1": 0.4}, "m1": {"macro_f1": 0.3},
                 "m0+m1": {"macro_f1": 0.6}}
        (run.run_dir / "eval.json").write_text(json.dumps({"results": {"test": table, "val": table}}))


# --- #19: level names joined by '+' must never give two cells one run folder -------------------------------

COLLIDING = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: [0]
arms:
  uniform: {balancer: mmcore.uniform}
analysis:
  primary: test.average.macro_f1
axes:
  x:
    a+b: {train.modality_dropout: 0.0}
    a: {train.modality_dropout: 0.5}
  y:
    c: {seed: 0}
    b+c: {train.optimizer.lr: 0.01}
"""


def test_cells_sharing_a_run_folder_are_refused_before_anything_runs(tmp_path):
    path = _study(tmp_path, COLLIDING)
    result = _cli("study", "run", path, "--out", tmp_path / "d")
    line = _one_line_error(result, 2, str(path), "axes", "runs/uniform/a+b+c")
    assert "x=a+b, y=c" in line and "x=a, y=b+c" in line  # both cells named
    assert not (tmp_path / "d").exists()
    _one_line_error(_cli("study", "status", path, "--out", tmp_path / "d"), 2, "share the run folder")


def test_cells_of_two_arms_sharing_a_level_name_are_refused(tmp_path):
    """With ``only`` each arm has one of the two cells: no shared folder, but the results would pair
    uniform at (a+b, c) with dropout at (a, b+c) as if they were one cell."""
    text = COLLIDING.replace("  uniform: {balancer: mmcore.uniform}\n",
                             "  uniform: {balancer: mmcore.uniform, only: {x: [a+b], y: [c]}}\n"
                             "  dropout: {balancer: mmcore.uniform, train.modality_dropout: 0.3, only: {x: [a], y: [b+c]}}\n")
    with pytest.raises(StudyError, match=r"\(uniform: x=a\+b, y=c\) and \(dropout: x=a, y=b\+c\) share the level name 'a\+b\+c'"):
        plan(_study(tmp_path, text), tmp_path / "d")


def test_level_names_with_a_plus_keep_their_folders_when_they_do_not_collide(tmp_path):
    """Finished runs are found by their folder on restart: the names of studies without a collision
    do not change."""
    text = COLLIDING.replace("    b+c: {train.optimizer.lr: 0.01}\n", "")
    study = load_study(_study(tmp_path, text))
    assert [r.rel for r in main_runs(study, tmp_path / "d", {})] == ["runs/uniform/a+b+c/seed0", "runs/uniform/a+c/seed0"]
    assert level_slug({"x": "a+b", "y": "c"}) == "a+b+c"


# --- #10: the study directory is a regular file -------------------------------------------------------------

def test_output_that_is_a_file_is_one_line_before_any_work(tmp_path):
    path = _study(tmp_path)
    (tmp_path / "afile").write_text("x")
    _one_line_error(_cli("study", "run", path, "--out", tmp_path / "afile"), 2, "--out", "afile", "expected a folder")
    path.write_text(STUDY + "output: afile\n")
    _one_line_error(_cli("study", "run", path), 2, f"{path}: output", "expected a folder")
    assert (tmp_path / "afile").read_text() == "x"


# --- #11 and #24: report on a study never run, or with no finished run ------------------------------------

def test_report_on_a_study_never_run_says_so(tmp_path):
    path = _study(tmp_path)
    _one_line_error(_cli("study", "report", path, "--out", tmp_path / "d"), 2, str(path), "no runs exist yet")
    assert not (tmp_path / "d").exists()


def test_report_says_how_many_runs_finished_and_never_overwrites_with_nothing(tmp_path):
    path, out = _study(tmp_path), tmp_path / "d"
    state = plan(path, out)
    _finish(state)
    result = _cli("study", "report", path, "--out", out)
    assert result.exit_code == 0, result.output
    assert "report from 2 of 2 runs finished" in result.output
    (state.main[0].run_dir / "eval.json").unlink()
    result = _cli("study", "report", path, "--out", out)
    assert result.exit_code == 0 and "report from 1 of 2 runs finished; 1 not finished" in result.output
    before = {name: (out / name).read_bytes() for name in ("study.md", "results.csv")}
    (state.main[1].run_dir / "eval.json").unlink()
    _one_line_error(_cli("study", "report", path, "--out", out), 2, "0 of 2 runs finished", "earlier outputs are kept")
    assert {name: (out / name).read_bytes() for name in before} == before


# --- #12, #31, #27, #34: the expected file of study check, read and checked before any training --------------

EXPECTED = "study: s\ntolerance: 1.0\ncells: {uniform/base: 0.5, dropout/base: 0.5}\n"


@pytest.mark.parametrize("name, content, parts", [
    ("missing", None, ["cannot read", "no such file"]),
    ("nonutf8", b"study: s\xff\ncells: {uniform/base: 0.5, dropout/base: 0.5}\n", ["not UTF-8"]),
    ("duplicate", EXPECTED + "study: s\n", ["duplicate"]),
    ("tolinf", EXPECTED.replace("tolerance: 1.0", "tolerance: .inf"), ["tolerance:", "finite number ≥ 0"]),
    ("tolnan", EXPECTED.replace("tolerance: 1.0", "tolerance: .nan"), ["tolerance:", "finite number ≥ 0"]),
    ("celltolinf", EXPECTED.replace("uniform/base: 0.5", "uniform/base: {mean: 0.5, tolerance: .inf}"),
     ["cells.uniform/base.tolerance:", "finite"]),
    ("meanbool", EXPECTED.replace("0.5, dropout", "true, dropout"), ["cells.uniform/base:", "finite number"]),
    ("meanboolmap", EXPECTED.replace("uniform/base: 0.5", "uniform/base: {mean: true}"), ["cells.uniform/base.mean:"]),
    ("meannan", EXPECTED.replace("0.5, dropout", ".nan, dropout"), ["cells.uniform/base:", "finite number"]),
    ("unknownmetric", EXPECTED + "endpoint: test.average.bogus\n", ["endpoint:", "'bogus' is not a classification metric"]),
    ("trainsplit", EXPECTED + "endpoint: train.average.macro_f1\n", ["endpoint:", "not an evaluated split"]),
    ("badformat", EXPECTED + "endpoint: macro_f1\n", ["endpoint:", "split.condition.metric"]),
    ("unknownkey", EXPECTED + "tolerence: 1.0\n", ["tolerence: unknown key"]),
])
def test_bad_expected_file_is_one_line_before_anything_trains(tmp_path, name, content, parts):
    path, out, expected = _study(tmp_path), tmp_path / "d", tmp_path / f"{name}.yaml"
    if isinstance(content, bytes):
        expected.write_bytes(content)
    elif content is not None:
        expected.write_text(content)
    _one_line_error(_cli("study", "check", path, "--expected", expected, "--out", out), 2, str(expected), *parts)
    assert not out.exists()  # nothing frozen, nothing trained


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_expected_file_that_is_a_fifo_never_blocks(tmp_path):
    path, out, fifo = _study(tmp_path), tmp_path / "d", tmp_path / "e.yaml"
    os.mkfifo(fifo)
    _one_line_error(_cli("study", "check", path, "--expected", fifo, "--out", out), 2, str(fifo), "not a regular file")
    assert not out.exists()


def test_check_compares_and_an_endpoint_no_run_reports_is_an_error_not_a_failure(tmp_path):
    path, out = _study(tmp_path), tmp_path / "d"
    _finish(plan(path, out), value=0.5)  # both runs finished: study check only reads
    good = tmp_path / "good.yaml"
    good.write_text("study: s\ntolerance: 1.0e-9\ncells: {uniform/base: 0.5, dropout/base: {mean: 0.4, tolerance: 0.2}}\n")
    result = _cli("study", "check", path, "--expected", good, "--out", out)
    assert result.exit_code == 0 and result.output.count("pass") == 2, result.output
    condition = tmp_path / "condition.yaml"
    condition.write_text("study: s\nendpoint: test.nowhere.macro_f1\ncells: {uniform/base: 0.5, dropout/base: 0.5}\n")
    _one_line_error(_cli("study", "check", path, "--expected", condition, "--out", out), 2,
                    "endpoint: 'test.nowhere.macro_f1' is in no finished run's results", "average")


# --- #25: --jobs ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_refused_as_sweep_refuses_it(tmp_path, jobs):
    path = _study(tmp_path)
    _one_line_error(_cli("study", "run", path, "--out", tmp_path / "d", "--jobs", jobs), 2,
                    f"--jobs: expected an integer >= 1, got {jobs}")
    _one_line_error(_cli("study", "check", path, "--expected", path, "--out", tmp_path / "d", "--jobs", jobs), 2, "--jobs")
    assert not (tmp_path / "d").exists()


# --- #9: a failure before any run starts leaves no study directory behind ----------------------------------

def test_analysis_that_cannot_be_frozen_leaves_nothing_and_a_corrected_rerun_freezes(tmp_path):
    path, out = _study(tmp_path), tmp_path / "deep" / "d"
    path.write_text(STUDY.replace("  primary: test.average.macro_f1\n",
                                  "  primary: test.average.macro_f1\n  higher_is_better: 2020-01-01\n"))
    # refused by the study file's parser or, at the latest, by the freeze: never a traceback
    _one_line_error(_cli("study", "run", path, "--out", out), 2, str(path), "analysis.higher_is_better")
    assert not (tmp_path / "deep").exists()


def test_freeze_refuses_a_value_json_cannot_hold_before_making_the_folder(tmp_path):
    import dataclasses
    import datetime

    from mmcore.study.freeze import freeze

    study = load_study(_study(tmp_path))
    raw = {**study.raw, "analysis": {**study.raw["analysis"], "secondary": [datetime.date(2020, 1, 1)]}}
    with pytest.raises(StudyError, match=r"study.yaml: analysis.secondary\[0\]: 2020-01-01 \(date\) cannot be frozen"):
        freeze(dataclasses.replace(study, raw=raw), tmp_path / "d", None, 0)
    assert not (tmp_path / "d").exists()


def test_a_failed_first_freeze_removes_the_folders_it_made(tmp_path, monkeypatch):
    from mmcore.study import freeze as freeze_module
    from mmcore.study.run import run_study

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    path, out = _study(tmp_path), tmp_path / "deep" / "d"
    monkeypatch.setattr(freeze_module, "_write", full_disk)
    with pytest.raises(OSError):
        run_study(path, out=out)
    assert not (tmp_path / "deep").exists()
    monkeypatch.undo()
    freeze_module.freeze(load_study(path), out, None, 0)  # the corrected rerun's freeze is not blocked
    assert (out / "prereg.json").is_file() and [p.name for p in out.iterdir()] == ["prereg.json"]
