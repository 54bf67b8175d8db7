"""Paired statistics, Shapley values and robustness measures, against hand-computed and tabled values."""

from __future__ import annotations

import math
import random

import pytest

from mmcore.report import stats
from mmcore.report.robustness import summarize, trapezoid_auc
from mmcore.report.shapley import modalities_of, shapley

# Two-sided 5 % critical values of Student's t by degrees of freedom (any t table).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 30: 2.042}


@pytest.mark.parametrize("df,t", sorted(T95.items()))
def test_t_p_value_at_tabled_critical_values(df: int, t: float) -> None:
    assert stats.t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert stats.t_two_sided_p(-t, df) == pytest.approx(0.05, abs=2e-4)


def test_paired_t_by_hand() -> None:
    # d = 1..5: mean 3, sd = sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 3·sqrt(2)
    r = stats.paired_t([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert r.n == 5 and r.mean_diff == 3
    assert r.t == pytest.approx(3 * math.sqrt(2))
    assert r.cohen_dz == pytest.approx(3 / math.sqrt(2.5))
    assert 0.01 < r.p < 0.02  # between the tabled 1 % (4.604) and 2 % (3.747) critical values at df 4


def test_paired_t_zero_variance() -> None:
    assert stats.paired_t([1, 1, 1], [1, 1, 1]).p == 1.0
    same_gap = stats.paired_t([2, 3, 4], [1, 2, 3])
    assert same_gap.p == 0.0 and same_gap.t == math.inf


def test_wilcoxon_exact_by_hand() -> None:
    # all five differences positive: W+ = 15, P(W+ >= 15) = 1/32, two-sided 2/32
    r = stats.wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert r.exact and r.w_plus == 15 and r.p == pytest.approx(2 / 32) and r.rank_biserial == 1.0
    # d = 1, -2, 3, 4, 5: W+ = 13, W- = 2; subsets of {1..5} with sum <= 2: {}, {1}, {2}
    r = stats.wilcoxon([1, -2, 3, 4, 5], [0] * 5)
    assert (r.w_plus, r.w_minus) == (13, 2) and r.p == pytest.approx(2 * 3 / 32)
    assert r.rank_biserial == pytest.approx(11 / 15)


def test_wilcoxon_ties_and_zeros_are_exact_up_to_fifty() -> None:
    # zeros dropped: d = 1, 1, -2 (ranks 1.5, 1.5, 3): W+ = 3 = W−, the centre, so p = 1
    r = stats.wilcoxon([1, 1, -2, 5], [0, 0, 0, 5])
    assert r.n == 3 and r.exact and r.w_plus == 3 and r.p == pytest.approx(1.0)
    # d = 1, 1, 2, 3: ranks 1.5, 1.5, 3, 4, W+ = 10 only when all 4 signs are +: p = 2/16
    r = stats.wilcoxon([1, 1, 2, 3], [0, 0, 0, 0])
    assert r.p == pytest.approx(2 / 16)


def test_holm_by_hand() -> None:
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    out = stats.holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_compare_all_and_verdicts() -> None:
    values = {"A": {0: 0.9, 1: 0.91, 2: 0.92}, "B": {0: 0.8, 1: 0.82, 2: 0.81}, "C": {0: 0.9}}
    comparisons = stats.compare_all(values)
    assert [(c.a, c.b) for c in comparisons] == [("A", "B"), ("A", "C"), ("B", "C")]
    ab = comparisons[0]
    assert ab.seeds == (0, 1, 2) and ab.mean_diff == pytest.approx(0.1)
    assert ab.p_holm == pytest.approx(ab.t.p)  # the other two have no test: a family of one
    assert comparisons[1].t is None and math.isnan(comparisons[1].p_holm)
    assert stats.verdict(0.1, 0.01) == "win" and stats.verdict(0.1, 0.01, higher_is_better=False) == "loss"
    assert stats.verdict(0.1, 0.2) == "tie" and stats.verdict(math.nan, math.nan) == "n/a"
    wtl = stats.win_tie_loss({"x": values["A"], "y": values["A"]}, {"x": values["B"], "y": values["A"]})
    assert wtl["win"] == ["x"] and wtl["tie"] == ["y"]


def test_against_scipy_when_available() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for n in (3, 5, 8, 12, 60):
        a = [rng.gauss(0, 1) for _ in range(n)]
        b = [x + rng.gauss(0.3, 0.5) for x in a]
        assert stats.paired_t(a, b).p == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
        method = "exact" if n <= 50 else "approx"
        assert stats.wilcoxon(a, b).p == pytest.approx(scipy_stats.wilcoxon(a, b, method=method).pvalue, rel=1e-9)
    tied = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0, 1.0, 1.0, 5.0, 5.0, 6.0])  # |d| ties and a zero
    # by hand: d = 1, 1, 2, −1 (ranks 2, 2, 4, 2), W− = 2; patterns with W+ ≤ 2: none or one rank-2
    # sign, 4 of 16, p = 2 · 4/16 (SciPy ≥ 1.13's default, an exhaustive permutation, agrees)
    assert stats.wilcoxon(*tied).p == pytest.approx(0.5)
    for x, a_, b_ in ((0.3, 2.0, 0.5), (0.9, 0.5, 0.5), (0.01, 10.0, 3.0)):
        assert stats.betainc(a_, b_, x) == pytest.approx(__import__("scipy.special").special.betainc(a_, b_, x), rel=1e-10)


def test_shapley_two_modalities_by_hand() -> None:
    c = shapley({"a": 0.6, "b": 0.4, "a+b": 0.9}, ["a", "b"])
    assert c.values == pytest.approx({"a": 0.55, "b": 0.35})
    assert sum(c.values.values()) == pytest.approx(c.full - c.baseline)


def test_shapley_three_modalities_by_hand() -> None:
    v = {"a": 0.5, "b": 0.3, "c": 0.1, "a+b": 0.7, "a+c": 0.6, "b+c": 0.4, "a+b+c": 0.8}
    c = shapley(v, ["a", "b", "c"], baseline=0.1)
    assert c.values == pytest.approx({"a": 0.4166667, "b": 0.2166667, "c": 0.0666667}, abs=1e-6)
    assert sum(c.values.values()) == pytest.approx(0.8 - 0.1)


def test_shapley_not_available() -> None:
    partial = shapley({"a": 0.5, "a+b": 0.8}, ["a", "b"])
    assert partial.values is None and "1 of 3 subsets" in partial.reason and "b" in partial.reason
    many = shapley({}, [f"m{i}" for i in range(9)])
    assert many.values is None and "1 to 8" in many.reason


def test_modalities_of_condition_names() -> None:
    assert modalities_of(["average", "a", "v", "a+v"]) == ["a", "v"]
    assert modalities_of(["a", "v", "l", "a+v", "a+v+l"]) == ["a", "v", "l"]


def test_trapezoid_and_relative_robustness_by_hand() -> None:
    assert trapezoid_auc([0, 0.5, 1.0], [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    r = summarize([0.0, 0.1, 0.2], [0.8, 0.6, 0.4], full=0.8)
    assert r.auc == pytest.approx(0.1 * 0.7 + 0.1 * 0.5)
    assert r.mean == pytest.approx(0.6) and r.relative == pytest.approx(0.75)
    with pytest.raises(ValueError):
        trapezoid_auc([0.0, 0.0], [1.0, 1.0])
