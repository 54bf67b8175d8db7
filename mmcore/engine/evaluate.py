"""Evaluation under named availability conditions.

Each batch is encoded once; the imputer and fusion then run once per condition, because the
encoders depend on their own modality only. Metrics are computed per condition from the pooled
predictions of the split and then averaged over conditions (an unweighted mean: each condition
counts once, which is how the field reports "average over missing patterns").
"""

from __future__ import annotations

import csv
import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from mmcore.engine.model import MultimodalModel
from mmcore.metrics import classification_metrics, regression_metrics
from mmcore.missing import Condition, condition_masks
from mmcore.types import SplitData, TaskSpec

AVERAGE = "average"


def condition_mask_table(conditions: list[Condition], split: SplitData, num_modalities: int) -> dict[str, Tensor]:
    """Masks of every condition for a whole split, computed once (they depend on ids only)."""
    return {c.name: condition_masks(c, split.ids, num_modalities).to(split.ids.device) for c in conditions}


@torch.no_grad()
def predict(
    model: MultimodalModel,
    split: SplitData,
    masks: dict[str, Tensor],
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, Tensor]:
    """Fusion outputs ``[N, out_dim]`` per condition, in split order. Leaves the model in eval mode."""
    model.eval()
    n = len(split)
    outputs: dict[str, list[Tensor]] = {name: [] for name in masks}
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(n, start + batch_size), device=split.ids.device)
        batch = split.select(index)
        with autocast():
            h = model.encode(batch)
            for name, mask in masks.items():
                outputs[name].append(model.complete(h, mask.index_select(0, index)).prediction.float())
    return {name: torch.cat(chunks) for name, chunks in outputs.items()}


def score(predictions: dict[str, Tensor], target: Tensor, task: TaskSpec) -> dict[str, dict[str, float]]:
    """Metrics per condition plus their average over conditions."""
    table: dict[str, dict[str, float]] = {}
    for name, output in predictions.items():
        if task.kind == "classification":
            table[name] = classification_metrics(output.argmax(-1), target, int(task.num_classes))
        else:
            table[name] = regression_metrics(output.squeeze(-1), target.float())
    metrics = list(next(iter(table.values())))
    table[AVERAGE] = {k: sum(row[k] for row in table.values()) / len(predictions) for k in metrics}
    return table


def evaluate(
    model: MultimodalModel,
    split: SplitData,
    masks: dict[str, Tensor],
    task: TaskSpec,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
) -> dict[str, dict[str, float]]:
    return score(predict(model, split, masks, batch_size, autocast), split.target, task)


def write_eval(run_dir: Path, results: dict[str, dict[str, dict[str, float]]], extra: dict[str, Any]) -> None:
    """``eval.json`` (nested split → condition → metric) and ``eval.csv`` (one row per split and condition)."""
    (run_dir / "eval.json").write_text(json.dumps({**extra, "results": results}, indent=1))
    metric_names: list[str] = []
    for table in results.values():
        for row in table.values():
            metric_names += [k for k in row if k not in metric_names]
    with open(run_dir / "eval.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "condition", *metric_names])
        for split_name, table in results.items():
            for condition, row in table.items():
                writer.writerow([split_name, condition, *[row.get(k, "") for k in metric_names]])
