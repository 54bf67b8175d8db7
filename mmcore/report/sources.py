"""What reports read from runs and sweeps: the run-directory readers of :mod:`mmcore.engine.record`.

The run-directory format has one reader, beside its writer, in ``mmcore.engine.record``; this
module re-exports it under the names the report code uses and adds the report-only helpers. A
sweep directory: ``sweep.json``, ``results.csv`` and one run directory per point and seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcore.errors import MMCoreError
from mmcore.engine.record import (  # noqa: F401  (re-exported for the report modules)
    Metrics,
    VAL_LOSS,
    RunRecord,
    finite,
    is_run,
    later_evals,
    read_eval,
    read_json,
    read_metrics,
    read_yaml,
)

GRAD_NORM = "grad_norm"  # metrics.jsonl keys grad_norm.<modality>: per-modality encoder gradient norms


def is_sweep(path: Path) -> bool:
    return (path / "sweep.json").is_file()


def select_metric(recipe: dict[str, Any]) -> str | None:
    select = (recipe.get("train") or {}).get("select")
    return select.rsplit(".", 1)[-1] if isinstance(select, str) else None


def chosen_metric(asked: str | None, default: str | None, available: list[str]) -> str | None:
    """The metric a report sorts and plots by: ``--metric`` when given, else ``default``. A
    ``--metric`` the results do not hold is one line naming those they do, instead of a page
    whose metric figures are silently left out; with no results yet there is nothing to check."""
    if asked is not None and available and asked not in available:
        raise MMCoreError(f"--metric: '{asked}' is not in these results; expected one of {', '.join(available)}")
    return asked or default
