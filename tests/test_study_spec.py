"""Study files: parsing, inheritance, restrictions, bad input as one line and exit 2, nothing started;
pre-registration and amendments; the outputs from hand-made run directories (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.study.plan import cells, main_runs
from mmcore.study.spec import StudyError, load_study

from recipe_helpers import SMALL_RECIPE

RECIPE = SMALL_RECIPE

STUDY = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: 5
arms:
  uniform: {balancer: mmcore.uniform}
  dropout: {from: uniform, train.modality_dropout: 0.3}
  dropout-high: {from: dropout, train.modality_dropout: 0.5, only: {rates: [imbalanced]}}
axes:
  rates:
    imbalanced: {missing.train.rates: {m0: 0.1, m1: 0.6}}
    balanced: {missing.train.rates: {m0: 0.35, m1: 0.35}}
analysis:
  primary: test.average.macro_f1
  compare: [[dropout, uniform], [dropout-high, uniform]]
  interaction: {axis: rates, levels: [imbalanced, balanced]}
"""


def _files(tmp_path: Path, study: str = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(output=tmp_path / "out"))
    path = tmp_path / "study.yaml"
    path.write_text(study)
    return path


def test_inheritance_and_restrictions(tmp_path):
    study = load_study(_files(tmp_path))
    assert study.arms["dropout-high"] == {"balancer": "mmcore.uniform", "train.modality_dropout": 0.5}
    assert study.seeds == [0, 1, 2, 3, 4]
    assert [(arm, lv["rates"]) for arm, lv in cells(study)] == [
        ("uniform", "imbalanced"), ("uniform", "balanced"), ("dropout", "imbalanced"),
        ("dropout", "balanced"), ("dropout-high", "imbalanced")]
    assert len(main_runs(study, tmp_path / "d", {})) == 25


@pytest.mark.parametrize("edit, message", [
    (("[dropout-high, uniform]", "[dropout-high, nobody]"), "analysis.compare[1]: 'nobody' is not an arm"),
    (("compare: [[dropout, uniform], [dropout-high, uniform]]", "compare: [[dropout, uniform]]"),
     "arm 'dropout-high' is in no analysis.compare pair"),
    (("    balanced: {missing.train.rates: {m0: 0.35, m1: 0.35}}\n", ""), "'rates' has one level; an interaction needs two"),
    (("seeds: 5", "seeds: 1"), "seeds: expected at least 2 seeds"),
    (("levels: [imbalanced, balanced]}", "levels: [imbalanced, balanced], pairs: [[uniform, dropout]]}"),
     "analysis.interaction.pairs: expected a non-empty list of analysis.compare pairs"),
    (("from: uniform,", "from: nobody,"), "arms.dropout.from: 'nobody' is not an arm"),
    (("only: {rates: [imbalanced]}", "only: {rates: [hot]}"), "arms.dropout-high.only.rates: expected levels"),
    (("budget: {epochs: 1}", "budget: {hours: 1}"), "budget: expected {steps: N} or {epochs: N}"),
])
def test_bad_study_is_one_line_exit_2_nothing_started(tmp_path, edit, message):
    path = _files(tmp_path, STUDY.replace(*edit))
    result = CliRunner().invoke(app, ["study", "run", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and str(path) in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_every_cell_is_validated_before_anything_starts(tmp_path):
    bad = STUDY.replace("{balancer: mmcore.uniform}", "{balancer: mmcore.nope}").replace(
        "train.modality_dropout: 0.5", "train.modality_dropout: 7")
    result = CliRunner().invoke(app, ["study", "run", str(_files(tmp_path, bad))])
    assert result.exit_code == 2 and "mmcore.nope" in result.output and "modality_dropout" in result.output
    assert not (tmp_path / "out").exists()


def _fake_runs(study_dir: Path, study_path: Path) -> None:
    """eval.json files as finished runs would leave them: dropout = uniform + 0.01·(seed+1)."""
    for run in main_runs(load_study(study_path), study_dir, {}):
        bump = 0.01 * (run.seed + 1) if run.arm != "uniform" else 0.0
        gap = 0.02 if run.levels["rates"] == "imbalanced" and run.arm != "uniform" else 0.0
        v = 0.5 + 0.02 * run.seed + bump + gap
        table = {"average": {"macro_f1": v}, "m0": {"macro_f1": v - 0.1}, "m1": {"macro_f1": v - 0.2}, "m0+m1": {"macro_f1": v + 0.3}}
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "eval.json").write_text(json.dumps({"results": {"test": table, "val": table}}))


def test_freeze_amend_and_outputs(tmp_path):
    path = _files(tmp_path)
    out = tmp_path / "study-dir"
    from mmcore.study.freeze import freeze

    freeze(load_study(path), out, None, 0)
    _fake_runs(out, path)
    result = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "study.md").read_text()
    # dropout − uniform at imbalanced: per seed 0.01(s+1) + 0.02 -> mean 0.05 over seeds 0..4
    assert "| dropout − uniform | imbalanced | 5 | 0.0500 |" in md and "Holm over exactly these 3" in md
    assert "(dropout − uniform) at imbalanced − at balanced" in md and "| 1-view | 2-view |" in md
    assert "\\toprule" in (out / "tables.tex").read_text() and (out / "report.html").is_file()
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0] == "study,arm,rates,seed,split,condition,metric,value" and len(rows) == 1 + 25 * 2 * 4

    changed = path.read_text().replace("primary: test.average.macro_f1", "primary: test.m0.macro_f1")
    path.write_text(changed)
    refused = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out)])
    assert refused.exit_code == 2 and "analysis: differs from the one pre-registered" in refused.output
    amended = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out), "--amend", "m0 is the endpoint"])
    assert amended.exit_code == 0, amended.output
    prereg = json.loads((out / "prereg.json").read_text())
    assert prereg["amendments"][0]["reason"] == "m0 is the endpoint" and prereg["amendments"][0]["finished_runs"] == 25
    assert "with 25 finished runs: m0 is the endpoint" in (out / "study.md").read_text()
    again = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out)])
    assert again.exit_code == 0  # the amended analysis is the frozen one now


def test_a_concurrent_first_freeze_stands_and_is_checked(tmp_path, monkeypatch):
    """Two invocations of one study start together: the one that freezes second keeps the first
    freeze (no crash, no overwrite) and checks its own analysis against it."""
    import mmcore.study.freeze as freezing

    path = _files(tmp_path)
    out = tmp_path / "study-dir"
    out.mkdir()
    study = load_study(path)
    theirs = {"file_sha256": "x", "analysis": study.raw.get("analysis"), "frozen_at": "earlier", "amendments": []}
    reads = iter([None])  # this invocation's first read sees no freeze; the other writes one before ours
    real_read = freezing.read_prereg

    def racing_read(study_dir):
        first = next(reads, "real")
        if first is None:
            freezing._write(study_dir, theirs, first=True)
            return None
        return real_read(study_dir)

    monkeypatch.setattr(freezing, "read_prereg", racing_read)
    data = freezing.freeze(study, out, None, 0)
    assert data is not None and data["frozen_at"] == "earlier"  # theirs stands
    assert [p.name for p in out.iterdir()] == ["prereg.json"]  # no aside file left behind

    reads = iter([None])
    theirs["analysis"] = {"primary": "test.m0.macro_f1"}  # the other invocation froze another analysis
    (out / "prereg.json").unlink()
    with pytest.raises(StudyError, match="analysis: differs from the one pre-registered at earlier"):
        freezing.freeze(study, out, None, 0)


def test_the_first_freeze_is_moved_in_where_hard_links_are_unsupported(tmp_path, monkeypatch):
    import os

    import mmcore.study.freeze as freezing

    def no_links(src, dst):
        raise PermissionError(1, "Operation not permitted")  # as on some network or FAT file systems

    monkeypatch.setattr(os, "link", no_links)
    study, out = load_study(_files(tmp_path)), tmp_path / "study-dir"
    data = freezing.freeze(study, out, None, 0)
    assert data is not None and data["analysis"] == study.raw.get("analysis")
    assert [p.name for p in out.iterdir()] == ["prereg.json"]


def test_status_counts_runs(tmp_path):
    path = _files(tmp_path)
    out = tmp_path / "study-dir"
    _fake_runs(out, path)
    result = CliRunner().invoke(app, ["study", "status", str(path), "--out", str(out)])
    assert result.exit_code == 0 and "runs  uniform: 10/10 finished" in result.output


def test_declared_interaction_pairs_are_the_holm_family(tmp_path):
    """``interaction.pairs`` names the primary test: only those pairs get an interaction row, and
    Holm runs over exactly them (one here), never over the undeclared ones."""
    study = STUDY.replace("arms:\n", "arms:\n  other: {balancer: mmcore.uniform, train.modality_dropout: 0.1}\n").replace(
        "compare: [[dropout, uniform], [dropout-high, uniform]]", "compare: [[dropout, uniform], [dropout-high, uniform], [other, uniform]]").replace(
        "levels: [imbalanced, balanced]}", "levels: [imbalanced, balanced], pairs: [[dropout, uniform]]}")
    path = _files(tmp_path, study)
    assert load_study(path).analysis.interaction_pairs == [("dropout", "uniform")]
    out = tmp_path / "study-dir"
    _fake_runs(out, path)
    result = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "study.md").read_text()
    assert "(dropout − uniform) at imbalanced − at balanced" in md and "(other − uniform) at" not in md
    assert "Holm over exactly these 1 interaction tests" in md
