"""``baselines.gblending``: Gradient-Blending weights of the unimodal heads, online, for M modalities.

Source: Wang, Tran and Feiszli, "What Makes Training Multi-modal Classification Networks Hard?",
CVPR 2020 (Gradient-Blending), and its reference implementation in BalanceBenchmark (github
GeWu-Lab/BalanceBenchmark, ``balancemm/trainer/GBlending_trainer.py``, ``super_epoch_origin``),
from which the rule below was read.

For every head k (each unimodal head and the fusion head), from its mean train loss L_T,k and
validation loss L_V,k at the previous refresh (p) and now (n):

    G_k = L_V,k(n) − L_V,k(p)                                  (generalisation: change of val loss)
    O_k = (L_V,k(n) − L_T,k(n)) − (L_V,k(p) − L_T,k(p))         (change of the overfitting gap)
    w_k = |G_k| / O_k²,  normalised to Σ_k w_k = 1              (the reference: abs(g) / o²)

The weights of the ``unimodal`` group are then w_m / w_fusion (the engine's fusion task loss keeps
weight 1, so the blend Σ_k w_k L_k is applied up to the common factor 1/w_fusion), capped at
``max_weight``. Before the first refresh every weight is 1. Hook: ``end_epoch`` with
``EpochView.losses`` (the engine's per-head train and validation losses).

Differences from the reference:
- online: the reference re-estimates the weights every ``super_epoch`` (10) epochs by training a
  copy of the model per head for that many epochs; here the run's own losses, measured at the end
  of every ``every`` epochs, stand in for those trajectories (the paper's online approximation),
  so no extra training is done. The first refresh happens after ``2·every`` epochs (it needs a
  previous measurement).
- losses are measured in eval mode over the whole train split (this epoch's masks) and the whole
  validation split with every modality the data has; the reference averages the training loss
  over the super-epoch's batches.
- a zero O_k gets ``eps`` (1e-8) added to O_k² instead of dividing by zero; the fusion weight is
  floored at ``eps`` too.
- regression works as classification does: the heads' losses are the run's task loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmcore import Positive, PositiveInt
from mmcore.components import Balancer, EpochView
from mmcore.errors import MMCoreError

NAME = "baselines.gblending"
EPS = 1e-8


def blending_weights(prev_train: Tensor, prev_val: Tensor, train: Tensor, val: Tensor) -> Tensor:
    """``[K]`` normalised w_k = |G_k| / O_k² from the heads' losses at two refreshes."""
    g = val - prev_val
    o = (val - train) - (prev_val - prev_train)
    w = g.abs() / (o.square() + EPS)
    total = w.sum()
    return torch.where(total > 0, w / total.clamp_min(EPS), torch.full_like(w, 1.0 / w.numel()))


class GBlending(Balancer):
    """G-Blending: weigh each unimodal head's loss by how well it generalises relative to how much
    it overfits, measured on validation. Needs unimodal heads. Logged as ``blend.<modality>``.

    Args:
        target: the loss group it weighs (the unimodal heads').
        every: epochs between two measurements of the heads' losses.
        max_weight: cap on a unimodal head's weight relative to the fusion head's.
    """

    needs: frozenset[str] = frozenset()
    target_required = True  # its target must be a loss group of the model (mmcore.lossgroups)

    def __init__(self, modalities: list[str], target: str = "unimodal", every: PositiveInt = 1, max_weight: Positive = 10.0) -> None:
        super().__init__(modalities, target=target)
        self.every, self.max_weight = int(every), float(max_weight)
        self.w = torch.ones(len(self.modalities))
        self.prev: tuple[Tensor, Tensor] | None = None  # ([M+1] train, [M+1] val): unimodal heads then fusion

    def to(self, device: torch.device | str) -> "GBlending":
        super().to(device)
        self.w = self.w.to(self.device)
        self.prev = None if self.prev is None else (self.prev[0].to(self.device), self.prev[1].to(self.device))
        return self

    def weights(self) -> Tensor:
        return self.w  # replaced at refreshes, never written into

    def end_epoch(self, view: EpochView) -> None:
        if view.epoch % self.every:
            return
        train, val = view.losses("train"), view.losses("val")
        if "unimodal" not in train:
            raise MMCoreError(f"{NAME} weighs the unimodal heads: set model.unimodal_heads=true")
        now_t = torch.cat([train["unimodal"].float(), train["task"].float().view(1)]).to(self.device)
        now_v = torch.cat([val["unimodal"].float(), val["task"].float().view(1)]).to(self.device)
        if self.prev is not None:
            w = blending_weights(self.prev[0], self.prev[1], now_t, now_v)
            self.w = (w[:-1] / w[-1].clamp_min(EPS)).clamp(max=self.max_weight)
        self.prev = (now_t, now_v)

    def log_values(self) -> dict[str, Tensor]:
        return {"blend": self.w}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "w": self.w.cpu().tolist(),
            "prev": None if self.prev is None else [self.prev[0].cpu().tolist(), self.prev[1].cpu().tolist()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities:
            raise MMCoreError(f"{NAME}: checkpoint state is for modalities {state.get('modalities')}, this run has {self.modalities}")
        self.w = torch.tensor(state["w"], dtype=torch.float32, device=self.device)
        prev = state["prev"]
        self.prev = None if prev is None else tuple(torch.tensor(p, dtype=torch.float32, device=self.device) for p in prev)  # type: ignore[assignment]
