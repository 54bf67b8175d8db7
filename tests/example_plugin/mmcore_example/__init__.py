"""An example third-party plugin: a balancer that scales its group by a constant factor."""

from __future__ import annotations

import torch

import mmcore


class Halves(mmcore.Balancer):
    """Scales every modality's term of the target group by ``factor``."""

    def __init__(self, modalities: list[str], target: str = "recon", factor: float = 0.5) -> None:
        super().__init__(modalities, target)
        self.factor = factor

    def weights(self) -> torch.Tensor:
        return torch.full((len(self.modalities),), self.factor, device=self.device)


@mmcore.hookimpl
def register_balancers(register) -> None:
    register("example.halves", Halves)
