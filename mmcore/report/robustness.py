"""Robustness measures of a performance-vs-missing-rate curve.

The definitions follow MultiBench (Liang et al., "MultiBench: Multiscale Benchmarks for
Multimodal Representation Learning", NeurIPS 2021 Datasets & Benchmarks; code:
``eval_scripts/robustness.py`` of pliang279/MultiBench), where *relative robustness* is the area
under the performance curve over imperfection levels, computed by the trapezoid rule. For a
curve f(r_0), …, f(r_K) at missing rates r_0 < … < r_K:

    auc                  = Σ_k (r_{k+1} − r_k) · (f(r_k) + f(r_{k+1})) / 2        (trapezoid rule)
    mean                 = auc / (r_K − r_0)       the curve's average level, comparable across
                                                   curves over different rate ranges
    relative_robustness  = mean / f_full           the share of the full-modality score kept on
                                                   average over the curve (1 = no loss; for a
                                                   lower-is-better metric such as MAE, > 1 is worse)

MultiBench additionally min-max normalises its measures across the methods of a benchmark, and
defines *effective robustness* against a late-fusion reference curve; neither needs or has a
reference here, so both are left out. f_full is the metric with every modality present
(the curve at rate 0 when it starts there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mmcore.engine.record import CURVE_FILE  # noqa: F401  (re-exported: eval --curve writes it)


def trapezoid_auc(rates: Sequence[float], values: Sequence[float]) -> float:
    """Area under ``values`` over ``rates`` by the trapezoid rule; rates strictly increasing."""
    if len(rates) != len(values) or len(rates) < 2:
        raise ValueError(f"a curve needs at least two points with one value each, got {len(rates)} rates, {len(values)} values")
    if any(b <= a for a, b in zip(rates, rates[1:])):
        raise ValueError(f"curve rates must be strictly increasing, got {list(rates)}")
    return sum((r1 - r0) * (v0 + v1) / 2.0 for r0, r1, v0, v1 in zip(rates, rates[1:], values, values[1:]))


@dataclass(frozen=True)
class Robustness:
    auc: float
    mean: float  # auc / (r_K − r_0)
    relative: float  # mean / full; NaN when full is 0 or undefined
    full: float


def summarize(rates: Sequence[float], values: Sequence[float], full: float) -> Robustness:
    """The module's measures of one curve against the full-modality score ``full``."""
    auc = trapezoid_auc(rates, values)
    mean = auc / (rates[-1] - rates[0])
    relative = mean / full if full and math.isfinite(full) else math.nan
    return Robustness(auc, mean, relative, full)


# curve.json (``CURVE_FILE``, named beside the run-directory reader) layout:
"""Layout: ``{"split", "metrics", "draws", "min_present", "full": {metric: v}, "curves": {name:
{"rates": [...], "mean": {metric: [...]}, "std": {metric: [...]}, "robustness": {metric: {"auc",
"mean", "relative"}}}}}`` where ``name`` is ``uniform`` (every modality at the rate) or a
modality (that modality at the rate, the others present)."""
