"""The baseline both benchmarks compare against: a plain PyTorch loop over the same model.

What a user would write by hand around the model a recipe builds: the whole padded split in a
``TensorDataset`` + ``DataLoader`` (shuffled), the recipe's masks, the same objective as the
engine with every loss weight 1 (no balancer), the engine's dropout masks, Adam with the recipe's settings, the recipe's
gradient clipping; no learning-rate schedule, validation, logging or checkpoints. Evaluation is
one pass per condition over the split (the reference code's way: the model runs once per
missing pattern).

Not a test: nothing is asserted; numbers depend on the machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from mmcore.conditions import condition_masks
from mmcore.engine import losses
from mmcore.fastdropout import apply_dropout_masks
from mmcore.engine.build import build_dataset, build_model, eval_conditions, train_missing_spec
from mmcore.recipe.plan import plan_of
from mmcore.missing import train_masks
from mmcore.plugins import get_registry
from mmcore.types import Batch


@dataclass
class PlainResult:
    """Times of a plain run; ``step_seconds`` leaves out each epoch's first step (warm-up, shuffling)."""

    seconds: float  # the whole training loop
    step_seconds: float = 0.0
    step_samples: int = 0
    steps: int = 0
    eval_items_per_s: float = 0.0
    first_step_s: float = 0.0  # from the call to the end of the first step (data, model, masks)
    extra: dict[str, Any] = field(default_factory=dict)


def plain_loop(recipe: dict[str, Any], device: torch.device, evaluate: bool = True) -> PlainResult:
    """Train ``recipe``'s model for ``train.epochs`` epochs by hand; optionally time evaluation."""
    called = time.perf_counter()
    registry = get_registry()
    plan = plan_of(recipe)
    dataset = build_dataset(plan.dataset, registry)
    names = [s.name for s in dataset.modalities]
    train = dataset.split("train")
    seq = [m for m in names if m in train.lengths]
    masks = train_masks(train_missing_spec(plan, names), names, train.ids, int(recipe["seed"]))
    torch.manual_seed(int(recipe["seed"]))
    model = build_model(plan, dataset.modalities, dataset.task, registry).to(device)
    apply_dropout_masks(model, plan.train.dropout_masks, device)  # the engine's masks (auto: fast in sequence encoders on a CPU)
    model.skip_absent = plan.train.skip_absent  # the engine's train.absent_rows (skip: absent sequence rows not encoded)
    cfg = recipe["train"]
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg["optimizer"]["lr"]), betas=tuple(cfg["optimizer"]["betas"]))
    heads = recipe["model"]["unimodal_heads"]
    unimodal_weight = float(heads["weight"]) if heads else 0.0
    kind = losses.task_loss_kind(dataset.task, cfg["task_loss"])
    tensors = [train.features[m] for m in names] + [train.lengths[m] for m in seq] + [train.target, masks]
    loader = DataLoader(TensorDataset(*tensors), batch_size=int(cfg["batch_size"]), shuffle=True)
    result = PlainResult(seconds=0.0)
    start = time.perf_counter()
    for _ in range(int(cfg["epochs"])):
        model.train()
        for position, (*parts, y, present) in enumerate(loader):
            began = time.perf_counter()
            xs, ls = parts[: len(names)], parts[len(names) :]
            batch = Batch(
                features={m: x.to(device) for m, x in zip(names, xs)},
                lengths={m: v.to(device) for m, v in zip(seq, ls)},
                target=y.to(device),
                ids=torch.zeros(len(y), dtype=torch.long),
            )
            present = present.to(device)
            out = model(batch, present)
            loss, _, groups = losses.combine(out, batch.target, kind, unimodal_weight, "", torch.ones(len(names), device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
            opt.step()
            _sync(device)
            ended = time.perf_counter()
            if result.steps == 0:
                result.first_step_s = ended - called
            result.steps += 1
            if position > 0:
                result.step_seconds += ended - began
                result.step_samples += len(y)
    result.seconds = time.perf_counter() - start
    if evaluate:
        result.eval_items_per_s = _plain_eval(recipe, dataset, model, names, seq, device)
    return result


@torch.no_grad()
def _plain_eval(recipe: dict[str, Any], dataset: Any, model: torch.nn.Module, names: list[str], seq: list[str], device: torch.device) -> float:
    """Items per second over val and test: one full pass of the model per condition."""
    model.eval()
    conditions = eval_conditions(plan_of(recipe), names)
    size, items = int(recipe["train"]["eval_batch_size"]), 0
    start = time.perf_counter()
    for split_name in ("val", "test"):
        split = dataset.split(split_name)
        for condition in conditions:
            present_all = condition_masks(condition, split.ids, len(names))
            for first in range(0, len(split), size):
                rows = slice(first, first + size)
                batch = Batch(
                    features={m: split.features[m][rows].to(device) for m in names},
                    lengths={m: split.lengths[m][rows].to(device) for m in seq},
                    target=split.target[rows].to(device),
                    ids=split.ids[rows],
                )
                model(batch, present_all[rows].to(device)).prediction.argmax(-1).cpu()
                items += len(batch.target)
    return items / max(time.perf_counter() - start, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
