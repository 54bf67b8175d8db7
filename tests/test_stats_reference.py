"""The statistics that studies and reports print, against reference values and at their edges.

Reference numbers were computed once with SciPy 1.17.1 (``scipy.stats``) and are hard-coded, so
this file needs no SciPy; each says which call gave it. Numbers in comments marked "by hand" are
counted or computed from the formula in the module's docstring.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from mmcore import omnibus
from mmcore.montecarlo import mc_bayes_accuracy
from mmcore.report import analysis, stats
from mmcore.sweep.aggregate import mean_std

STUDIES = Path(__file__).resolve().parents[1] / "studies"

# seven seeds of two arms; d = a − b = 0.03, −0.01, 0.04, 0.03, 0.02, −0.01, 0.03
A = [0.81, 0.79, 0.84, 0.80, 0.83, 0.78, 0.82]
B = [0.78, 0.80, 0.80, 0.77, 0.81, 0.79, 0.79]


def test_paired_t_interval_and_mde_equal_scipy() -> None:
    t = stats.paired_t(A, B)
    assert t.p == pytest.approx(0.05228555522937443, rel=1e-9)  # scipy.stats.ttest_rel(A, B).pvalue
    assert t.t == pytest.approx(2.4140393963016717, rel=1e-9)  # its statistic
    assert t.cohen_dz == pytest.approx(0.9124211282466744, rel=1e-9)  # mean(d) / np.std(d, ddof=1)
    e = analysis.paired("a − b", dict(enumerate(A)), dict(enumerate(B)))
    # scipy.stats.t.interval(0.95, 6, loc=mean(d), scale=std(d, ddof=1)/sqrt(7))
    assert e.ci == (pytest.approx(-0.0002528908384947029, abs=1e-12), pytest.approx(0.037395747981351785, abs=1e-12))
    # (t.ppf(0.975, 6) + t.ppf(0.80, 6)) · std(d, ddof=1)/sqrt(7)
    assert e.mde == pytest.approx(0.025791978634295103, rel=1e-9)
    assert e.word() == "tie"  # p = 0.052 ≥ 0.05, and the interval holds 0


def test_wilcoxon_on_seven_seeds_equals_scipy() -> None:
    # |d| ties in floating point (0.03 twice, 0.01 twice): before, the normal approximation (0.062)
    w = stats.wilcoxon(A, B)
    assert w.exact and w.p == pytest.approx(0.078125)  # scipy.stats.wilcoxon(A, B).pvalue (1.17), = 10/128


@pytest.mark.parametrize("d,p", [
    ([1, 1, 1, 1, 1], 2 / 32),  # by hand: ranks all 3, W+ = 15 only when all five signs are +
    ([1, 1, 2, 3], 2 / 16),  # by hand: ranks 1.5, 1.5, 3, 4; W+ = 10 only with all signs +
    ([1, 1, -2], 1.0),  # by hand: W+ = W− = 3, the centre of the distribution
    ([2, 2, -1, 3, 3, 3, -2, 4], 0.0625),  # scipy.stats.wilcoxon(d).pvalue (1.17: exhaustive permutation)
])
def test_wilcoxon_with_tied_differences_is_exact(d: list[int], p: float) -> None:
    """Before: tied |d| took the normal approximation, 0.025 for five equal gains and 0.048 for
    the last row, so five seeds could read "significant" by Wilcoxon; the exact conditional p
    cannot go below 2/2^n."""
    w = stats.wilcoxon(d, [0] * len(d))
    assert w.exact and w.p == pytest.approx(p, rel=1e-12)
    assert w.p >= 2 / 2**w.n


def test_wilcoxon_above_fifty_uses_the_tie_corrected_normal_approximation() -> None:
    # 60 differences rounded to 0.1 (ties and three zeros); scipy.stats.wilcoxon(d).pvalue
    d = [0.3, 0.1, 0.8, 0.3, -0.3, 0.6, 1.5, 1.1, -0.5, -1.1, -0.4, 0.2, -2.1, -0.0, -1.0, -0.5, -0.3, -0.1,
         0.6, 1.2, 0.1, 1.6, -0.5, 0.6, 1.1, 0.3, -0.5, -0.7, -0.3, 0.4, -0.8, -0.0, 0.0, 0.7, 0.4, 0.6, -0.5,
         0.1, 1.0, 1.7, -1.1, 1.7, 1.5, 1.0, 0.5, -0.1, 1.7, 2.2, 2.0, 1.5, 0.6, -1.0, 0.2, 0.9, -1.1, 0.6,
         0.6, 0.9, -1.0, -0.5]
    w = stats.wilcoxon(d, [0.0] * 60)
    assert w.n == 57 and not w.exact
    assert w.p == pytest.approx(0.023919051700966205, rel=1e-9)


def test_holm_by_hand() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for the last
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])  # ties: both 2 · 0.02
    assert stats.holm([0.4, 0.9]) == [0.8, 0.9]  # 2 · 0.4, then max(0.8, 1 · 0.9)
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1


def test_paired_tests_pair_by_seed_not_by_position() -> None:
    a = {3: 0.75, 1: 1.0, 2: 0.875, 7: 0.125}  # seed 7 only in A: not paired, not counted
    b = {1: 0.875, 2: 0.75, 3: 0.625, 9: 0.5}  # binary fractions: every paired gap is exactly 0.125
    c = stats.compare("A", a, "B", b)
    assert c.seeds == (1, 2, 3) and c.t is not None
    assert c.mean_diff == 0.125 and c.t.p == 0.0  # zero variance (by position the gaps would be −0.125, 0.25, 0.25)
    e = analysis.paired("A − B", a, b)
    assert e.seeds == (1, 2, 3) and e.mean == 0.125 and e.sd == 0.0


def test_direction_flips_the_word_not_the_numbers() -> None:
    lower = {s: 0.30 + 0.01 * s for s in range(5)}  # e.g. an error: A is 0.1 lower on every seed
    higher = {s: 0.40 + 0.01 * s + 0.001 * s * s for s in range(5)}
    e = analysis.paired("A − B", lower, higher)
    assert e.mean < 0 and e.ci[1] < 0 and e.t_p < 0.05
    assert e.word(higher_is_better=False) == "win" and e.word(higher_is_better=True) == "loss"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_seed_makes_the_comparison_na_and_names_the_seed(bad: float) -> None:
    """Before: NaN or ±inf in one seed crashed the study with AttributeError (statistics.stdev),
    and the Wilcoxon test ranked a NaN as if it were a number."""
    a = {s: 0.9 + 0.01 * s for s in range(6)}
    b = {s: 0.8 for s in range(6)}
    a[4] = bad
    e = analysis.paired("a − b", a, b)
    assert e.nonfinite == (4,) and math.isnan(e.t_p) and math.isnan(e.wilcoxon_p) and math.isnan(e.mean)
    assert e.word() == "n/a: seed 4 not finite"
    good = analysis.paired("c − b", {s: 0.9 + 0.01 * s for s in range(6)}, b)
    held, tested = analysis.holm_family([e, good])
    assert math.isnan(held.p_holm) and tested.p_holm == tested.t_p  # a family of one tested row
    assert analysis.holm_scope([held, tested], "declared comparisons") == (
        "Holm over the 1 of these 2 declared comparisons that have a test (n/a rows are not counted)")
    assert analysis.holm_scope([tested], "declared comparisons") == "Holm over exactly these 1 declared comparisons"
    c = stats.compare("a", a, "b", b)
    assert c.t is None and c.w is None and c.nonfinite == (4,)
    assert stats.win_tie_loss({"x": a}, {"x": b})["n/a"] == ["x"]
    with pytest.raises(ValueError, match=r"finite numbers; pair 4 is"):
        stats.paired_t(list(a.values()), list(b.values()))
    with pytest.raises(ValueError, match=r"finite numbers; pair 4 is"):
        stats.wilcoxon(list(a.values()), list(b.values()))


def test_a_difference_that_overflows_is_not_finite() -> None:
    a, b = {0: 1e308, 1: 0.0, 2: 0.5}, {0: -1e308, 1: 0.1, 2: 0.2}  # 1e308 − (−1e308) = inf
    assert stats.compare("a", a, "b", b).nonfinite == (0,)
    with pytest.raises(ValueError, match="pair 0 is"):
        stats.paired_t(list(a.values()), list(b.values()))


def test_edges_n1_identical_arms_constant_gap() -> None:
    one = analysis.effect("d", {0: 0.2})
    assert one.n == 1 and one.mean == 0.2 and math.isnan(one.t_p) and one.word() == analysis.SMALL_N
    same = analysis.effect("d", {s: 0.0 for s in range(6)})
    assert (same.t_p, same.wilcoxon_p, same.ci, same.word()) == (1.0, 1.0, (0.0, 0.0), "tie")
    assert stats.compare("a", {0: 0.5}, "b", {0: 0.4}).t is None  # one shared seed: no test


def test_win_tie_loss_needs_the_minimum_shared_seeds() -> None:
    """Before: the sweep report counted per-condition wins on two shared seeds when another
    configuration had five; ``min_seeds`` sends such conditions to n/a."""
    a = {"x": {0: 0.9, 1: 0.92, 2: 0.91, 3: 0.93, 4: 0.9}}
    b = {"x": {0: 0.8, 1: 0.81}}
    assert stats.win_tie_loss(a, b)["win"] == ["x"]  # default: two pairs are enough for a t-test
    assert stats.win_tie_loss(a, b, min_seeds=analysis.MIN_SEEDS)["n/a"] == ["x"]


def test_friedman_ranks_inf_and_leaves_nan_seeds_out() -> None:
    # scipy.stats.friedmanchisquare([.7, .72, .69, .71], [.65, inf, .66, .64], [.6, .62, .7, .58]):
    # statistic 2.0, p = exp(−1) = 0.36787944117144245
    values = {"a": {0: 0.7, 1: 0.72, 2: 0.69, 3: 0.71}, "b": {0: 0.65, 1: math.inf, 2: 0.66, 3: 0.64},
              "c": {0: 0.6, 1: 0.62, 2: 0.7, 3: 0.58}}
    f = omnibus.friedman(values)
    assert (f.blocks, f.statistic) == (4, pytest.approx(2.0)) and f.p == pytest.approx(0.36787944117144245)
    values["c"][5], values["a"][5], values["b"][5] = math.nan, 0.1, 0.2  # a NaN seed has no rank
    assert omnibus.friedman(values).blocks == 4


def test_mean_interval_and_sample_std() -> None:
    # scipy.stats.t.interval(0.95, 4, loc=mean, scale=np.std(x, ddof=1)/sqrt(5))
    mean, low, high = omnibus.mean_ci([0.71, 0.74, 0.69, 0.73, 0.70])
    assert (low, high) == (pytest.approx(0.6882523073207091), pytest.approx(0.7397476926792906))
    s = mean_std([1.0, 2.0, 3.0, 4.0])  # sample std (ddof=1), as the docstring says: sqrt(5/3)
    assert (s.mean, s.std, s.n) == (2.5, pytest.approx(math.sqrt(5 / 3)), 4)
    assert mean_std([0.5]).std == 0.0


def test_t_p_value_at_huge_df_is_the_normal_one() -> None:
    # 2·(1 − Φ(2)) = erfc(2/√2) = 0.04550026389635842; scipy.stats.t.sf(2, 1e7)·2 = 0.04550029089184296
    assert stats.t_two_sided_p(2.0, 1e7) == pytest.approx(0.04550029089184296, rel=1e-6)
    assert analysis.t_critical(0.05, 1e7) == pytest.approx(1.959964, abs=1e-5)


def test_monte_carlo_ceiling_against_the_closed_form() -> None:
    """One modality, two classes at ±1 in 1-D, noise σ = 1, one frame: the Bayes rule is the sign,
    its accuracy Φ(1) = 0.8413447460685429 by hand (erf); the estimate lies within 4 of its SEs."""
    centres = [torch.tensor([[-1.0], [1.0]])]
    target = torch.arange(400) % 2
    mask, frames = torch.ones(400, 1, dtype=torch.bool), torch.ones(400, 1, dtype=torch.long)
    p, se = mc_bayes_accuracy(centres, 1.0, target, mask, frames, draws=64, seed=0)
    phi = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    assert abs(p - phi) < 4 * se and se == pytest.approx(math.sqrt(p * (1 - p) / (400 * 64)))
    none = torch.zeros(400, 1, dtype=torch.bool)  # nothing present: chance exactly
    assert mc_bayes_accuracy(centres, 1.0, target, none, frames, draws=8)[0] == pytest.approx(0.5)


def test_secondary_endpoints_use_their_own_direction() -> None:
    """Before: one study-wide ``higher_is_better`` worded every endpoint, so issue 26's regression
    study (primary mae, lower better) called a higher ``corr`` a loss."""
    assert analysis.endpoint_higher_is_better("test.average.corr", "test.average.mae", False) is True
    assert analysis.endpoint_higher_is_better("test.single_views.mae", "test.average.mae", False) is False
    assert analysis.endpoint_higher_is_better("test.average.mae", "test.average.mae", True) is True  # declared
    assert analysis.endpoint_higher_is_better("test.average.custom", "test.average.mae", False) is False


def _study_markdown(arms: dict[str, tuple[dict[int, float], dict[int, float]]]) -> str:
    """study.md of issue 26's regression study with the given (balm, uniform-l2) values per endpoint."""
    from mmcore.study.outputs import markdown, tables
    from mmcore.study.plan import cells
    from mmcore.study.results import StudyNumbers
    from mmcore.study.spec import load_study

    study = load_study(STUDIES / "issue26_regression" / "study.yaml")
    values: dict = {e: {} for e in [study.analysis.primary, *study.analysis.secondary]}
    effects: dict = {e: {} for e in values}
    for endpoint, (a, b) in arms.items():
        values[endpoint] = {("balm", "base"): a, ("uniform-l2", "base"): b}
        family = analysis.holm_family([analysis.paired("balm − uniform-l2", a, b)])
        effects[endpoint] = {"": [("base", e) for e in family]}
    return markdown(study.name, None, tables(StudyNumbers(study, cells(study), values, effects), None))


def test_study_tables_word_each_endpoint_by_its_direction() -> None:
    better = {s: 0.5 + 0.01 * s for s in range(6)}  # A: lower mae and higher corr than B on every seed
    worse = {s: 0.6 + 0.01 * s + 0.002 * s * s for s in range(6)}
    text = _study_markdown({"test.average.mae": (better, worse), "test.average.corr": (worse, better)})
    assert text.count("| win |") == 2 and "| loss |" not in text


def test_study_tables_with_a_diverged_seed() -> None:
    """Before: ``mmcore study report`` died with AttributeError on a NaN (``*_nz``) or inf (mse) value."""
    a = {s: 0.5 + 0.01 * s for s in range(6)}
    b = {s: 0.6 + 0.01 * s + 0.002 * s * s for s in range(6)}
    a[2] = math.inf
    text = _study_markdown({"test.average.mae": (a, b)})
    assert "n/a: seed 2 not finite" in text and "Holm over the 0 of these 1 declared comparisons" in text


def test_study_direction_defaults_to_the_primary_metric(tmp_path: Path) -> None:
    """Before: without ``higher_is_better`` a study on mae chose its tuning trial and worded its
    verdicts as if a higher error were better."""
    source = STUDIES / "issue26_regression"
    shutil.copy(source / "recipe.yaml", tmp_path / "recipe.yaml")
    text = (source / "study.yaml").read_text().replace("  higher_is_better: false\n", "")
    (tmp_path / "study.yaml").write_text(text)
    from mmcore.study.spec import load_study

    assert load_study(tmp_path / "study.yaml").analysis.higher_is_better is False
    (tmp_path / "study.yaml").write_text(text.replace("primary: test.average.mae", "primary: test.average.corr"))
    assert load_study(tmp_path / "study.yaml").analysis.higher_is_better is True
