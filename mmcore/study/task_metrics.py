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
from mmcore.recipe.crosschecks import Metrics, reported_metrics
from mmcore.recipe.loader import load_yaml


def study_metrics(recipe: Path, groups: list[list[dict[str, Any]]]) -> Metrics:
    """The metrics of the study's task: the recipe's dataset with every combination of the study's
    overrides of it (``groups``: the study's, each axis's levels, the arms), as
    :func:`~mmcore.recipe.crosschecks.reported_metrics` reads them."""
    from mmcore.plugins import get_registry
    from mmcore.recipe.overrides import apply_overrides

    try:
        tree = load_yaml(recipe)
        options = [list({json.dumps(o, sort_keys=True): o for o in (
            {k: v for k, v in g.items() if k.lstrip("+~").split(".")[0] == "dataset"} for g in group)}.values())
            for group in groups if group]
        nodes = [apply_overrides({"dataset": tree.get("dataset")}, [f"{k}={json.dumps(v)}" for o in combo for k, v in o.items()])
                 .get("dataset") for combo in itertools.product(*options)]
    except (MMCoreError, TypeError, ValueError):  # the recipe's own problems are the run's to report
        nodes = [None]
    return reported_metrics(nodes, get_registry())
