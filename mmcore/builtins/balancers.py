"""The no-op balancer: fixed equal weights — the baseline any balancing method is measured against."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmcore.components import Balancer
from mmcore.errors import MMCoreError
from mmcore.options.hints import Positive
from mmcore.weighting import Norm, scale_weights


class Uniform(Balancer):
    """Equal weights for every modality in the target loss group; observes nothing.

    By default every weight is 1 (``norm: mean, total: 1``), the plain sum of the group's terms.
    ``norm: l2`` with ``total: 1`` gives the constant β = 1/√M, RedCore's relative advantage at
    its own scale with the adaptation switched off (``mmcore.weighting`` says why the scale
    matters for an ablation). Logged as ``weight.<modality>`` only when not all 1.

    Args:
        target: the loss group whose per-modality terms it weighs.
        norm: which size of the weight vector ``total`` fixes: its mean or its Euclidean norm.
        total: that size (mean 1 = all weights 1; L2 norm 1 = each weight 1/√M).
    """

    def __init__(self, modalities: list[str], target: str = "recon", norm: Norm = "mean", total: Positive = 1.0) -> None:
        super().__init__(modalities, target=target)
        if not self.modalities:
            raise MMCoreError("mmcore.uniform: needs at least one modality")
        self.norm = norm
        self.total = float(total)
        self.values = scale_weights([1.0] * len(self.modalities), norm, self.total)
        self.w = torch.tensor(self.values, dtype=torch.float32)

    def to(self, device: torch.device | str) -> "Uniform":
        super().to(device)
        self.w = self.w.to(self.device)
        return self

    def weights(self) -> Tensor:
        return self.w

    def log_values(self) -> dict[str, Tensor]:
        return {} if all(v == 1.0 for v in self.values) else {"weight": self.w}

    def state_dict(self) -> dict[str, Any]:
        return {}


Uniform.contract_options = [{}, {"norm": "l2"}, {"norm": "mean", "total": 0.5}]  # type: ignore[attr-defined]
