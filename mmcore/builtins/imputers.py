"""The baseline imputer: absent modalities stay zero.

It is what "no imputation" means in the comparison tables — the fusion head sees zeros where a
modality is missing — and the reference point a cross-modal imputer has to beat.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.errors import DataError
from mmcore.types import ImputerOutput, ModalitySpec


class ZeroImputer(nn.Module):
    """Keep present latents as they are and fill absent ones with zeros; no parameters, no losses."""

    loss_groups: tuple[str, ...] = ()  # mmcore.lossgroups: it produces no loss terms

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__()
        self.names = [s.name for s in specs]
        self.dim = dim

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        if h.dim() != 3 or h.shape[1:] != (len(self.names), self.dim) or present.shape != h.shape[:2]:
            raise DataError(
                f"mmcore.zero expects h [B, {len(self.names)}, {self.dim}] and present [B, {len(self.names)}], "
                f"got {tuple(h.shape)} and {tuple(present.shape)}"
            )
        # where, not multiply: a NaN in an absent row must not survive as NaN * 0
        z = torch.where(present.unsqueeze(-1).bool(), h, torch.zeros((), dtype=h.dtype, device=h.device))
        return ImputerOutput(z=z, losses={})
