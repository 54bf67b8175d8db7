"""``baselines.agm``: Adaptive Gradient Modulation from Shapley-style fusion probes, for M modalities.

Source: Li, Li, Jiang, Zhang and Yuan, "Boosting Multi-modal Model Performance with Adaptive
Gradient Modulation", ICCV 2023 (code: github lihong2303/AGM_ICCV2023), and its M-modality form
in BalanceBenchmark (github GeWu-Lab/BalanceBenchmark, ``balancemm/trainer/AGM_trainer.py``,
``newGrad`` and ``AGMTrainer.training_step``; alpha 0.1 from ``configs/trainer_config.yaml``),
from which the rule below was read.

Each step, with f(S) the fusion's logits when only the modalities in S are kept (f(∅) = 0):

    o_m     = Σ_{S ⊆ others} |S|!·(M−|S|−1)!/M! · (f(S ∪ {m}) − f(S))      (Shapley contribution)
    s_m     = mean_i −log max(softmax(o_m)_i[y_i], 1e-8)                    (the modality's loss)
    r_m     = exp(M/(M−1) · (s_m − mean_k s_k))
    r̂_m     = exp(M/(M−1) · (ŝ_m − mean_k ŝ_k))       ŝ: running mean of s over all steps so far
    k_m     = exp(alpha · min(r̂_m − r_m, 7))
    ŝ_m     ← ŝ_m·(t−1)/t + s_m/t                      (t: steps so far, this one included)
    g       ← k_m · g   for every gradient of encoder m with more than one dimension

so a modality whose contribution currently learns slower than its running average says gets
larger gradients. Hooks: ``extra_loss`` (adds nothing: it reads the step's ``probe`` of the
fusion for every subset of modalities) and ``modulate_gradients``.

Differences from the reference:
- f(∅) = 0 and the empty subset is part of the Shapley sum, as the two-modality form of the
  reference (``GradMod_2``: o_a = ½(f(AV) − f(V) + f(A))) has it; the M-modality ``newGrad``
  leaves the empty coalition out.
- probes re-run mmcore's imputer and fusion with modalities marked absent (the imputer then
  completes them), from the step's encodings; the reference zero-pads the modality's input.
  2^M − 1 probes per step, no gradients.
- s_m averages over the rows where m is present (elsewhere its contribution is 0 by
  construction); a modality absent from the whole batch keeps k = 1 and its ŝ unchanged.
- under data parallelism s is pooled over ranks (``StepView.mean_over_ranks``), so k and ŝ agree.
- the reference clips the gradient norm at 5 when the fusion's output weights have a gradient
  over 5; here ``train.grad_clip`` is the engine's. No modulation window: the reference's
  ``newGrad`` path modulates every step. Classification only (scores are class probabilities).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from mmcore import NonNegative
from mmcore.components import Balancer, StepView
from mmcore.errors import MMCoreError
from mmcore.types import StepStats

NAME = "baselines.agm"
MAX_GAP = 7.0  # min(r̂ − r, 7) in the reference
FLOOR = 1e-8  # probability floor in the reference's score


def shapley_contributions(logits: dict[frozenset[int], Tensor], m: int) -> list[Tensor]:
    """``o_i`` for every modality from the logits of every subset (the empty one is 0)."""
    out = []
    for i in range(m):
        others = [k for k in range(m) if k != i]
        total = torch.zeros_like(next(iter(logits.values())))
        for size in range(len(others) + 1):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in itertools.combinations(others, size):
                s = frozenset(subset)
                without = logits[s] if s else torch.zeros_like(total)
                total = total + weight * (logits[s | {i}] - without)
        out.append(total)
    return out


def agm_coefficients(score: Tensor, running: Tensor, alpha: float) -> Tensor:
    """``[M]`` k_m = exp(alpha · min(r̂_m − r_m, 7)) from this step's and the running scores."""
    m = score.numel()
    ratio = torch.exp(m / (m - 1) * (score - score.mean()))
    optimal = torch.exp(m / (m - 1) * (running - running.mean()))
    return torch.exp(alpha * torch.clamp(optimal - ratio, max=MAX_GAP))


class AGM(Balancer):
    """AGM: scale each encoder's gradients by how its Shapley contribution to the fusion lags
    its running average. Logged as ``agm_coef.<modality>`` and ``agm_score.<modality>`` (ŝ).

    Args:
        target: names the group only; its weights stay 1 (AGM acts on gradients).
        alpha: strength of the modulation (BalanceBenchmark's default 0.1).
    """

    needs: frozenset[str] = frozenset()
    target_required = False
    task_kinds = ("classification",)  # checked by mmcore validate against the dataset's task

    def __init__(self, modalities: list[str], target: str = "unimodal", alpha: NonNegative = 0.1) -> None:
        super().__init__(modalities, target=target)
        if len(self.modalities) < 2:
            raise MMCoreError(f"{NAME} compares modalities: it needs at least two, got {self.modalities}")
        self.alpha = float(alpha)
        self.steps = 0
        self.running = torch.zeros(len(self.modalities))  # ŝ, 0 before the first step as in the reference
        self.coef = torch.ones(len(self.modalities))

    def to(self, device: torch.device | str) -> "AGM":
        super().to(device)
        self.running, self.coef = self.running.to(self.device), self.coef.to(self.device)
        return self

    def extra_loss(self, view: StepView) -> Tensor | None:
        if view.target.dtype.is_floating_point:
            raise MMCoreError(f"{NAME} is for classification (its scores are class probabilities); this task is regression")
        m, present = len(self.modalities), view.present
        logits = {}
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                keep = torch.zeros(m, dtype=torch.bool, device=present.device)
                keep[list(subset)] = True
                logits[frozenset(subset)] = view.probe(present & keep).float()
        rows = present.float()  # [B, M]
        sums, counts = [], rows.sum(0)
        for i, o in enumerate(shapley_contributions(logits, m)):
            p = o.softmax(-1).gather(-1, view.target.view(-1, 1)).squeeze(-1).clamp_min(FLOOR)
            sums.append((-p.log() * rows[:, i]).sum())
        pooled = view.mean_over_ranks(torch.cat([torch.stack(sums), counts]))
        total, seen = pooled[:m], pooled[m:]
        running = self.running.to(total.device)
        score = torch.where(seen > 0, total / seen.clamp_min(1e-12), running)
        coef = agm_coefficients(score, running, self.alpha)
        self.steps += 1
        t = float(self.steps)
        self.running = (running * (t - 1) / t + score / t).to(self.device)
        self.coef = torch.where(seen > 0, coef, torch.ones_like(coef)).to(self.device)
        return None

    def modulate_gradients(self, model: nn.Module, stats: StepStats) -> None:
        for i, name in enumerate(self.modalities):
            for param in model.encoders[name].parameters():
                if param.grad is not None and param.grad.dim() > 1:  # the reference leaves 1-D ones
                    param.grad = param.grad * self.coef[i].to(param.grad.dtype)

    def log_values(self) -> dict[str, Tensor]:
        return {"agm_coef": self.coef, "agm_score": self.running}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "steps": self.steps,
            "running": self.running.cpu().tolist(),
            "coef": self.coef.cpu().tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities:
            raise MMCoreError(f"{NAME}: checkpoint state is for modalities {state.get('modalities')}, this run has {self.modalities}")
        self.steps = int(state["steps"])
        self.running = torch.tensor(state["running"], dtype=torch.float32, device=self.device)
        self.coef = torch.tensor(state["coef"], dtype=torch.float32, device=self.device)
