"""Paired statistics over seeds: is configuration A better than B on the same seeds?

A sweep trains every configuration with the same seeds, and a seed fixes the training masks and
the initialisation, so results of two configurations are *paired* by seed. This module holds the
tests that docs/results.md and ``mmcore report SWEEP`` use, in plain Python (``math`` only), so
that the core needs no SciPy:

- paired t-test on the differences d_i = a_i − b_i: t = mean(d) / (sd(d)/√n), df = n − 1,
  two-sided p = I_{df/(df+t²)}(df/2, 1/2), the regularised incomplete beta function (Abramowitz &
  Stegun 26.7.1 with 26.5.x), evaluated by the continued fraction of Numerical Recipes §6.4
  (modified Lentz). Equals ``scipy.stats.ttest_rel``. Zero variance: p = 1 when every difference
  is 0, p = 0 otherwise (SciPy returns NaN there; a constant non-zero gap is a sure difference).
- Wilcoxon signed-rank test (Wilcoxon 1945), zero differences dropped (``zero_method='wilcox'``),
  no continuity correction. For n ≤ 50 non-zero differences the p-value is exact: the null
  distribution of W+ given the observed ranks (each sign + or − with probability ½), counted
  over doubled ranks so that average ranks of tied |d| (halves) stay integers. Without ties this
  is the classical exact table and equals ``scipy.stats.wilcoxon(method='exact')``; with ties it
  is the permutation (conditional) distribution, which SciPy ≥ 1.13 computes by exhaustive
  permutation for n ≤ 13 (deviation: SciPy switches to the normal approximation above 13; we stay
  exact up to 50). Above 50: the normal approximation with the tie correction
  var = n(n+1)(2n+1)/24 − Σ(t³ − t)/48 (Hollander & Wolfe, Nonparametric Statistical Methods),
  as SciPy. With 5 seeds the smallest two-sided p is 2/32 = 0.0625, ties or not: five seeds
  cannot make it significant at 5 % (the normal approximation used here for ties before would
  print 0.025 for five equal positive differences).
- Holm's step-down correction (Holm 1979) across the comparisons of one family:
  p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)) for p sorted ascending.
- Effect sizes: Cohen's d_z = mean(d) / sd(d) for paired samples (Cohen 1988, §2.3.5), and the
  matched-pairs rank-biserial correlation r = (R+ − R−) / (R+ + R−) (Kerby 2014).

Inputs must be finite: a diverged seed's NaN or ±inf has no place in a mean or a rank sum, and
dropping it would quietly favour the arm that diverged. ``paired_t``/``wilcoxon`` refuse it with
a ValueError naming the pair; ``compare`` gives no test (``n/a``) and names the seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

ALPHA = 0.05  # the significance level of every verdict unless a caller says otherwise
EXACT_MAX_N = 50  # SciPy's ``method='auto'`` threshold for the exact Wilcoxon distribution


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 ≤ x ≤ 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"betainc: x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float, eps: float = 1e-15, max_iter: int = 500) -> float:
    """Continued fraction for I_x(a, b) by the modified Lentz method (Numerical Recipes §6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


@dataclass(frozen=True)
class TTest:
    n: int
    mean_diff: float  # mean of a − b
    t: float  # ±inf when every difference is the same non-zero value
    p: float
    cohen_dz: float  # mean(d) / sd(d); ±inf or 0 at zero variance


def mean_or_nan(values: Sequence[float]) -> float:
    """The mean as ``statistics.fmean`` gives it, also where fmean raises: NaN where +inf meets -inf
    (ValueError), and values near the float maximum divided before they are summed (OverflowError).
    Diverged seeds or conditions ended reports with those tracebacks."""
    if not all(math.isfinite(v) for v in values):
        return sum(values) / len(values)  # inf, or NaN where +inf meets -inf
    try:
        return statistics.fmean(values)
    except OverflowError:
        return math.fsum(v / len(values) for v in values)


def paired_t(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Paired t-test of a against b (two-sided); needs at least two pairs."""
    d = _diffs(a, b)
    n, mean = len(d), mean_or_nan(d)
    sd = statistics.stdev(d)  # OverflowError when the spread passes the float maximum
    if sd == 0.0:
        t = 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
        return TTest(n, mean, t, 1.0 if mean == 0.0 else 0.0, t)
    t = mean / (sd / math.sqrt(n))
    return TTest(n, mean, t, t_two_sided_p(t, n - 1), mean / sd)


@dataclass(frozen=True)
class Wilcoxon:
    n: int  # pairs with a non-zero difference (the ones ranked)
    w_plus: float  # sum of the ranks of positive differences
    w_minus: float
    p: float
    exact: bool  # exact null distribution (True) or normal approximation
    rank_biserial: float  # (W+ − W−) / (W+ + W−); 0 when n = 0


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> Wilcoxon:
    """Wilcoxon signed-rank test of a against b (two-sided), zero differences dropped."""
    d = [x for x in _diffs(a, b) if x != 0.0]
    n = len(d)
    if n == 0:
        return Wilcoxon(0, 0.0, 0.0, 1.0, True, 0.0)
    ranks, ties = _ranks([abs(x) for x in d])
    w_plus = sum(r for r, x in zip(ranks, d) if x > 0)
    total = n * (n + 1) / 2.0
    w_minus = total - w_plus
    exact = n <= EXACT_MAX_N
    if exact:
        doubled = [int(round(2 * r)) for r in ranks]  # average ranks are halves: 2r is an integer
        counts = _signed_rank_counts(doubled)  # counts[s] = sign patterns with 2·W+ = s
        low = int(round(2 * min(w_plus, w_minus)))
        p = min(1.0, 2.0 * sum(counts[: low + 1]) / 2.0**n)
    else:
        var = n * (n + 1) * (2 * n + 1) / 24.0 - sum(t**3 - t for t in ties) / 48.0
        p = 1.0 if var <= 0 else normal_two_sided_p((w_plus - total / 2.0) / math.sqrt(var))
    return Wilcoxon(n, w_plus, w_minus, p, exact, (w_plus - w_minus) / total)


def _diffs(a: Sequence[float], b: Sequence[float]) -> list[float]:
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired test needs at least 2 pairs, got {len(a)}")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    for i, (x, y, gap) in enumerate(zip(a, b, d)):
        if not math.isfinite(gap):  # NaN or ±inf on either side, or a difference that overflows
            raise ValueError(f"paired samples must be finite numbers; pair {i} is ({x}, {y})")
    return d


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of tied groups larger than one."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0 + 1.0
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _signed_rank_counts(weights: list[int]) -> list[int]:
    """Number of subsets of ``weights`` with each sum 0 … Σ weights: the exact null of the signed
    rank sum when every sign is + or − with probability ½ (weights = doubled ranks, so ties too)."""
    counts = [1] + [0] * sum(weights)
    for r in weights:
        for s in range(len(counts) - 1, r - 1, -1):
            counts[s] += counts[s - r]
    return counts


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order (NaN stays NaN and is not counted)."""
    index = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(index, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class Comparison:
    """A against B over their shared seeds."""

    a: str
    b: str
    seeds: tuple[int, ...]
    t: TTest | None  # None with fewer than two shared seeds, or with a non-finite value
    w: Wilcoxon | None
    p_holm: float = math.nan  # Holm-adjusted t-test p within its family (set by ``compare_all``)
    nonfinite: tuple[int, ...] = ()  # shared seeds where A − B is NaN/±inf (a diverged run): no test

    @property
    def mean_diff(self) -> float:
        return self.t.mean_diff if self.t is not None else math.nan


def compare(a_name: str, a: Mapping[int, float], b_name: str, b: Mapping[int, float]) -> Comparison:
    """Paired tests of two configurations' per-seed values (``seed -> value``)."""
    seeds = tuple(sorted(set(a) & set(b)))
    nonfinite = tuple(s for s in seeds if not math.isfinite(float(a[s]) - float(b[s])))
    if len(seeds) < 2 or nonfinite:
        return Comparison(a_name, b_name, seeds, None, None, nonfinite=nonfinite)
    xa, xb = [a[s] for s in seeds], [b[s] for s in seeds]
    try:
        t = paired_t(xa, xb)
    except OverflowError:  # differences whose spread passes the float maximum (seeds near ±1.8e308): no test
        return Comparison(a_name, b_name, seeds, None, None, nonfinite=seeds)
    return Comparison(a_name, b_name, seeds, t, wilcoxon(xa, xb))


def compare_all(values: Mapping[str, Mapping[int, float]]) -> list[Comparison]:
    """Every unordered pair of configurations; the pairs with a test are Holm-corrected as one
    family (a pair without one, ``t`` None, is left out of it and keeps ``p_holm`` NaN)."""
    names = list(values)
    pairs = [compare(x, values[x], y, values[y]) for i, x in enumerate(names) for y in names[i + 1 :]]
    adjusted = holm([c.t.p if c.t is not None else math.nan for c in pairs])
    return [replace(c, p_holm=p) for c, p in zip(pairs, adjusted)]


def verdict(mean_diff: float, p: float, higher_is_better: bool = True, alpha: float = ALPHA) -> str:
    """``win`` / ``tie`` / ``loss`` of A against B, or ``n/a`` without a test."""
    if math.isnan(p):
        return "n/a"
    if p >= alpha or mean_diff == 0.0:
        return "tie"
    return "win" if (mean_diff > 0) == higher_is_better else "loss"


def win_tie_loss(
    a: Mapping[str, Mapping[int, float]], b: Mapping[str, Mapping[int, float]], higher_is_better: bool = True,
    min_seeds: int = 2,
) -> dict[str, list[str]]:
    """Per condition (``condition -> seed -> value``), A's verdict against B by the paired t-test;
    a condition with fewer than ``min_seeds`` shared seeds counts as ``n/a`` (a report passes its
    no-verdict-below rule here, since two configurations may share fewer seeds than either has)."""
    out: dict[str, list[str]] = {"win": [], "tie": [], "loss": [], "n/a": []}
    for condition in a:
        if condition not in b:
            continue
        c = compare("a", a[condition], "b", b[condition])
        p = c.t.p if c.t is not None and len(c.seeds) >= min_seeds else math.nan
        out[verdict(c.mean_diff, p, higher_is_better)].append(condition)
    return out
