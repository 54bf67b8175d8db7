"""A study's pre-registered analysis: paired effects over seeds, Holm over the declared family.

Every number here is a function of per-seed values (``seed -> value``) of two arms in the same
cell (the same axis levels), because a seed fixes data masks and initialisation for every arm:

- mean paired difference d̄ of d_i = a_i − b_i, its sample sd s, and the 95 % confidence
  interval d̄ ± t_{0.975, n−1} · s/√n (Student 1908; any statistics text, e.g. Moore & McCabe §7.1);
- the paired t-test and the Wilcoxon signed-rank test of :mod:`mmcore.report.stats`;
- Cohen's d_z = d̄ / s (Cohen 1988 §2.3.5);
- the minimum detectable effect at 80 % power for this n and s, two-sided at α = 0.05:
  δ = (t_{1−α/2, n−1} + t_{0.80, n−1}) · s/√n, the usual t-quantile approximation of the
  noncentral-t power equation (Julious 2004, Statist. Med. 23:1921, eq. 3, solved for δ);
- Holm's correction (Holm 1979) over exactly the comparisons the study declares — never over
  whatever happens to share a directory;
- the interaction of two levels L1, L2 of an axis: per seed (a−b at L1) − (a−b at L2), tested
  and bounded like any paired difference against zero.

A seed whose difference is NaN or ±inf (a diverged run, a ``*_nz`` metric without non-zero
targets) makes the whole comparison ``n/a``, with the seed named: a mean or rank sum over it means
nothing, and leaving it out would quietly favour the arm that diverged.

Which way is better is the metric's own direction (``mmcore.metrics.METRICS_DIRECTION``) for a
secondary endpoint, and the study's ``higher_is_better`` for the primary (and for metrics without a
known direction): one study may report a lower-is-better primary (``mae``) beside a
higher-is-better secondary (``corr``).

Below :data:`MIN_SEEDS` seeds nothing is called a win or a loss: the numbers are printed with
"n too small", because with 4 or fewer pairs the Wilcoxon test cannot reach p < 0.05 at all.
Quantiles of t are found by bisection on the two-sided p of :func:`stats.t_two_sided_p`, so the
module needs ``math`` only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from mmcore.conditions import AVERAGE
from mmcore.metrics import METRICS_DIRECTION
from mmcore.report import stats
from mmcore.report.shapley import modalities_of

ALPHA = stats.ALPHA
POWER = 0.80
MIN_SEEDS = 5  # fewer paired seeds: numbers only, "n too small", no win/loss word
SMALL_N = "n too small"


def t_critical(two_sided_p: float, df: float) -> float:
    """The t > 0 whose two-sided p with ``df`` degrees of freedom is ``two_sided_p`` (bisection)."""
    if not 0.0 < two_sided_p < 1.0:
        raise ValueError(f"t_critical: p must lie in (0, 1), got {two_sided_p}")
    low, high = 0.0, 1.0
    while stats.t_two_sided_p(high, df) > two_sided_p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if stats.t_two_sided_p(mid, df) > two_sided_p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12:
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Effect:
    """A paired difference a − b over shared seeds (or an interaction's difference of differences)."""

    label: str
    seeds: tuple[int, ...]
    mean: float
    sd: float
    ci: tuple[float, float]
    t_p: float
    wilcoxon_p: float
    d_z: float
    mde: float  # minimum detectable |mean difference| at 80 % power, α = 0.05, this n and sd
    p_holm: float = math.nan  # within the declared family; NaN outside one
    nonfinite: tuple[int, ...] = ()  # seeds whose difference is NaN/±inf: no test, word n/a

    @property
    def n(self) -> int:
        return len(self.seeds)

    def word(self, higher_is_better: bool = True) -> str:
        """``win``/``tie``/``loss`` by the Holm p (raw p outside a family), "n too small", or
        ``n/a`` naming the seeds that are not finite."""
        if self.nonfinite:
            plural = "s" if len(self.nonfinite) > 1 else ""
            return f"n/a: seed{plural} {', '.join(str(s) for s in self.nonfinite)} not finite"
        if self.n < MIN_SEEDS:
            return SMALL_N
        p = self.p_holm if not math.isnan(self.p_holm) else self.t_p
        return stats.verdict(self.mean, p, higher_is_better)


def small_n_note(ns: Sequence[int]) -> str:
    """The "n too small" rule, stated only where a row fell under it (``ns``: each row's paired
    seeds); empty when every row has ``MIN_SEEDS`` or more, so a 5- or 10-seed table does not
    read as if its verdicts had been withheld."""
    small = sorted({n for n in ns if n < MIN_SEEDS})
    if not small:
        return ""
    return (f"No win/loss word below {MIN_SEEDS} paired seeds: the rows with n = "
            f"{', '.join(str(n) for n in small)} read '{SMALL_N}'.")


def effect(label: str, diffs: Mapping[int, float]) -> Effect:
    """Summary and tests of per-seed differences (``seed -> d``) against zero; n ≥ 2 for tests."""
    seeds = tuple(sorted(diffs))
    d = [float(diffs[s]) for s in seeds]
    n = len(d)
    nonfinite = tuple(s for s, x in zip(seeds, d) if not math.isfinite(x))
    if n == 0 or nonfinite:
        return Effect(label, seeds, math.nan, math.nan, (math.nan, math.nan), math.nan, math.nan, math.nan, math.nan,
                      nonfinite=nonfinite)
    mean = stats.mean_or_nan(d)
    if n < 2:
        return Effect(label, seeds, mean, math.nan, (math.nan, math.nan), math.nan, math.nan, math.nan, math.nan)
    try:
        sd = statistics.stdev(d)
    except OverflowError:  # a spread past the float maximum (seeds near ±1.8e308): no test, every seed named
        return Effect(label, seeds, mean, math.inf, (math.nan, math.nan), math.nan, math.nan, math.nan, math.nan,
                      nonfinite=seeds)
    zeros = [0.0] * n
    t, w = stats.paired_t(d, zeros), stats.wilcoxon(d, zeros)
    se = sd / math.sqrt(n)
    half = t_critical(ALPHA, n - 1) * se
    mde = (t_critical(ALPHA, n - 1) + t_critical(2.0 * (1.0 - POWER), n - 1)) * se
    return Effect(label, seeds, mean, sd, (mean - half, mean + half), t.p, w.p, t.cohen_dz, mde)


def paired(label: str, a: Mapping[int, float], b: Mapping[int, float]) -> Effect:
    """``a − b`` over the seeds both have."""
    return effect(label, {s: a[s] - b[s] for s in sorted(set(a) & set(b))})


def interaction(label: str, a1: Mapping[int, float], b1: Mapping[int, float],
                a2: Mapping[int, float], b2: Mapping[int, float]) -> Effect:
    """Per seed (a1 − b1) − (a2 − b2): does the gap between two arms differ between two levels?"""
    seeds = sorted(set(a1) & set(b1) & set(a2) & set(b2))
    return effect(label, {s: (a1[s] - b1[s]) - (a2[s] - b2[s]) for s in seeds})


def endpoint_higher_is_better(endpoint: str, primary: str, declared: bool) -> bool:
    """Which way is better for ``endpoint``'s verdicts: the study's declared ``higher_is_better``
    for its primary endpoint (and any metric without a known direction), else the metric's own."""
    direction = METRICS_DIRECTION.get(split_endpoint(endpoint)[2])
    return declared if endpoint == primary or direction is None else direction == "max"


def holm_family(effects: Sequence[Effect]) -> list[Effect]:
    """The same effects with Holm-adjusted t-test p over exactly this family."""
    adjusted = stats.holm([e.t_p for e in effects])
    return [replace(e, p_holm=p) for e, p in zip(effects, adjusted)]


def holm_scope(effects: Sequence[Effect], noun: str) -> str:
    """What Holm's correction ran over, in words that match its numbers: a row with no test (one
    seed, a non-finite value) is shown but not counted, which keeps the family-wise guarantee for
    the rows that were tested (Holm 1979 holds for any number of tested hypotheses)."""
    tested = sum(not math.isnan(e.t_p) for e in effects)
    if tested == len(effects):
        return f"Holm over exactly these {len(effects)} {noun}"
    return f"Holm over the {tested} of these {len(effects)} {noun} that have a test (n/a rows are not counted)"


def views_level(name: str) -> int | None:
    """``single_views`` -> 1, ``2_views`` -> 2 (the by-present-modalities averages), else None."""
    if name == "single_views":
        return 1
    head, _, tail = name.partition("_")
    return int(head) if tail == "views" and head.isdigit() and int(head) > 0 else None


def by_present(table: Mapping[str, Mapping[str, float]], metric: str) -> dict[int, float]:
    """Mean of ``metric`` over the subset conditions with k modalities present, per k."""
    subsets = [c for c in table if c != AVERAGE]
    modalities = modalities_of(subsets) or []
    groups: dict[int, list[float]] = {}
    for condition in subsets:
        parts = condition.split("+")
        if not set(parts) <= set(modalities) or metric not in table[condition]:
            continue
        groups.setdefault(len(parts), []).append(float(table[condition][metric]))
    return {k: stats.mean_or_nan(v) for k, v in sorted(groups.items())}


def endpoint_value(results: Mapping[str, Mapping[str, Mapping[str, float]]], endpoint: str) -> float | None:
    """``split.condition.metric`` of one run's results; ``condition`` may be ``single_views``/``k_views``."""
    split, condition, metric = split_endpoint(endpoint)
    table = results.get(split) or {}
    k = views_level(condition)
    if k is not None:
        return by_present(table, metric).get(k)
    value = (table.get(condition) or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """``test.average.macro_f1`` -> (split, condition, metric); condition names join modalities by '+'."""
    parts = endpoint.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"'{endpoint}': expected split.condition.metric, e.g. test.average.macro_f1")
    return parts[0], parts[1], parts[2]
