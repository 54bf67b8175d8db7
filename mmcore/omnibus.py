"""Across-arm statistics for sweep and study tables: Friedman's omnibus test, and a confidence
interval for every mean. Plain Python (``math`` only), equal to SciPy where SciPy has them.

- Friedman test (Friedman 1937) over n blocks (seeds) × k arms (configurations): rank the arms
  within each block (average ranks for ties), R_j the rank sum of arm j,

      Q = [12 / (n k (k+1)) · Σ_j R_j² − 3 n (k+1)] / [1 − Σ_ties (t³ − t) / (n (k³ − k))]

  and p = P(χ²_{k−1} ≥ Q), the regularised upper incomplete gamma Q((k−1)/2, Q/2) (series
  below a + 1, continued fraction above, Numerical Recipes §6.2). Equals
  ``scipy.stats.friedmanchisquare`` (which applies the same tie correction). It asks whether any
  arm differs before the pairwise tests (``mmcore.report.stats``) say which.
- Mean with a two-sided Student-t interval: mean ± t_{1−α/2, n−1} · sd/√n, the t quantile found
  by bisection on ``mmcore.report.stats.t_two_sided_p`` (equals ``scipy.stats.t.interval``). n = 1 has
  no interval (None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mmcore.report.stats import t_two_sided_p


@dataclass(frozen=True)
class Friedman:
    statistic: float
    p: float
    blocks: int
    arms: int


def friedman(values: Mapping[str, Mapping[int, float]]) -> Friedman | None:
    """Friedman's test over the seeds every arm has a number for (a NaN counts as none: it has no
    rank; ±inf ranks last or first); None with fewer than 3 arms or 2 such seeds (SciPy refuses
    fewer than 3 arms)."""
    arms = list(values)
    seeds = sorted(set.intersection(*(set(v) for v in values.values()))) if arms else []
    seeds = [s for s in seeds if not any(math.isnan(float(values[a][s])) for a in arms)]  # NaN has no rank
    k, n = len(arms), len(seeds)
    if k < 3 or n < 2:
        return None
    rank_sums, ties = [0.0] * k, 0.0
    for s in seeds:
        ranks, groups = _average_ranks([float(values[a][s]) for a in arms])
        rank_sums = [r + x for r, x in zip(rank_sums, ranks)]
        ties += sum(t**3 - t for t in groups)
    q = 12.0 / (n * k * (k + 1)) * sum(r * r for r in rank_sums) - 3.0 * n * (k + 1)
    correction = 1.0 - ties / (n * (k**3 - k))
    if correction <= 0:  # every block all ties: no evidence of any difference
        return Friedman(0.0, 1.0, n, k)
    q /= correction
    return Friedman(q, chi2_sf(q, k - 1), n, k)


def _average_ranks(values: list[float]) -> tuple[list[float], list[int]]:
    """1-based average ranks, and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks, groups, i = [0.0] * len(values), [], 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for pos in range(i, j + 1):
            ranks[order[pos]] = (i + j) / 2 + 1
        groups.append(j - i + 1)
        i = j + 1
    return ranks, groups


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df ≥ x)."""
    return 1.0 if x <= 0 else gammaincc(df / 2.0, x / 2.0)


def gammaincc(a: float, x: float, eps: float = 1e-15, max_iter: int = 1000) -> float:
    """The regularised upper incomplete gamma function Q(a, x)."""
    if x < a + 1:  # series for P(a, x)
        term = total = 1.0 / a
        for n in range(1, max_iter):
            term *= x / (a + n)
            total += term
            if abs(term) < abs(total) * eps:
                break
        return 1.0 - total * math.exp(-x + a * math.log(x) - math.lgamma(a))
    tiny = 1e-300  # continued fraction for Q(a, x), modified Lentz
    b, c, d = x + 1 - a, 1.0 / tiny, 1.0 / (x + 1 - a)
    h = d
    for i in range(1, max_iter):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < eps:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def t_quantile(p_two_sided: float, df: float) -> float:
    """t > 0 with two-sided tail probability ``p_two_sided`` (bisection; monotone in t)."""
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > p_two_sided:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > p_two_sided else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of the two-sided Student-t interval; no interval for one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    sd = math.sqrt(sum((v - mean) * (v - mean) for v in values) / (n - 1))  # x * x is inf where x ** 2 raises OverflowError
    half = t_quantile(1.0 - level, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
