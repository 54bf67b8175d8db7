"""A study's descriptive tables: MEI/MLI, random-rate test conditions (train × test grid), Friedman,
t intervals; and ``all`` inside a list of evaluation conditions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mmcore.conditions import parse_conditions
from mmcore.study import extras
from mmcore.study.extras import Finished

ROOT = Path(__file__).resolve().parents[1]
RANDOM = [{"random": {"rates": {"a": 0.2, "b": 0.2}}, "name": "r20"}, {"random": {"rates": {"a": 0.4, "b": 0.4}}, "name": "r60"}]
RECIPE = {"missing": {"eval": {"conditions": ["all", *RANDOM]}}}


def _run(arm: str, slug: str, seed: int, r20: float, r60: float, mei: float | None, mli: float | None) -> Finished:
    results = {"test": {"a": {"macro_f1": 0.5}, "r20": {"macro_f1": r20}, "r60": {"macro_f1": r60}}}
    diagnostics = {"mei": {"macro_f1": mei, "accuracy": 0.1}, "mli": mli}
    return Finished(arm, slug, seed, {"results": results, "diagnostics": diagnostics}, RECIPE)


RUNS = [
    _run("zero", "low", 0, 0.8, 0.6, 0.7, 0.9),
    _run("zero", "low", 1, 0.9, 0.5, 0.9, None),  # MLI undefined in this run: left out, not counted as 0
    _run("vib", "low", 0, 0.85, 0.7, None, 0.5),
]


def test_all_expands_inside_a_list() -> None:
    conditions = parse_conditions(["all", *RANDOM], ["a", "b"])
    assert [c.name for c in conditions] == ["a", "b", "a+b", "r20", "r60"]
    assert conditions[3].random is not None and conditions[2].subset == (True, True)
    with pytest.raises(Exception, match="appears twice"):
        parse_conditions(["all", "a"], ["a", "b"])


def test_missbench_reads_the_primary_metric_and_skips_undefined_values() -> None:
    diag = extras.missbench(RUNS, "macro_f1")
    assert diag[("zero", "low")] == {"MEI": {0: 0.7, 1: 0.9}, "MLI": {0: 0.9}}
    assert diag[("vib", "low")] == {"MLI": {0: 0.5}}


def test_rate_grid_takes_the_recipes_random_conditions() -> None:
    names, grid = extras.rate_grid(RUNS, "test.average.macro_f1")
    assert names == ["r20", "r60"]  # the subset condition "a" is not a random-rate condition
    assert grid[("zero", "low")] == {"r20": {0: 0.8, 1: 0.9}, "r60": {0: 0.6, 1: 0.5}}
    assert extras.random_condition_names({"missing": {"eval": {"conditions": "all"}}}) == []


def test_mean_with_a_t_interval_by_hand() -> None:
    # 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.302653, half-width 4.302653 / √3 = 2.484138
    assert extras.mean_with_ci({0: 1.0, 1: 2.0, 2: 3.0}) == "2.0000 [-0.4841, 4.4841] (n=3)"
    assert extras.mean_with_ci({0: 0.5}) == "0.5000 (n=1)"
    assert extras.mean_with_ci({}) == "n/a"


def test_friedman_by_cell_by_hand() -> None:
    # 3 arms, 2 seeds, the same order on both: rank sums 2, 4, 6; Q = 12/(2·3·4)·56 − 3·2·4 = 4, p = e^{−2}
    values = {("a", "c"): {0: 0.1, 1: 0.2}, ("b", "c"): {0: 0.3, 1: 0.4}, ("d", "c"): {0: 0.5, 1: 0.6}}
    ((slug, test),) = extras.friedman_by_cell(values, ["a", "b", "d"], ["c", "other"])
    assert slug == "c" and test.statistic == pytest.approx(4.0) and test.p == pytest.approx(math.exp(-2.0))


def test_tables_show_the_descriptive_sections() -> None:
    from mmcore.study.outputs import markdown, tables
    from mmcore.study.plan import cells
    from mmcore.study.results import StudyNumbers
    from mmcore.study.spec import load_study

    study = load_study(ROOT / "studies" / "repro" / "study.yaml")  # arms uniform, dropout; no axes
    slug = "base"
    primary = study.analysis.primary
    values = {primary: {("uniform", slug): {0: 0.5, 1: 0.6}, ("dropout", slug): {0: 0.4, 1: 0.7}}}
    values.update({e: {} for e in study.analysis.secondary})
    runs = [Finished("uniform", slug, 0, RUNS[0].evaluation, RECIPE)]
    numbers = StudyNumbers(study, cells(study), values, {e: {} for e in values}, finished=runs)
    text = markdown(study.name, None, tables(numbers, None))
    # 0.5, 0.6: sd 0.0707107, t(0.975, 1) = 12.7062, half-width 12.7062 · 0.0707107 / √2 = 0.63531
    assert "0.5500 ± 0.0707 [-0.0853, 1.1853] (n=2)" in text
    assert "| uniform | base | 0.7000 (n=1) | 0.9000 (n=1) |" in text  # MEI, MLI
    assert "| uniform | base | 0.8000 (n=1) | 0.6000 (n=1) |" in text  # r20, r60
    assert "Friedman" not in text  # two arms: no omnibus test


@pytest.mark.parametrize("name", ["issue26.yaml", "issue26_smoke.yaml", "rate_grid.yaml", "issue26_regression/study.yaml"])
def test_shipped_studies_validate(tmp_path: Path, name: str) -> None:
    """Every run of the shipped study files resolves and validates (nothing is trained)."""
    from mmcore.study.run import plan

    state = plan(ROOT / "studies" / name, tmp_path / "out")
    assert state.main and all(run.recipe for run in state.main)
