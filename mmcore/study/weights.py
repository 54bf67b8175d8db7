"""Balancer values over training, per arm and cell: what a balancer did beside what it achieved.

A run's ``metrics.jsonl`` carries, at every logged step, the per-modality values its balancer
declares (``log_values``: RedCore's ``beta.<m>`` and its EMA of the target losses, ...). Here they
are averaged over the seeds of one (arm, cell) at the steps every seed logged, for the report's
curves and a table of the last values. Balancers with fixed weights log none and get no row.
"""

from __future__ import annotations

import statistics
from typing import Any

from mmcore.engine.record import RunRecord
from mmcore.report.run import balancer_keys
from mmcore.study.plan import StudyRun, level_slug

Curve = tuple[list[float], list[float]]  # steps, mean over seeds
Curves = dict[str, dict[str, Curve]]  # logged name -> modality -> curve


def modalities(recipe: dict[str, Any]) -> list[str]:
    """The recipe's modalities, from its per-modality training rates (every recipe names them)."""
    rates = ((recipe.get("missing") or {}).get("train") or {}).get("rates")
    return [str(m) for m in rates] if isinstance(rates, dict) else []


def _mean_curve(records: list[RunRecord], key: str) -> Curve | None:
    series = [dict(zip(*r.metrics.series(key))) for r in records]
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return (steps, [statistics.fmean(s[t] for s in series) for t in steps]) if steps else None


def balancer_curves(runs: list[StudyRun]) -> dict[tuple[str, str], Curves]:
    """(arm, cell) -> the balancer's logged values per modality, mean over the finished seeds."""
    grouped: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        if record.finished:
            grouped.setdefault((run.arm, level_slug(run.levels)), []).append(record)
    out: dict[tuple[str, str], Curves] = {}
    for cell, records in grouped.items():
        recipe = records[0].recipe or {}
        names = modalities(recipe)
        curves: Curves = {}
        for prefix in sorted(balancer_keys(recipe, names) or ()):
            for m in names:
                curve = _mean_curve(records, f"{prefix}.{m}")
                if curve is not None:
                    curves.setdefault(prefix, {})[m] = curve
        if curves:
            out[cell] = curves
    return out
