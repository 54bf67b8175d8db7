"""``baselines.pmr``: Prototypical Modal Rebalance, for M modalities (classification).

Source: Fan, Xu, Zhu, Gao and Wang, "PMR: Prototypical Modal Rebalance for Multimodal Learning",
CVPR 2023, and its reference implementation in BalanceBenchmark (github GeWu-Lab/BalanceBenchmark,
``balancemm/trainer/PMR_trainer.py``; defaults from ``configs/trainer_config.yaml``: alpha 0.1,
momentum_coef 0.5), from which the rule below was read.

Prototypes p[m, c] are per-class means of modality m's features over the training set, refreshed
once an epoch as ``p ← (1 − μ)·new + μ·p`` (μ = ``momentum``; the first set is taken as is). Each
step, with f_i,m the feature of sample i and s_i,m,c = −‖f_i,m − p[m, c]‖:

    score_m = mean_i softmax(s_i,m)[y_i]                 (prototype confidence of modality m)
    coef_m  = clip(max_k score_k / score_m − 1, 0, 1)    (detached)
    loss   += alpha · Σ_m coef_m · CE(s_m, y)            (``Balancer.extra_loss``)

so the prototype loss pulls the lagging modality's features towards its class prototypes.

Hooks: ``extra_loss`` (the term above, from the step's completed latents) and ``end_epoch``
(prototypes from the engine's train-split latents).

Generalisation and differences from the reference:
- M modalities: for two, coef of the weaker modality is clip(ρ − 1, 0, 1) with ρ the stronger's
  score over the weaker's and the stronger's coef is 0 — the reference's β/λ exactly. (For M > 2
  the reference switches to an OGM-like gradient rule; here the prototype loss stays, with each
  modality compared to the best one.)
- features are mmcore's completed latents z[:, m]; the scores, the CE and the prototypes use only
  the rows where m is present (imputed rows would measure the imputer, not the modality). A
  modality absent from the whole batch gets coef 0.
- a class with no present training row for modality m (a class absent from the train split, or
  never seen with m) has no prototype p[m, c]: it is left out of m's softmax (its logit is the
  float minimum, not the distance to a zero vector, which would be a phantom class at the
  origin), and rows of that class do not count for m. A prototype first seen at a later refresh
  is taken as is, like the first set.
- the reference's score is a sum over the batch; the ratio is the same for a mean except when the
  modalities' present counts differ, where the mean compares like with like.
- prototypes come from the whole train split at each epoch's end (the reference: ~10% of the
  batches at each epoch's start), so the prototype loss starts in the second epoch;
  ``start_epoch``/``end_epoch`` (epochs done, inclusive) bound it (reference window 10–80 of 70).
- the PER entropy term (``PMR_PER`` in the reference) is not included.
- classification only (prototypes are per class); a regression run stops with a clear error.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore import Count, Fraction, NonNegative
from mmcore.components import Balancer, EpochView, StepView
from mmcore.errors import MMCoreError

NAME = "baselines.pmr"


def pmr_coefficients(score: Tensor, seen: Tensor) -> Tensor:
    """``[M]`` coef_m = clip(max score / score_m − 1, 0, 1); 0 for modalities not ``seen``."""
    best = torch.where(seen, score, torch.zeros_like(score)).max()
    coef = (best / score.clamp_min(1e-12) - 1.0).clamp(0.0, 1.0)
    return torch.where(seen, coef, torch.zeros_like(coef))


def prototypes(z: Tensor, target: Tensor, present: Tensor, classes: int) -> tuple[Tensor, Tensor]:
    """``([M, C, d] class means of present rows, [M, C] bool: class seen for that modality)``."""
    onehot = F.one_hot(target.long(), classes).float()  # [N, C]
    weight = present.float().unsqueeze(-1) * onehot.unsqueeze(1)  # [N, M, C]
    sums = torch.einsum("nmc,nmd->mcd", weight, z.float())
    counts = weight.sum(0)  # [M, C]
    return sums / counts.clamp_min(1.0).unsqueeze(-1), counts > 0


class PMR(Balancer):
    """PMR: a prototype loss for the modalities whose prototype confidence lags the best one.

    Logged as ``pmr_coef.<modality>``.

    Args:
        target: names the group only; its weights stay 1 (PMR adds its own loss term).
        alpha: weight of the prototype loss (BalanceBenchmark's default 0.1).
        momentum: weight of the previous prototypes at each epoch's refresh (0.5).
        start_epoch: epochs done before the prototype loss starts (>= 1: prototypes need an epoch).
        end_epoch: last epoch (epochs done) with the prototype loss; null: to the end.
    """

    needs: frozenset[str] = frozenset()
    target_required = False
    task_kinds = ("classification",)  # checked by mmcore validate against the dataset's task

    def __init__(
        self,
        modalities: list[str],
        target: str = "unimodal",
        alpha: NonNegative = 0.1,
        momentum: Fraction = 0.5,
        start_epoch: Count = 1,
        end_epoch: Count | None = None,
    ) -> None:
        super().__init__(modalities, target=target)
        if end_epoch is not None and end_epoch < start_epoch:
            raise MMCoreError(f"{NAME}: end_epoch ({end_epoch}) must be >= start_epoch ({start_epoch}) or null")
        self.alpha, self.momentum = float(alpha), float(momentum)
        self.first_epoch, self.last_epoch = max(int(start_epoch), 1), end_epoch  # not self.end_epoch: the hook
        self.epochs = 0  # epochs done
        self.proto: Tensor | None = None  # [M, C, d]
        self.seen: Tensor | None = None  # [M, C] bool: p[m, c] came from at least one present row
        self.coef = torch.zeros(len(self.modalities))

    def to(self, device: torch.device | str) -> "PMR":
        super().to(device)
        self.coef = self.coef.to(self.device)
        self.proto = None if self.proto is None else self.proto.to(self.device)
        self.seen = None if self.seen is None else self.seen.to(self.device)
        return self

    def active(self) -> bool:
        return self.proto is not None and self.first_epoch <= self.epochs and (self.last_epoch is None or self.epochs <= self.last_epoch)

    def extra_loss(self, view: StepView) -> Tensor | None:
        _classification(view.target)
        if not self.active():
            return None
        assert self.proto is not None
        dist = torch.cdist(view.z.float().transpose(0, 1), self.proto.to(view.z.device))  # [M, B, C]
        seen = self._seen().to(view.z.device)
        # a class without a prototype has no logit: the float minimum, finite so that no row gets NaN
        logits = torch.where(seen.unsqueeze(1), -dist, torch.full_like(dist, torch.finfo(dist.dtype).min))
        known = seen.gather(1, view.target.view(1, -1).expand(len(self.modalities), -1))  # [M, B]: y_i has p[m, y_i]
        present = (view.present.t() & known).float()  # [M, B]
        counts = present.sum(1)
        ce = F.cross_entropy(logits.flatten(0, 1), view.target.repeat(len(self.modalities)), reduction="none").view_as(present)
        ce = torch.where(present > 0, ce, torch.zeros_like(ce)).sum(1) / counts.clamp_min(1.0)
        truth = logits.softmax(-1).gather(-1, view.target.view(1, -1, 1).expand(len(self.modalities), -1, 1)).squeeze(-1)
        score = (truth * present).sum(1) / counts.clamp_min(1.0)
        self.coef = pmr_coefficients(score.detach(), counts > 0).to(self.device)
        return self.alpha * (self.coef.to(ce.dtype) * ce).sum()

    def end_epoch(self, view: EpochView) -> None:
        z, target, present = view.latents()
        _classification(target)
        classes = int(target.max()) + 1 if self.proto is None else self.proto.shape[1]  # epoch end: one read
        new, seen = prototypes(z, target, present, classes)
        if self.proto is not None:
            blended = (1.0 - self.momentum) * new + self.momentum * self.proto
            before, old = self._seen().to(seen.device), self.proto.to(new.device)
            new = torch.where((seen & before).unsqueeze(-1), blended, torch.where(seen.unsqueeze(-1), new, old))
            seen = seen | before
        self.proto, self.seen, self.epochs = new.to(self.device), seen.to(self.device), view.epoch

    def _seen(self) -> Tensor:
        """``[M, C]`` which prototypes exist; all of them for prototypes set without a mask."""
        assert self.proto is not None
        return self.seen if self.seen is not None else torch.ones(self.proto.shape[:2], dtype=torch.bool, device=self.proto.device)

    def log_values(self) -> dict[str, Tensor]:
        return {"pmr_coef": self.coef}

    def state_dict(self) -> dict[str, Any]:
        # float32 -> JSON -> float32 is exact. coef is left out: it is recomputed from every step's
        # own batch before it is used or logged (under DDP from each rank's batch, like the task loss).
        return {
            "modalities": list(self.modalities),
            "epochs": self.epochs,
            "proto": None if self.proto is None else self.proto.cpu().tolist(),
            "seen": None if self.seen is None else self.seen.cpu().tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities:
            raise MMCoreError(f"{NAME}: checkpoint state is for modalities {state.get('modalities')}, this run has {self.modalities}")
        self.epochs = int(state["epochs"])
        proto = state["proto"]
        self.proto = None if proto is None else torch.tensor(proto, dtype=torch.float32, device=self.device)
        # None (a checkpoint from before "seen" was saved): every prototype counts, as it did then
        seen = state.get("seen")
        self.seen = None if seen is None or proto is None else torch.tensor(seen, dtype=torch.bool, device=self.device)


def _classification(target: Tensor) -> None:
    if target.dtype.is_floating_point:
        raise MMCoreError(f"{NAME} is for classification (prototypes are per class); this dataset's task is regression")
