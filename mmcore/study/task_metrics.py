"""The metric names a study's runs report, known from the study file before anything runs.

Why here: ``analysis.primary``, ``analysis.secondary``, ``tune.select`` and ``study check``'s
``endpoint`` must name a metric the runs will report, or a whole study trains towards an analysis
that can never be computed. The task, and so its metrics, follows from the recipe's dataset
options alone (its component's ``describe``), without building data.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from mmcore.errors import MMCoreError
from mmcore.metrics import METRICS_DIRECTION, TASK_METRICS
from mmcore.recipe.loader import load_yaml

Metrics = tuple[list[str], str]  # the metric names every run reports, and how to call them in an error


def study_metrics(recipe: Path, groups: list[list[dict[str, Any]]]) -> Metrics:
    """The metrics of the study's task: the recipe's dataset, with every combination of the study's
    overrides of it (``groups``: the study's, each axis's levels, the arms), described from its
    options alone. When any combination cannot say, or they disagree, every metric mmcore computes."""
    every = (sorted(METRICS_DIRECTION), "a known metric")
    try:
        from mmcore.plugins import get_registry
        from mmcore.recipe.crosschecks import describe_dataset
        from mmcore.recipe.overrides import apply_overrides

        tree = load_yaml(recipe)
        if not isinstance(tree.get("dataset"), dict):
            return every
        options = [list({json.dumps(o, sort_keys=True): o for o in (
            {k: v for k, v in g.items() if k.lstrip("+~").split(".")[0] == "dataset"} for g in group)}.values())
            for group in groups if group]
        kinds = set()
        for combo in itertools.product(*options):
            texts = [f"{k}={json.dumps(v)}" for o in combo for k, v in o.items()]
            node = apply_overrides({"dataset": tree["dataset"]}, texts).get("dataset")
            described = describe_dataset(node, get_registry()) if isinstance(node, dict) else None
            if described is None or described[1] is None:
                return every
            kinds.add(described[1].kind)
    except (MMCoreError, TypeError, ValueError):  # the recipe's own problems are the run's to report
        return every
    if len(kinds) != 1:
        return every
    kind = kinds.pop()
    return list(TASK_METRICS[kind]), f"a {kind} metric"
