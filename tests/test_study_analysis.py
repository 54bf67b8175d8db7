"""The study analysis (mmcore.report.analysis) against numbers computed by hand.

Reference values: t quantiles from any t table (t_{0.975,4} = 2.776445, t_{0.80,4} = 0.940965);
the paired t p-value of d = 1..5 equals scipy.stats.ttest_1samp([1, 2, 3, 4, 5], 0).pvalue.
"""

from __future__ import annotations

import math

import pytest

from mmcore.report import analysis


def test_t_critical_matches_the_table():
    assert analysis.t_critical(0.05, 4) == pytest.approx(2.776445, abs=1e-6)
    assert analysis.t_critical(0.40, 4) == pytest.approx(0.940965, abs=1e-6)
    assert analysis.t_critical(0.05, 1e6) == pytest.approx(1.959964, abs=1e-5)


def test_effect_of_one_to_five_by_hand():
    # d = 1..5: mean 3, sd sqrt(2.5), se sqrt(2.5)/sqrt(5) = sqrt(0.5)
    e = analysis.effect("d", {s: float(s + 1) for s in range(5)})
    se = math.sqrt(0.5)
    assert (e.n, e.mean, e.sd) == (5, 3.0, pytest.approx(math.sqrt(2.5)))
    assert e.ci == (pytest.approx(3 - 2.776445 * se, abs=1e-6), pytest.approx(3 + 2.776445 * se, abs=1e-6))
    assert e.d_z == pytest.approx(3 / math.sqrt(2.5))
    assert e.t_p == pytest.approx(0.013236, abs=1e-6)
    assert e.wilcoxon_p == pytest.approx(2 / 32)  # all five positive: the smallest exact p with 5 pairs
    assert e.mde == pytest.approx((2.776445 + 0.940965) * se, abs=1e-6)
    assert e.word() == "win"  # outside a family the raw t p (0.013) decides
    assert analysis.effect("d", {0: 1.0, 1: 2.0, 2: 3.0}).word() == analysis.SMALL_N


def test_word_uses_holm_over_the_family_only():
    # three comparisons with raw t p-values; Holm: sorted p 0.01, 0.03, 0.04 -> 0.03, 0.06, 0.06
    base = analysis.effect("x", {s: float(s + 1) for s in range(5)})
    family = [analysis.Effect(f"c{i}", base.seeds, 1.0, 1.0, (0.0, 2.0), p, 0.5, 1.0, 0.1) for i, p in enumerate([0.01, 0.04, 0.03])]
    adjusted = analysis.holm_family(family)
    assert [e.p_holm for e in adjusted] == pytest.approx([0.03, 0.06, 0.06])
    assert [e.word() for e in adjusted] == ["win", "tie", "tie"]


def test_paired_and_interaction_by_hand():
    a1, b1 = {0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.5, 1: 0.6, 2: 0.4}
    a2, b2 = {0: 0.6, 1: 0.6, 2: 0.6}, {0: 0.5, 1: 0.5, 2: 0.55}
    p = analysis.paired("a − b", a1, {**b1, 7: 1.0})  # seed 7 unpaired: dropped
    assert p.seeds == (0, 1, 2) and p.mean == pytest.approx((0.4 + 0.2 + 0.3) / 3)
    i = analysis.interaction("i", a1, b1, a2, b2)
    # per seed (a1-b1)-(a2-b2): 0.4-0.1, 0.2-0.1, 0.3-0.05 = 0.3, 0.1, 0.25
    assert i.mean == pytest.approx((0.3 + 0.1 + 0.25) / 3)
    assert i.sd == pytest.approx(math.sqrt(((0.3 - 0.65 / 3) ** 2 + (0.1 - 0.65 / 3) ** 2 + (0.25 - 0.65 / 3) ** 2) / 2))


def test_means_by_number_of_present_modalities():
    table = {"average": {"f1": 9.0}, "a": {"f1": 0.2}, "v": {"f1": 0.4}, "l": {"f1": 0.6},
             "a+v": {"f1": 0.5}, "a+l": {"f1": 0.7}, "v+l": {"f1": 0.9}, "a+v+l": {"f1": 1.0}}
    assert analysis.by_present(table, "f1") == pytest.approx({1: 0.4, 2: 0.7, 3: 1.0})
    results = {"test": table}
    assert analysis.endpoint_value(results, "test.single_views.f1") == pytest.approx(0.4)
    assert analysis.endpoint_value(results, "test.2_views.f1") == pytest.approx(0.7)
    assert analysis.endpoint_value(results, "test.average.f1") == 9.0
    assert analysis.endpoint_value(results, "val.average.f1") is None
    with pytest.raises(ValueError, match="split.condition.metric"):
        analysis.split_endpoint("test.f1")


@pytest.mark.parametrize("n", [4, 5])
def test_n_too_small_below_five_seeds_only(n: int) -> None:
    """Issue 22: the "n too small" wording (row and note) at 4 paired seeds, and nowhere at 5."""
    a = {s: 0.9 + 0.01 * s for s in range(n)}  # a − b = 0.1 + 0.01·s: all positive, t p < 0.01
    b = {s: 0.8 for s in range(n)}
    e = analysis.paired("a − b", a, b)
    assert e.n == n
    assert (e.word() == analysis.SMALL_N) is (n < analysis.MIN_SEEDS)
    note = analysis.small_n_note([n, 10])
    assert (note == "") is (n >= analysis.MIN_SEEDS)
    assert (analysis.SMALL_N in note and f"n = {n}" in note) if n < 5 else note == ""


@pytest.mark.parametrize("n", [4, 5])
def test_study_tables_say_n_too_small_only_below_five_seeds(n: int) -> None:
    from pathlib import Path

    from mmcore.study.outputs import markdown, tables
    from mmcore.study.plan import cells
    from mmcore.study.results import StudyNumbers
    from mmcore.study.spec import load_study

    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "repro" / "study.yaml")
    primary = study.analysis.primary
    dropout, uniform = {s: 0.9 + 0.01 * s for s in range(n)}, {s: 0.8 for s in range(n)}
    values = {primary: {("dropout", "base"): dropout, ("uniform", "base"): uniform}}
    (e,) = analysis.holm_family([analysis.paired("dropout − uniform", dropout, uniform)])
    effects: dict = {primary: {"": [("base", e)]}}
    values.update({e: {} for e in study.analysis.secondary})
    effects.update({e: {} for e in study.analysis.secondary})
    text = markdown(study.name, None, tables(StudyNumbers(study, cells(study), values, effects), None))
    assert (analysis.SMALL_N in text) is (n < analysis.MIN_SEEDS)
    assert ("| win |" in text) is (n >= analysis.MIN_SEEDS)
