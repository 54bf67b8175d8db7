"""Evaluation under named availability conditions.

Each batch is encoded once; the imputer and fusion then run once per condition, because the
encoders depend on their own modality only. Metrics are computed per condition from the pooled
predictions of the split and then averaged over conditions (an unweighted mean: each condition
counts once, which is how the field reports "average over missing patterns"). A ``pooled`` row
adds the metrics of all conditions' predictions pooled into one set, which is how RedCore's
reference code reports its numbers (github sunjunaimer/RedCore, ``train_miss.py``: the test
copies of every pattern are concatenated before scoring); ``eval.json`` keeps it beside the
per-condition results, not among them.
"""

from __future__ import annotations

import csv
import json
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from mmcore.conditions import AVERAGE, Condition, condition_masks, empty_rows
from mmcore.engine.batching import trim_padding
from mmcore.engine.model import MultimodalModel
from mmcore.engine.runtime import Runtime
from mmcore.engine.losses import elementwise_task_loss
from mmcore.metrics import classification_metrics, confusion_matrix, regression_metrics
from mmcore.types import SplitData, TaskSpec

POOLED = "pooled"  # eval.json's key for all conditions' predictions scored together (not a condition)
MAX_CONFUSION_CLASSES = 50  # above this a confusion matrix is too large to read or to keep in eval.json


class ScoreTable(dict):  # type: ignore[type-arg]
    """Condition -> metrics, plus ``average``; the pooled metrics ride along as ``.pooled``.

    An attribute rather than a row, so that everything iterating the table (reports, sweeps,
    robustness curves, tests) still sees conditions and their average only.
    """

    pooled: dict[str, float] | None = None
    loss: float | None = None  # the task loss averaged over conditions (validation curves), when asked
    confusion: dict[str, Any] | None = None  # classification: confusion matrices for the report
    empty: dict[str, int] | None = None  # condition -> rows scored with no modality present (mmcore.conditions)
ROWS_PER_CALL = 16384  # rows (samples × conditions) given to the imputer and fusion at once
FRAMES_PER_CALL = 2048  # padded frames per sequence-encoder call (rows in length order; model.encode_by_length)


def condition_mask_table(conditions: list[Condition], split: SplitData, num_modalities: int) -> dict[str, Tensor]:
    """Masks of every condition for a whole split, computed once (they depend on ids only).

    Rows whose features were unusable (``data.nonfinite: absent``) are absent under every condition;
    a fixed subset can leave such a row with nothing present: it is scored, and counted in
    ``eval.json``'s ``empty_rows`` (``mmcore.conditions``).
    """
    return {c.name: usable(condition_masks(c, split.ids, num_modalities, split).to(split.ids.device), split) for c in conditions}


def usable(masks: Tensor, split: SplitData) -> Tensor:
    """Masks with the rows whose features were unusable (``data.nonfinite: absent``) marked absent,
    for training masks and evaluation conditions alike. Drawn masks already leave them out, so
    that ``min_present`` holds among a row's usable modalities (``mmcore.missing``); here it
    reaches fixed conditions and masks from anywhere else."""
    unusable = getattr(split, "unusable", None)
    return masks if unusable is None else masks & ~unusable.to(masks.device)


@torch.no_grad()
def predict(
    model: MultimodalModel,
    split: SplitData,
    masks: dict[str, Tensor],
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
    rows: tuple[int, int] | None = None,
) -> dict[str, Tensor]:
    """Fusion outputs ``[N, out_dim]`` per condition, in split order. Leaves the model in eval mode.

    ``rows`` restricts the work to rows ``[start, stop)`` of the split (one rank's share).

    A batch is encoded once; its encodings are then repeated once per condition and the imputer
    and fusion run on all conditions together (in chunks of about ``batch_size`` rows), which
    turns dozens of small calls into a few large ones. Components are row-wise at evaluation time
    (the contract suite checks it), so this gives the same outputs as one call per condition.
    """
    model.eval()
    first_row, n = rows if rows is not None else (0, len(split))
    names = list(masks)
    per_call = max(1, max(batch_size, ROWS_PER_CALL) // max(1, min(n - first_row, batch_size)))  # conditions per call
    outputs: dict[str, list[Tensor]] = {name: [] for name in names}
    for start in range(first_row, n, batch_size):
        stop = min(n, start + batch_size)
        batch = trim_padding(split.rows(start, stop))  # views; padding past the batch's longest row costs time only
        with autocast():
            h = model.encode_by_length(batch, FRAMES_PER_CALL)
            for first in range(0, len(names), per_call):
                group = names[first : first + per_call]
                stacked = torch.cat([masks[name][start:stop] for name in group])
                prediction = model.complete(h.repeat(len(group), 1, 1), stacked, unimodal=False).prediction.float()
                for name, chunk in zip(group, prediction.split(stop - start)):
                    outputs[name].append(chunk)
    if first_row >= n:  # an empty share of rows: nothing to predict
        return {name: torch.empty(0, device=split.ids.device) for name in names}
    return {name: torch.cat(chunks) for name, chunks in outputs.items()}


def score(
    predictions: dict[str, Tensor], target: Tensor, task: TaskSpec, loss_kind: str | None = None
) -> dict[str, dict[str, float]]:
    """Metrics per condition and their average over the conditions; ``.pooled`` on the result
    scores the concatenation of every condition's predictions against the target repeated once
    per condition. With ``loss_kind``, ``.loss`` is that task loss averaged over the conditions
    (the validation loss the report draws beside the training loss).
    """

    def metrics_of(output: Tensor, truth: Tensor) -> dict[str, float]:
        if task.kind == "classification":
            return classification_metrics(output, truth, int(task.num_classes))  # scores: a NaN row is seen
        return regression_metrics(output.squeeze(-1), truth.float())

    table = ScoreTable({name: metrics_of(output, target) for name, output in predictions.items()})
    metrics = list(next(iter(table.values())))
    table[AVERAGE] = {k: sum(table[name][k] for name in predictions) / len(predictions) for k in metrics}
    table.pooled = metrics_of(torch.cat(list(predictions.values())), target.repeat(len(predictions)))
    if loss_kind is not None:
        means = [float(elementwise_task_loss(out, target, loss_kind).mean()) for out in predictions.values()]
        table.loss = sum(means) / len(means)
    if task.kind == "classification" and int(task.num_classes) <= MAX_CONFUSION_CLASSES:
        table.confusion = confusions(predictions, target, task)
    return table


def confusions(predictions: dict[str, Tensor], target: Tensor, task: TaskSpec) -> dict[str, Any]:
    """Confusion matrices (rows: true class, columns: predicted) of the condition with the most
    modalities present (the full set under ``conditions: all``) and of every condition pooled."""
    c = int(task.num_classes)
    full = max(predictions, key=lambda name: len(name.split("+")))
    pooled = torch.cat([out.argmax(-1) for out in predictions.values()])
    return {
        "classes": list(task.class_names) if task.class_names else [str(k) for k in range(c)],
        "condition": full,
        "matrix": confusion_matrix(predictions[full].argmax(-1), target, c).tolist(),
        "pooled": confusion_matrix(pooled, target.repeat(len(predictions)), c).tolist(),
    }


def evaluate(
    model: MultimodalModel,
    split: SplitData,
    masks: dict[str, Tensor],
    task: TaskSpec,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[Any]],
    runtime: Runtime | None = None,
    loss_kind: str | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per condition and averaged (``loss_kind``: see :func:`score`). Under data parallelism every rank predicts its share
    of the rows and the predictions are gathered in order, so every rank scores the same
    predictions one process would have made."""
    if runtime is None or not runtime.distributed:
        table = score(predict(model, split, masks, batch_size, autocast), split.target, task, loss_kind)
    else:
        n = len(split)
        local = predict(model, split, masks, batch_size, autocast, rows=runtime.rows(n))
        gathered = {k: runtime.all_gather_rows(v.reshape(-1, task.out_dim), n) for k, v in local.items()}
        table = score(gathered, split.target, task, loss_kind)
    table.empty = empty_rows(masks) or None  # type: ignore[attr-defined]
    return table


def write_eval(run_dir: Path, results: dict[str, dict[str, dict[str, float]]], extra: dict[str, Any]) -> None:
    """``eval.json`` (nested split → condition → metric) and ``eval.csv`` (one row per split and condition).

    Tables from :func:`score` add their pooled metrics to eval.json's ``pooled`` (split → metric),
    outside ``results``, so that everything reading ``results`` sees conditions and their average only.
    """
    pooled = {split: table.pooled for split, table in results.items() if getattr(table, "pooled", None) is not None}
    confusion = {split: table.confusion for split, table in results.items() if getattr(table, "confusion", None)}
    empty = {split: table.empty for split, table in results.items() if getattr(table, "empty", None)}
    body = {**extra, "results": results, "pooled": pooled} | ({"confusion": confusion} if confusion else {})
    body |= {"empty_rows": empty} if empty else {}  # rows a condition left with nothing present, still scored
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
    # last, written aside and renamed: eval.json marks a run finished, so a kill never leaves half of one
    partial = run_dir / f".eval.json.tmp-{os.getpid()}"
    partial.write_text(json.dumps(body, indent=1))
    os.replace(partial, run_dir / "eval.json")
