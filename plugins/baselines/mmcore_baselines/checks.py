"""Input checks the baselines share: imputer input shapes, and what gradient-modulating
balancers read from a step (the unimodal confidences, the model's per-modality encoders)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.errors import DataError, MMCoreError
from mmcore.types import StepStats


def check_shapes(name: str, m: int, dim: int, h: Tensor, present: Tensor) -> None:
    """``h [B, M, d]`` and ``present [B, M]`` as an imputer of M modalities and width d expects."""
    if h.dim() != 3 or tuple(h.shape[1:]) != (m, dim) or tuple(present.shape) != tuple(h.shape[:2]):
        raise DataError(
            f"{name} expects h [B, {m}, {dim}] and present [B, {m}], got {tuple(h.shape)} and {tuple(present.shape)}"
        )


def confidences(name: str, stats: StepStats, device: torch.device) -> Tensor:
    """``[M]`` float32 unimodal confidences of the step (pooled over ranks by the engine). Validation
    already rejects a recipe without heads; this covers a balancer driven outside the engine."""
    if stats.unimodal_confidence is None:
        raise MMCoreError(
            f"{name} needs the unimodal heads' confidences: set 'model.unimodal_heads: true' in the recipe "
            f"(and use a classification dataset; regression has no class probabilities)"
        )
    return stats.unimodal_confidence.detach().to(device, torch.float32)


def encoder_modules(name: str, model: nn.Module, modalities: list[str]) -> nn.ModuleDict:
    """The model's per-modality encoders, whose gradients the balancer changes."""
    encoders = getattr(model, "encoders", None)
    if not isinstance(encoders, nn.ModuleDict) or any(m not in encoders for m in modalities):
        raise MMCoreError(f"{name}: the model must have 'encoders', a ModuleDict with modalities {modalities}")
    return encoders
