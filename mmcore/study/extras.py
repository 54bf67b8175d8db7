"""What a study reports beside its declared endpoints: MissBench's diagnostics, the scores under
random-rate test conditions (the train-rate × test-rate grid), and Friedman's test across arms.

None of these enter the pre-registered family: they describe, they do not decide.

- **MEI, MLI** (``mmcore.missbench``): read from each run's ``eval.json`` ``diagnostics``; MEI
  of the primary endpoint's metric, so it speaks of the same score. None where a run has no
  subset conditions (MEI) or no gradient norms (MLI).
- **Random-rate test conditions**: every mapping in the recipe's ``missing.eval.conditions``
  (``{random: {rates: ...}, name: r40}``) is a test condition drawn at given rates; with the
  training rates as a study axis, its table is the train × test grid. The primary endpoint's
  split and metric are read, per arm, cell and condition, over seeds.
- **Friedman** (``mmcore.omnibus``): per cell, over the seeds every arm has there, whether any
  arm differs on the primary endpoint before the declared pairwise tests say which.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mmcore.omnibus import Friedman, friedman, mean_ci
from mmcore.report.analysis import split_endpoint

Values = dict[int, float]  # seed -> value
Key = tuple[str, str]  # (arm, level slug)


@dataclass(frozen=True)
class Finished:
    """One finished run as these tables need it (the study reads it through ``RunRecord``)."""

    arm: str
    slug: str
    seed: int
    evaluation: Mapping[str, Any]  # the whole eval.json
    recipe: Mapping[str, Any]  # the resolved recipe.yaml


def missbench(runs: Iterable[Finished], metric: str) -> dict[Key, dict[str, Values]]:
    """(arm, slug) -> {"MEI": seed -> value, "MLI": ...}; undefined values are left out."""
    out: dict[Key, dict[str, Values]] = {}
    for run in runs:
        found = run.evaluation.get("diagnostics") or {}
        values = {"MEI": (found.get("mei") or {}).get(metric), "MLI": found.get("mli")}
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault((run.arm, run.slug), {}).setdefault(name, {})[run.seed] = float(value)
    return out


def random_condition_names(recipe: Mapping[str, Any]) -> list[str]:
    """Names of the recipe's random-mask evaluation conditions, in recipe order."""
    conditions = ((recipe.get("missing") or {}).get("eval") or {}).get("conditions")
    if not isinstance(conditions, list):
        return []
    return [str(c.get("name", "random")) for c in conditions if isinstance(c, Mapping)]


def rate_grid(runs: Iterable[Finished], endpoint: str) -> tuple[list[str], dict[Key, dict[str, Values]]]:
    """(condition names, (arm, slug) -> condition -> seed -> value) for the random-mask test
    conditions, at the endpoint's split and metric."""
    split, _, metric = split_endpoint(endpoint)
    names: list[str] = []
    out: dict[Key, dict[str, Values]] = {}
    for run in runs:
        table = (run.evaluation.get("results") or {}).get(split) or {}
        for name in random_condition_names(run.recipe):
            value = (table.get(name) or {}).get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                names += [] if name in names else [name]
                out.setdefault((run.arm, run.slug), {}).setdefault(name, {})[run.seed] = float(value)
    return names, out


def friedman_by_cell(values: Mapping[Key, Values], arms: list[str], slugs: list[str]) -> list[tuple[str, Friedman]]:
    """Friedman's test across the arms that ran in each cell (None-cells left out)."""
    out = []
    for slug in slugs:
        present = {arm: values[(arm, slug)] for arm in arms if (arm, slug) in values}
        test = friedman(present)
        if test is not None:
            out.append((slug, test))
    return out


def not_finite(values: Iterable[float]) -> str | None:
    """``n/a (n=3, 1 not finite)`` when a seed diverged: a mean and interval over it would print as nan."""
    xs = list(values)
    bad = sum(not math.isfinite(x) for x in xs)
    return f"n/a (n={len(xs)}, {bad} not finite)" if bad else None


def mean_with_ci(values: Values, digits: int = 4) -> str:
    """``mean [low, high] (n=k)``: the two-sided 95% Student-t interval (none for one seed)."""
    if not values:
        return "n/a"
    if (note := not_finite(values.values())) is not None:
        return note
    mean, low, high = mean_ci(list(values.values()))
    interval = "" if low is None else f" [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{mean:.{digits}f}{interval} (n={len(values)})"
