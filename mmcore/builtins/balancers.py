"""The no-op balancer: every modality's term weighs 1 — the baseline any balancing method is measured against."""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.components import Balancer


class Uniform(Balancer):
    """Equal weights for every modality in the target loss group; observes nothing, keeps no state."""

    def __init__(self, modalities: list[str], target: str = "recon") -> None:
        super().__init__(modalities, target=target)

    def weights(self) -> Tensor:
        return torch.ones(len(self.modalities), device=self.device)
