"""``mmcore study check FILE --expected EXPECTED``: a study's numbers against a reproduction pack.

The expected file (YAML)::

    study: repro                       # must be the study's name
    endpoint: test.average.macro_f1    # default: the study's primary endpoint
    tolerance: 1.0e-6                  # default for every cell
    cells:
      uniform/imbalanced: {mean: 0.6123, tolerance: 1.0e-4}   # <arm>/<level>[+<level>]: mean over seeds

The study is run first (finished runs are skipped, so on a finished study this only reads), then
each cell's mean over seeds is compared: |mean − expected| ≤ tolerance passes. A file that does
not match the study (another name, an unknown cell, a cell of the study left out) is one line
and exit 2; a failed comparison is exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmcore.report.analysis import endpoint_value, split_endpoint
from mmcore.engine.record import RunRecord
from mmcore.study.plan import level_slug
from mmcore.study.spec import StudyError

DEFAULT_TOLERANCE = 1e-6


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


def read_expected(path: Path, study_name: str, cells: list[str], primary: str) -> tuple[str, dict[str, tuple[float, float]]]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise StudyError(f"{path}: cannot read: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), dict):
        raise StudyError(f"{path}: cells: expected <arm>/<levels> -> {{mean: x, tolerance: y}}")
    if raw.get("study") != study_name:
        raise StudyError(f"{path}: study: expected '{study_name}' (the study's name), got {raw.get('study')!r}")
    endpoint = str(raw.get("endpoint", primary))
    try:
        split_endpoint(endpoint)
    except ValueError as error:
        raise StudyError(f"{path}: endpoint: {error}") from None
    default = raw.get("tolerance", DEFAULT_TOLERANCE)
    out: dict[str, tuple[float, float]] = {}
    for cell, spec in raw["cells"].items():
        if cell not in cells:
            raise StudyError(f"{path}: cells.{cell}: not a cell of the study; expected one of {', '.join(cells)}")
        spec = spec if isinstance(spec, dict) else {"mean": spec}
        mean, tol = spec.get("mean"), spec.get("tolerance", default)
        if not isinstance(mean, (int, float)) or not isinstance(tol, (int, float)) or tol < 0:
            raise StudyError(f"{path}: cells.{cell}: expected {{mean: number, tolerance: number ≥ 0}}")
        out[cell] = (float(mean), float(tol))
    missing = [c for c in cells if c not in out]
    if missing:
        raise StudyError(f"{path}: cells: '{missing[0]}' of the study has no expected value")
    return endpoint, out


def check(state: Any, expected_path: Path) -> list[CellCheck]:
    """One CellCheck per cell of the study, in the study's order."""
    names = list(dict.fromkeys(f"{r.arm}/{level_slug(r.levels)}" for r in state.main))
    endpoint, expected = read_expected(expected_path, state.study.name, names, state.study.analysis.primary)
    values: dict[str, list[float]] = {n: [] for n in names}
    for run in state.main:
        record = RunRecord(run.run_dir)
        value = endpoint_value(record.results, endpoint) if record.finished else None
        if value is not None:
            values[f"{run.arm}/{level_slug(run.levels)}"].append(value)
    return [
        CellCheck(cell, mean, sum(values[cell]) / len(values[cell]) if values[cell] else None, tol, len(values[cell]))
        for cell, (mean, tol) in expected.items()
    ]
