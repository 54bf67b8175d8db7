"""Optimisers and learning-rate schedules.

The schedule is a pure function of the step, applied by setting each group's ``lr`` before the
optimiser step; resuming therefore needs nothing but the step count.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn


def build_optimizer(cfg: dict[str, Any], model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimiser over the trainable parameters. ``implementation`` picks torch's
    multi-tensor (``foreach``, bit-identical to its per-tensor loop, which torch would otherwise
    use on a CPU) or fused update; both keep the same state dict, so a checkpoint loads in either."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind = cfg["type"]
    lr = float(cfg["lr"])
    wd = float(cfg["weight_decay"])
    fused = cfg.get("implementation", "foreach") == "fused"
    how = {"fused": True} if fused else {"foreach": True}
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=wd, **how)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg["betas"]), weight_decay=wd, **how)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg["momentum"]), weight_decay=wd, **how)
    raise ValueError(f"unknown optimizer {kind!r}")  # unreachable after validation


def lr_factor(cfg: dict[str, Any], steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at a given step.

    ``constant``; ``linear``: constant for ``constant_epochs`` then linear decay to 0 at the end,
    step by step; ``linear_epoch``: the reference's rule (github sunjunaimer/RedCore,
    ``models/networks/tools.py``, ``get_scheduler`` 'linear', stepped once per epoch): the factor
    of epoch e (from 0) is ``1 - max(0, e + 1 - H) / (E - H + 1)`` with H = ``constant_epochs`` and
    E = ``epochs``, constant within an epoch, so with 30 + 30 epochs the last epoch runs at 1/31 of
    the rate, never 0; ``cosine``: constant for ``constant_epochs`` then half-cosine to 0.
    ``warmup_epochs`` ramps linearly from 0 first.
    """
    kind = cfg["type"]
    total = max(1, steps_per_epoch * epochs)
    warmup = steps_per_epoch * int(cfg.get("warmup_epochs", 0))
    hold = steps_per_epoch * int(cfg.get("constant_epochs", 0))

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant" or step < max(hold, warmup):
            return 1.0
        if kind == "linear_epoch":
            epoch = min(step // max(1, steps_per_epoch), epochs - 1)
            held = int(cfg.get("constant_epochs", 0))
            return 1.0 - max(0, epoch + 1 - held) / (epochs - held + 1)
        start = max(hold, warmup)
        progress = (step - start) / max(1, total - start)
        progress = min(1.0, progress)
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def set_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = base_lr * factor
