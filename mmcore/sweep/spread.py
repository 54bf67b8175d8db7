"""What a sweep prints under its mean ± std table: a 95 % interval for every mean, and Friedman's
omnibus test across the grid points (``mmcore.omnibus``), on the test split's average over
conditions, per metric. Friedman asks whether *any* point differs before a reader looks at
pairwise tests; it pairs points by seed, which a sweep's shared seeds make valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from mmcore.conditions import AVERAGE
from mmcore.omnibus import friedman, mean_ci


def seed_values(outcomes: Sequence[Any], metric: str, split: str = "test") -> dict[str, dict[int, float]]:
    """point label -> seed -> the metric's average over conditions, for finished runs."""
    from mmcore.sweep.aggregate import read_results

    values: dict[str, dict[int, float]] = {}
    for o in outcomes:
        if o.status not in ("skipped", "done"):
            continue
        row = read_results(o.run.run_dir).get(split, {}).get(AVERAGE, {})
        if metric in row:
            values.setdefault(o.run.point.label, {})[o.run.seed] = float(row[metric])
    return values


def spread_table(outcomes: Sequence[Any], metrics: Sequence[str], digits: int = 4) -> Table | None:
    """One row per point and metric: mean, 95 % t interval; the caption holds Friedman's test."""
    table = Table(title="test, average over conditions: 95 % t interval of each mean")
    for name in ("point", "metric", "mean", "95% CI", "n"):
        table.add_column(name, overflow="fold")
    notes, rows = [], 0
    for metric in metrics:
        values = seed_values(outcomes, metric)
        for label, by_seed in values.items():
            mean, low, high = mean_ci(list(by_seed.values()))
            ci = "—" if low is None else f"[{low:.{digits}f}, {high:.{digits}f}]"
            table.add_row(Text(label), Text(metric), f"{mean:.{digits}f}", ci, str(len(by_seed)))
            rows += 1
        test = friedman(values)
        notes.append(f"{metric}: " + ("Friedman n/a (needs ≥ 3 points and ≥ 2 shared seeds)" if test is None else
                                      f"Friedman χ²({test.arms - 1}) = {test.statistic:.3f}, p = {test.p:.4g} over {test.blocks} seeds"))
    table.caption = "; ".join(notes)
    return table if rows else None
