"""Aggregating finished runs: mean ± standard deviation over seeds, per grid point and metric.

The standard deviation is the sample one (ddof=1, Bessel's correction), which is what papers
mean by "± std over N seeds" and what ``numpy.std(ddof=1)`` / ``statistics.stdev`` compute; it
is reported as 0 for a single seed rather than undefined, with ``n`` next to it so a reader can
tell. ``results.csv`` is long-format (one row per point, split, condition and metric), which
spreadsheets and pandas pivot easily; the screen table shows one split and condition.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mmcore.conditions import AVERAGE
from mmcore.errors import MMCoreError
from mmcore.sweep.grid import Point
from mmcore.types import EVAL_SPLITS

SPLITS = tuple(reversed(EVAL_SPLITS))  # test first: it is what a results table reports
Results = dict[str, dict[str, dict[str, float]]]  # split -> condition -> metric -> value


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof=1); 0 for one value
    n: int


@dataclass(frozen=True)
class Row:
    point: Point
    split: str
    condition: str
    metric: str
    stat: Stat


def mean_std(values: list[float]) -> Stat:
    """Mean and sample standard deviation (ddof=1; 0.0 when there is one value)."""
    if not values:
        raise ValueError("mean_std needs at least one value")
    if not all(math.isfinite(v) for v in values):  # e.g. a NaN *_nz metric: NaN in, NaN out
        return Stat(sum(values) / len(values), math.nan if len(values) > 1 else 0.0, len(values))
    # statistics computes with exact fractions: equal values give std exactly 0, mean exactly the value
    try:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
    except OverflowError:  # a spread past the float maximum (seeds near ±1.8e308): inf, not a traceback
        std = math.inf
    return Stat(statistics.mean(values), std, len(values))


def read_results(run_dir: Path) -> Results:
    """The ``results`` of a run's eval.json (split -> condition -> metric -> value), via RunRecord."""
    from mmcore.engine.record import EVAL_FILE, RunRecord

    if not (Path(run_dir) / EVAL_FILE).is_file():
        raise MMCoreError(f"{Path(run_dir) / EVAL_FILE}: cannot read the run's results: no such file")
    return RunRecord.load(run_dir).results


def _ordered(keys: list[str]) -> list[str]:
    """First-seen order, with the average condition first."""
    unique = list(dict.fromkeys(keys))
    return [AVERAGE, *(k for k in unique if k != AVERAGE)] if AVERAGE in unique else unique


def aggregate(per_point: list[tuple[Point, list[Results]]]) -> list[Row]:
    """One row per point, split, condition and metric over the runs (seeds) that reported it."""
    rows: list[Row] = []
    for point, runs in per_point:
        for split in SPLITS:
            tables = [r[split] for r in runs if split in r]
            for condition in _ordered([c for t in tables for c in t]):
                cells = [t[condition] for t in tables if condition in t]
                for metric in dict.fromkeys(m for cell in cells for m in cell):
                    values = [float(cell[metric]) for cell in cells if metric in cell]
                    rows.append(Row(point, split, condition, metric, mean_std(values)))
    return rows


@contextlib.contextmanager
def written_aside(path: Path) -> Iterator[Path]:
    """A path to write ``path``'s new content to, moved over ``path`` when the block ends without
    error: a kill or a stop mid-write leaves the previous file (or none), never half of a table
    that a reader would trust with rows missing. The aside name holds this process's pid, as two
    invocations of one study may write its outputs at once."""
    aside = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield aside
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this machine)."""
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def write_csv(path: Path, rows: list[Row], keys: list[str]) -> None:
    """``point, <grid keys>, split, condition, metric, mean, std, n``; values at full precision,
    written aside and moved in whole."""
    with written_aside(path) as aside, open(aside, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["point", *keys, "split", "condition", "metric", "mean", "std", "n"])
        for row in rows:
            values = dict(row.point.assignments)
            writer.writerow(
                [row.point.slug, *(values.get(k, "") for k in keys), row.split, row.condition, row.metric,
                 repr(row.stat.mean), repr(row.stat.std), row.stat.n]
            )


def read_csv(path: Path) -> list[dict[str, Any]]:
    """results.csv back as dicts with numbers converted (for reports and tests)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["mean"], row["std"], row["n"] = float(row["mean"]), float(row["std"]), int(row["n"])
    return rows


def metric_names(rows: list[Row], split: str = "test", condition: str = AVERAGE) -> list[str]:
    return list(dict.fromkeys(r.metric for r in rows if r.split == split and r.condition == condition))


def results_table(
    rows: list[Row],
    points: list[Point],
    keys: list[str],
    metrics: list[str],
    split: str = "test",
    condition: str = AVERAGE,
    digits: int = 4,
) -> Table:
    """Grid points as rows, ``mean ± std`` per metric as columns; points without results show n = 0."""
    table = Table(title=escape(f"{split}, {condition} over conditions: mean ± std over seeds"))  # names are not markup
    for key in keys or ["point"]:  # min widths: rich would rather shrink a column to nothing
        table.add_column(Text(key), overflow="fold", min_width=min(len(key), 16))
    for metric in metrics:  # on a narrow screen "mean ±" and "std" go on two lines
        table.add_column(Text(metric), justify="right", min_width=6)
    table.add_column("n", justify="right", no_wrap=True, min_width=1)
    cell = {(r.point.slug, r.metric): r.stat for r in rows if r.split == split and r.condition == condition}
    for point in points:
        values = dict(point.assignments)
        stats = [cell.get((point.slug, m)) for m in metrics]
        n = max((s.n for s in stats if s is not None), default=0)
        shown = [f"{s.mean:.{digits}f} ± {s.std:.{digits}f}" if s is not None else "—" for s in stats]
        table.add_row(*(Text(str(v)) for v in [values[k] for k in keys] or [point.label]), *shown, str(n))
    return table
