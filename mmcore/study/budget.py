"""The matched budget: every arm trains the same number of optimiser steps, its schedule scaled to it.

``budget: {epochs: E}`` sets ``train.epochs`` to E. ``budget: {steps: N}`` sets it to N divided by
the steps of one epoch, ceil(training rows / batch size) as :mod:`mmcore.engine.trainer` counts
them; a cell where N is not a whole number of epochs is refused with the nearest budgets that are,
because a run cut mid-epoch would end off its schedule and without its test evaluation.

In both cases the recipe file's schedule lengths in epochs (``train.schedule.constant_epochs`` and
``warmup_epochs``) are scaled by E / the recipe's ``train.epochs`` (rounded), so "full rate for
half the run" stays half of the new run — unless the study sets them itself (in ``overrides``, an
axis level, an arm or the tuning space), in which case its value stands.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mmcore.registry import Registry
from mmcore.study.spec import StudyError

SCHEDULE_KEYS = ("constant_epochs", "warmup_epochs")


def scaled_schedule(base: dict[str, Any], epochs: int, set_keys: set[str]) -> dict[str, int]:
    """``train.schedule.<k>`` overrides that keep the recipe's schedule proportional at ``epochs``."""
    train = base.get("train") or {}
    original, schedule = train.get("epochs"), train.get("schedule") or {}
    if not isinstance(original, int) or original == epochs or not isinstance(schedule, dict):
        return {}
    if any(k == "train" or k == "train.schedule" for k in set_keys):
        return {}  # the study replaces the whole node: its values stand
    out = {}
    for name in SCHEDULE_KEYS:
        key, value = f"train.schedule.{name}", schedule.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0 and key not in set_keys:
            out[key] = round(value * epochs / original)
    return out


class StepBudget:
    """Turns ``budget.steps`` into whole epochs per run; one dataset build per distinct dataset node."""

    def __init__(self, study_path: Path, steps: int, registry: Registry) -> None:
        self.path, self.steps, self.registry = study_path, steps, registry
        self.rows: dict[str, int] = {}
        self.refused: dict[tuple[int, int], str] = {}  # (rows, batch) -> the first run refused with them

    def train_rows(self, recipe: dict[str, Any]) -> int:
        key = json.dumps(recipe["dataset"], sort_keys=True)
        if key not in self.rows:
            from mmcore.engine.build import build_dataset

            self.rows[key] = len(build_dataset(recipe["dataset"], self.registry).split("train"))
        return self.rows[key]

    def epochs(self, recipe: dict[str, Any], where: str) -> int:
        """The epochs that make exactly ``steps`` optimiser steps for this validated recipe."""
        batch = int(recipe["train"]["batch_size"])
        rows = self.train_rows(recipe)
        per_epoch = math.ceil(rows / batch)
        if self.steps % per_epoch:
            # Every run with these rows and batch fails alike: one line for all of them, naming the
            # first (the caller drops repeats), not one per arm, cell and seed.
            first = self.refused.setdefault((rows, batch), where)
            low = max(per_epoch, self.steps - self.steps % per_epoch)
            raise StudyError(
                f"{self.path}: budget.steps: {self.steps} is not a whole number of epochs at {first} and every "
                f"run with its data and batch ({rows} training rows, batch {batch}: {per_epoch} steps per epoch); "
                f"expected a multiple of {per_epoch}, e.g. {low} or {low + per_epoch}"
            )
        return self.steps // per_epoch
