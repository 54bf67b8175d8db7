"""``mmcore study check FILE --expected EXPECTED``: a study's numbers against a reproduction pack.

The expected file (YAML)::

    study: repro                       # must be the study's name
    endpoint: test.average.macro_f1    # default: the study's primary endpoint
    tolerance: 1.0e-6                  # default for every cell
    cells:
      uniform/imbalanced: {mean: 0.6123, tolerance: 1.0e-4}   # <arm>/<level>[+<level>]: mean over seeds

The expected file is read and checked first, before anything trains (with the recipe loader's
reading rules: a regular file, UTF-8, no duplicate keys): a typo in its path or a bad value
never costs the study's compute. Then the study is run (finished runs are skipped, so on a
finished study this only reads) and each cell's mean over seeds is compared: |mean − expected|
≤ tolerance passes. A file that does not match the study (another name, an unknown cell, a cell
of the study left out, an endpoint no run reports, a tolerance that is not a finite number ≥ 0, a
mean that is not a finite number) is one line and exit 2; a failed comparison is exit 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.engine.record import RunRecord
from mmcore.report.analysis import endpoint_value, split_endpoint
from mmcore.study.plan import cells, level_slug
from mmcore.study.spec import Study, StudyError, endpoint, read_plain

DEFAULT_TOLERANCE = 1e-6
EXPECTED_KEYS = ("study", "endpoint", "tolerance", "cells")
CELL_KEYS = ("mean", "tolerance")


@dataclass(frozen=True)
class CellCheck:
    cell: str
    expected: float
    actual: float | None
    tolerance: float
    n: int

    @property
    def passed(self) -> bool:
        return self.actual is not None and abs(self.actual - self.expected) <= self.tolerance


@dataclass(frozen=True)
class Expected:
    """A checked expected file: the endpoint and, per cell, (mean, tolerance)."""

    path: Path
    endpoint: str
    cells: dict[str, tuple[float, float]]


def _number(path: Path, key: str, value: Any, what: str) -> float:
    """A finite real number (never a boolean: YAML's ``true`` is no mean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StudyError(f"{path}: {key}: expected {what}, got {value!r}")
    return float(value)


def _tolerance(path: Path, key: str, value: Any) -> float:
    tol = _number(path, key, value, "a finite number ≥ 0")
    if tol < 0:
        raise StudyError(f"{path}: {key}: expected a finite number ≥ 0, got {value!r}")
    return tol


def load_expected(path: Path, study: Study) -> Expected:
    """Read and check the expected file against the study (no run needed): call it before training."""
    path = Path(path)
    raw = read_plain(path, "the expected-numbers YAML file")
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: (top level): expected a mapping with study, cells (endpoint, tolerance optional)")
    unknown = [k for k in raw if k not in EXPECTED_KEYS]
    if unknown:
        raise StudyError(f"{path}: {unknown[0]}: unknown key; expected one of {', '.join(EXPECTED_KEYS)}")
    if not isinstance(raw.get("cells"), dict):
        raise StudyError(f"{path}: cells: expected <arm>/<levels> -> {{mean: x, tolerance: y}}")
    if raw.get("study") != study.name:
        raise StudyError(f"{path}: study: expected '{study.name}' (the study's name), got {raw.get('study')!r}")
    # the study's own rule for endpoints; its primary endpoint was checked when the study was loaded
    chosen = endpoint(path, "endpoint", raw["endpoint"], study.metrics) if "endpoint" in raw else study.analysis.primary
    default = _tolerance(path, "tolerance", raw.get("tolerance", DEFAULT_TOLERANCE))
    names = list(dict.fromkeys(f"{arm}/{level_slug(levels)}" for arm, levels in cells(study)))
    out: dict[str, tuple[float, float]] = {}
    for cell, spec in raw["cells"].items():
        if cell not in names:
            raise StudyError(f"{path}: cells.{cell}: not a cell of the study; expected one of {', '.join(names)}")
        if isinstance(spec, dict):
            bad = [k for k in spec if k not in CELL_KEYS]
            if bad or "mean" not in spec:
                raise StudyError(f"{path}: cells.{cell}{'.' + str(bad[0]) if bad else ''}: expected {{mean: number, tolerance: number ≥ 0}}")
            mean = _number(path, f"cells.{cell}.mean", spec["mean"], "a finite number")
            tol = _tolerance(path, f"cells.{cell}.tolerance", spec["tolerance"]) if "tolerance" in spec else default
        else:
            mean, tol = _number(path, f"cells.{cell}", spec, "a finite number (the mean) or {mean: number, tolerance: number ≥ 0}"), default
        out[cell] = (mean, tol)
    missing = [c for c in names if c not in out]
    if missing:
        raise StudyError(f"{path}: cells: '{missing[0]}' of the study has no expected value")
    return Expected(path, chosen, out)


def compare(state: Any, expected: Expected) -> list[CellCheck]:
    """One CellCheck per cell of the study, in the expected file's order. An endpoint that no
    finished run reports (an unknown condition, say) is the expected file's error, not a failure."""
    names = list(dict.fromkeys(f"{r.arm}/{level_slug(r.levels)}" for r in state.main))
    values: dict[str, list[float]] = {n: [] for n in names}
    finished: list[RunRecord] = []
    for run in state.main:
        record = RunRecord(run.run_dir)
        value = endpoint_value(record.results, expected.endpoint) if record.finished else None
        if record.finished:
            finished.append(record)
        if value is not None:
            values[f"{run.arm}/{level_slug(run.levels)}"].append(value)
    if finished and not any(values.values()):
        split, _, metric = split_endpoint(expected.endpoint)
        conditions = sorted((finished[0].results.get(split) or {}).keys())
        raise StudyError(f"{expected.path}: endpoint: '{expected.endpoint}' is in no finished run's results; expected "
                         f"{split}.<condition>.{metric} with a condition among {', '.join(conditions) or '(none)'}")
    return [
        CellCheck(cell, mean, sum(values[cell]) / len(values[cell]) if values[cell] else None, tol, len(values[cell]))
        for cell, (mean, tol) in expected.cells.items()
    ]


def check(state: Any, expected_path: Path) -> list[CellCheck]:
    """Read the expected file and compare (for a study already run; ``study check`` reads it first)."""
    return compare(state, load_expected(expected_path, state.study))
