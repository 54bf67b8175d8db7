"""``baselines.pattern_dro``: group DRO over availability patterns, so rare patterns are not drowned.

Sources: the group-DRO rule is Sagawa, Koh, Hashimoto and Liang, "Distributionally Robust Neural
Networks for Group Shifts", ICLR 2020 (Algorithm 1), and its reference code (github
kohpangwei/group_DRO, ``loss.py``, ``LossComputer.compute_robust_loss``; step size 0.01 there is
this ``eta``'s default). Grouping rows by their *availability pattern* is the idea of REMIND
(Wu, Shuai and Shen, arXiv 2603.00046, 2026), which pairs a group-DRO objective over modality
combinations with a group-specialised mixture of experts: under imbalanced missing rates the
2^M − 1 patterns (63 on Handwritten) follow a long tail, and the tail patterns' loss is swamped.

With ℓ_i each row's task loss and g(i) = Σ_m present[i, m]·2^m the row's pattern, each step:

    L_g = mean of ℓ_i over the rows with pattern g            (0 for a pattern not in the batch)
    q_g ← q_g · exp(η · L_g);   q ← q / Σ q                    (q starts uniform over 2^M − 1)
    objective = (1 − mix) · mean_i ℓ_i + mix · Σ_g q_g · L_g

``extra_loss`` returns ``mix · (Σ_g q_g L_g − mean_i ℓ_i)``, so the engine's task loss plus it is
that objective (logged as ``balancer_loss``). The hook used: ``StepView.task_rows`` (each row's
task loss with its gradient, added for this method) and ``StepView.present``.

Deviations:
- Only REMIND's group-DRO part; the mixture-of-experts fusion is not included (the recipe's
  fusion head is shared by every pattern, as for every other balancer).
- The update of q uses each pattern's loss pooled over ranks (``mean_over_ranks`` on per-pattern
  sums and counts), so q agrees on every rank; the objective uses each rank's own batch.
- The reference's generalisation adjustment (C/√n_g) is not included (its default is 0).
- ``present`` is the mask after modality dropout, so dropout moves rows between patterns.
- Works for classification and regression alike (ℓ is the engine's task loss).
- The empty pattern (g = 0, a row with no modality, possible only under ``missing.train.min_present:
  0``) is no group: its q stays 0, so such rows enter the objective only through the plain mean,
  with weight (1 − mix)/B each (none at the default mix 1). Their loss is the label prior's, which
  no encoder can lower; as a group it would soon hold nearly all of q and train the prior alone.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from torch import Tensor

from mmcore import Between, NonNegative
from mmcore.components import Balancer, StepView
from mmcore.errors import MMCoreError

NAME = "baselines.pattern_dro"
MAX_MODALITIES = 16  # 2^16 pattern weights; beyond that a dense table is the wrong design


def pattern_index(present: Tensor) -> Tensor:
    """``[B]`` long: each row's availability pattern as the bit mask Σ_m present[:, m]·2^m."""
    bits = 2 ** torch.arange(present.shape[1], device=present.device)
    return (present.long() * bits).sum(1)


def group_losses(rows: Tensor, pattern: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """``([G] loss sums, [G] row counts)`` of the rows' losses by pattern."""
    sums = torch.zeros(groups, dtype=rows.dtype, device=rows.device).index_add(0, pattern, rows)
    counts = torch.zeros(groups, dtype=rows.dtype, device=rows.device).index_add(0, pattern, torch.ones_like(rows))
    return sums, counts


class PatternDRO(Balancer):
    """Group DRO over availability patterns (REMIND's robust objective; Sagawa et al.'s update).

    Logged as ``dro_max_q`` (the largest pattern weight) and ``dro_worst`` (its pattern's bit mask).

    Args:
        target: names the group only; its weights stay 1 (the method reweights the task loss).
        eta: step size of the exponentiated-gradient update of q (group_DRO's default 0.01).
        mix: share of the robust objective in the task loss (1: pure group DRO; 0: plain mean).
    """

    needs: frozenset[str] = frozenset()

    def __init__(
        self,
        modalities: list[str],
        target: str = "recon",
        eta: NonNegative = 0.01,
        mix: Annotated[float, Between(0.0, 1.0)] = 1.0,
    ) -> None:
        super().__init__(modalities, target=target)
        m = len(self.modalities)
        if not 1 <= m <= MAX_MODALITIES:
            raise MMCoreError(f"{NAME}: needs 1 to {MAX_MODALITIES} modalities, got {m}")
        self.eta, self.mix, self.groups = float(eta), float(mix), 2**m
        self.q = _uniform_q(self.groups)

    def to(self, device: torch.device | str) -> "PatternDRO":
        super().to(device)
        self.q = self.q.to(self.device)
        return self

    def extra_loss(self, view: StepView) -> Tensor | None:
        if view.task_rows is None:
            raise MMCoreError(f"{NAME}: this engine gives no per-row task loss (StepView.task_rows)")
        rows = view.task_rows.float()
        pattern = pattern_index(view.present)
        sums, counts = group_losses(rows, pattern, self.groups)
        pooled_sums = view.mean_over_ranks(sums.detach())
        pooled_counts = view.mean_over_ranks(counts)
        seen_loss = pooled_sums / pooled_counts.clamp_min(1e-12)
        seen_loss = torch.where(pooled_counts > 0, seen_loss, torch.zeros_like(seen_loss))
        step = self.eta * seen_loss
        q = self.q * torch.exp(step)
        # exp overflows once η·L_g passes ~88 (a regression loss in the thousands): then the same
        # update in log space, log q + η·L shifted by its largest finite entry (softmax does that)
        self.q = torch.where(torch.isfinite(q.sum()), q / q.sum(), torch.softmax(self.q.log() + step, 0))
        local = torch.where(counts > 0, sums / counts.clamp_min(1.0), torch.zeros_like(sums))
        robust = (self.q * local).sum()
        return self.mix * (robust - rows.mean())

    def log_values(self) -> dict[str, Tensor]:
        return {"dro_max_q": self.q.max(), "dro_worst": self.q.argmax().float()}

    def state_dict(self) -> dict[str, Any]:
        return {"modalities": list(self.modalities), "q": [float(x) for x in self.q.cpu().tolist()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities or len(state.get("q", [])) != self.groups:
            raise MMCoreError(
                f"{NAME}: checkpoint state is for modalities {state.get('modalities')} with "
                f"{len(state.get('q', []))} pattern weights; this run has {self.modalities} ({self.groups})"
            )
        self.q = torch.tensor(state["q"], dtype=torch.float32, device=self.device)


def _uniform_q(groups: int) -> Tensor:
    """Uniform over the non-empty patterns; the empty pattern (index 0) is no group (module docstring)."""
    q = torch.full((groups,), 1.0 / (groups - 1)) if groups > 1 else torch.ones(1)
    if groups > 1:
        q[0] = 0.0
    return q


PatternDRO.contract_options = [{}, {"eta": 0.5, "mix": 0.5}]  # type: ignore[attr-defined]
