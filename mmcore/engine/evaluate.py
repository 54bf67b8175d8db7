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

from mmcore.conditions import Condition, condition_masks
from mmcore.engine.model import MultimodalModel
from mmcore.metrics import classification_metrics, regression_metrics
from mmcore.types import SplitData, TaskSpec

AVERAGE = "average"
ROWS_PER_CALL = 16384  # rows (samples × conditions) given to the imputer and fusion at once


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
    """Fusion outputs ``[N, out_dim]`` per condition, in split order. Leaves the model in eval mode.

    A batch is encoded once; its encodings are then repeated once per condition and the imputer
    and fusion run on all conditions together (in chunks of about ``batch_size`` rows), which
    turns dozens of small calls into a few large ones. Components are row-wise at evaluation time
    (the contract suite checks it), so this gives the same outputs as one call per condition.
    """
    model.eval()
    n, names = len(split), list(masks)
    rows = max(batch_size, ROWS_PER_CALL)
    per_call = max(1, rows // max(1, min(n, batch_size)))  # conditions per imputer call
    outputs: dict[str, list[Tensor]] = {name: [] for name in names}
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(n, start + batch_size), device=split.ids.device)
        batch = split.select(index)
        with autocast():
            h = model.encode(batch)
            for first in range(0, len(names), per_call):
                group = names[first : first + per_call]
                stacked = torch.cat([masks[name].index_select(0, index) for name in group])
                prediction = model.complete(h.repeat(len(group), 1, 1), stacked).prediction.float()
                for name, chunk in zip(group, prediction.split(len(index))):
                    outputs[name].append(chunk)
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
