"""The study files under studies/ (the former docs/ scripts) and the study features they need:
``only`` as a union of restrictions, ``tuned_as``, named Holm families, several interactions,
per-condition tables. No training: plans are checked and outputs come from hand-made eval.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.study.plan import cells, level_slug, main_runs, tune_runs
from mmcore.study.run import plan
from mmcore.study.spec import load_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = sorted((ROOT / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_shipped_study_validates(path, tmp_path):
    """Every run of every shipped study (tuning candidates included) passes recipe validation."""
    state = plan(path, tmp_path / "d")
    assert state.main and len({r.rel for r in state.main}) == len(state.main)


def test_protocol_pilot_has_the_former_scripts_cells():
    study = load_study(ROOT / "studies" / "protocol-pilot.yaml")
    found = {(arm, level_slug(lv)) for arm, lv in cells(study)}
    assert len(found) == 27 and len(main_runs(study, Path("d"), {})) == 135
    assert ("redcore", "imbalanced2+resample") not in found and ("redcore", "balanced+resample") in found
    assert ("zero", "imbalanced+resample") not in found and ("mmin0-dropout", "imbalanced2+fixed") not in found
    # 5 tuned methods x 4 rates, seed 0; the dropout arms train at their method's chosen rate
    tune = tune_runs(study, Path("d"))
    assert len(tune) == 20 and {r.arm for r in tune} == {"redcore", "vib-uniform", "mmin", "mmin0", "zero"}
    chosen = {"redcore": {"train.optimizer.lr": 0.003}, "mmin0": {"train.optimizer.lr": 0.01}}
    runs = {r.arm: r.values for r in main_runs(study, Path("d"), chosen)}
    assert runs["redcore-dropout"] == runs["redcore"] == {"train.optimizer.lr": 0.003}
    assert runs["mmin0-dropout"] == {"train.optimizer.lr": 0.01}


STUDY = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: 5
arms:
  a: {balancer: mmcore.uniform, only: [{policy: fixed}, {rates: [hi]}]}
  b: {from: a, train.modality_dropout: 0.3}
  c: {from: a, train.modality_dropout: 0.1, tuned_as: a, only: {policy: fixed}}
axes:
  rates: {hi: {missing.train.rates: {m0: 0.1, m1: 0.6}}, lo: {missing.train.rates: {m0: 0.35, m1: 0.35}}}
  policy: {fixed: {missing.train.policy: fixed}, resample: {missing.train.policy: resample}}
tune: {space: {train.optimizer.lr: [0.001, 0.003]}, seeds: 1, at: {rates: hi, policy: fixed}}
analysis:
  primary: test.average.macro_f1
  compare: {main: [[b, a]], other: [[c, a], [c, b]]}
  interaction: [{axis: rates, levels: [hi, lo]}, {axis: policy, levels: [fixed, resample]}]
"""
RECIPE = """\
name: tiny
device: cpu
dataset: {type: mmcore.synthetic, modalities: 2, classes: 3, samples: 200, dim: 8}
missing: {train: {rates: {m0: 0.3, m1: 0.3}}, eval: {conditions: all}}
model: {dim: 8, encoders: {default: {type: mmcore.mlp, layers: [8]}}, fusion: {type: mmcore.concat, layers: [8]}}
train: {epochs: 1, batch_size: 64}
"""


def _study(tmp_path: Path, text: str = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "study.yaml").write_text(text)
    return tmp_path / "study.yaml"


def test_only_is_a_union_and_tuned_as_skips_tuning(tmp_path):
    study = load_study(_study(tmp_path))
    assert [level_slug(lv) for arm, lv in cells(study) if arm == "b"] == ["hi+fixed", "hi+resample", "lo+fixed"]
    assert [level_slug(lv) for arm, lv in cells(study) if arm == "c"] == ["hi+fixed", "lo+fixed"]
    assert {r.arm for r in tune_runs(study, tmp_path)} == {"a", "b"}
    assert study.analysis.families == {"main": [("b", "a")], "other": [("c", "a"), ("c", "b")]}


@pytest.mark.parametrize("edit, message", [
    (("tuned_as: a", "tuned_as: c"), "arms.c.tuned_as: expected another arm"),
    (("only: [{policy: fixed}, {rates: [hi]}]", "only: [{policy: fixed}, {rates: [warm]}]"), "arms.a.only.rates: expected levels"),
    (("other: [[c, a], [c, b]]", "other: [[c, z]]"), "analysis.compare.other[0]: 'z' is not an arm"),
    (("levels: [fixed, resample]", "levels: [fixed, fixed]"), "analysis.interaction[1].levels"),
])
def test_bad_new_keys_are_one_line(tmp_path, edit, message):
    result = CliRunner().invoke(app, ["study", "status", str(_study(tmp_path, STUDY.replace(*edit)))])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_families_interactions_and_condition_tables(tmp_path):
    """Holm within each named family; both interactions; a per-condition table per cell."""
    path = _study(tmp_path)
    out = tmp_path / "d"
    study = load_study(path)
    for run in main_runs(study, out, {"a": {"train.optimizer.lr": 0.001}, "b": {"train.optimizer.lr": 0.001}}):
        bump = {"a": 0.0, "b": 0.01 * (run.seed + 1), "c": 0.02}[run.arm]
        v = 0.5 + 0.03 * run.seed + bump
        table = {"average": {"macro_f1": v}, "m0": {"macro_f1": v - 0.1}, "m1": {"macro_f1": v - 0.2}, "m0+m1": {"macro_f1": v + 0.3}}
        run.run_dir.mkdir(parents=True)
        ceiling = {c: {"macro_f1": 0.95} for c in table}  # the data's Bayes ceiling (mmcore.oracle)
        oracle = {"method": "test", "results": {"test": ceiling, "val": ceiling}}
        (run.run_dir / "eval.json").write_text(json.dumps({"results": {"test": table, "val": table}, "oracle": oracle}))
    result = CliRunner().invoke(app, ["study", "report", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    md = (out / "study.md").read_text()
    # family main: b − a on its 3 cells; family other: c − a and c − b on the 2 cells c runs on
    assert "paired differences over seeds, family main" in md and "Holm over exactly these 3 declared" in md
    assert "paired differences over seeds, family other" in md and "Holm over exactly these 4 declared" in md
    assert "| (b − a) at hi − at lo | fixed | 5 | 0.0000 |" in md  # b − a does not depend on rates
    assert "| (b − a) at fixed − at resample | hi | 5 | 0.0000 |" in md
    assert "## test macro_f1 per condition at hi+fixed (mean over seeds)" in md
    assert "| m0+m1 | 0.8600 | 0.8900 | 0.8800 | 0.9500 |" in md  # 0.5 + 0.06 + 0.3 (+ 0.03 for b, + 0.02 for c); ceiling
    assert "| condition | a | b | c | Bayes ceiling |" in md


def test_regression_study_refuses_a_classification_balancer(tmp_path):
    text = (ROOT / "studies" / "regression-smoke.yaml").read_text()
    text = text.replace("recipe: regression/recipe.yaml", f"recipe: {ROOT / 'studies' / 'regression' / 'recipe.yaml'}")
    (tmp_path / "s.yaml").write_text(text.replace("balancer: baselines.gblending", "balancer: baselines.pmr"))
    result = CliRunner().invoke(app, ["study", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and "baselines.pmr is defined for classification only" in result.output
    assert not (tmp_path / "d").exists()


def test_the_chosen_rate_is_the_best_on_validation_not_on_test(tmp_path):
    """The former protocol_tables.py --chosen: per tuned arm, the best mean validation score."""
    from mmcore.study.run import choose

    study = load_study(_study(tmp_path))
    runs = tune_runs(study, tmp_path / "d")
    for run in runs:
        lr = run.values["train.optimizer.lr"]
        val = {"average": {"macro_f1": 0.9 if (lr == 0.003) == (run.arm == "a") else 0.5}}
        test = {"average": {"macro_f1": 1.4 - val["average"]["macro_f1"]}}  # test prefers the other rate
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "eval.json").write_text(json.dumps({"results": {"val": val, "test": test}}))
    chosen, table = choose(study, runs)
    assert chosen == {"a": {"train.optimizer.lr": 0.003}, "b": {"train.optimizer.lr": 0.001}}
    assert [t["mean"] for t in table["a"]["trials"]] == [0.5, 0.9] and "c" not in table
    assert {r.arm: r.values for r in main_runs(study, tmp_path / "d", chosen)}["c"] == {"train.optimizer.lr": 0.003}


def test_balancer_values_over_training_per_arm_and_cell(tmp_path):
    """RedCore's beta from metrics.jsonl (mmcore.study.mechanism), mean over seeds at shared steps,
    as a table of the last values in study.md; uniform logs none."""
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("fusion: {type: mmcore.concat, layers: [8]}}",
                                                         "fusion: {type: mmcore.concat, layers: [8]}, unimodal_heads: {layers: [4]}}"))
    path = tmp_path / "study.yaml"
    path.write_text("name: w\nrecipe: recipe.yaml\nseeds: 2\narms:\n  ra: {balancer: {type: redcore.relative_advantage, target: unimodal}}\n"
                    "  uniform: {balancer: mmcore.uniform}\nanalysis: {primary: test.average.macro_f1, compare: [[ra, uniform]]}\n")
    state = plan(path, tmp_path / "d")
    for run in state.main:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "recipe.yaml").write_text(json.dumps(run.recipe))
        table = {"average": {"macro_f1": 0.5}, "m0": {"macro_f1": 0.4}, "m1": {"macro_f1": 0.3}, "m0+m1": {"macro_f1": 0.8}}
        (run.run_dir / "eval.json").write_text(json.dumps({"results": {"test": table, "val": table}}))
        ra = run.arm == "ra"  # uniform weights log no beta
        lines = [{"step": s, "loss": 1.0, **({"beta.m0": 0.6 + 0.1 * run.seed * s, "beta.m1": 0.8} if ra else {})} for s in (1, 2)]
        (run.run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    from mmcore.study.outputs import write_outputs

    write_outputs(state)
    md = (tmp_path / "d" / "study.md").read_text()
    # beta.m0 at step 2: seeds 0 and 1 give 0.6 and 0.8, mean 0.7; uniform has no row
    assert "## balancer weights at the end of training (mean over seeds)" in md
    assert "| ra | base | beta | 0.7000 | 0.8000 |" in md and "| uniform | base |" not in md.split("end of training")[1]
    assert "beta per modality over training, cell base" in (tmp_path / "d" / "report.html").read_text()
