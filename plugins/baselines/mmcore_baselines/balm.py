"""``baselines.balm``: BALM's Gradient Rebalancing Module (magnitude part), for M modalities.

Source: "BALM: A Model-Agnostic Framework for Balanced Multimodal Learning under Imbalanced
Missing Rates", CVPR 2026, arXiv 2603.19718, and the authors' code (github np4s/BALM_CVPR2026,
``MMGCN/BALM.py`` class ``GRM``, ``MMGCN/train.py``; defaults rho 1.3 and the noise switch
``--norm_modulation`` read there). Each step, with p the fused prediction's distribution and
q_m modality m's unimodal head's:

    KL_m   = KL(p ‖ q_m), batch mean                   (the reference's KLDivLoss(log q_m, p))
    d_m    = KL_m(previous step) − KL_m(this step)     (d = KL on the first step)
    coef_m = (Σ_k d_k − d_m) / Σ_k d_k                 (Σ_k d_k + 1e-8 in the denominator)
    grad(encoder_m) ← rho · coef_m · grad(encoder_m)   (``modulate_gradients``)

so the modality whose head closed in on the fused prediction fastest gets the smallest share
(Σ_m coef_m = M − 1). Regression: p and q_m are (σ(−y), σ(y)) of the raw outputs, as the reference.
``noise: true`` adds N(0, std(grad)²) to each modulated gradient, as the reference's
``--norm_modulation``.

Hooks: ``extra_loss`` only reads the step's fused and unimodal outputs (it returns None) and
stores the KL, pooled over ranks; ``modulate_gradients`` rescales. Needs ``model.unimodal_heads``.

Deviations from the reference:
- The unimodal heads are the recipe's (``model.unimodal_heads``), trained by the engine's
  unimodal loss on the *completed* latents; the reference trains its own two-layer heads on
  detached encoder features with a second optimiser.
- The direction part of the GRM — the reference adds tau · mean_m |coef_m · cos(W_m, W_f)|, a
  cosine between each unimodal head's output weight and the fusion's output weight, to the next
  step's loss — is not included: mmcore's fusion heads have no single output layer shared in
  shape with the unimodal heads.
- BALM's Feature Calibration Module (a squeeze-and-excitation gate over the pooled features of
  all modalities before fusion) is not included: it needs a pre-fusion hook the engine does not
  have yet.
- Scaling uses this step's coefficients (the reference also does); the KL is pooled over ranks
  so coefficients agree on every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore import NonNegative, Positive
from mmcore.components import Balancer, StepView
from mmcore.errors import MMCoreError
from mmcore.types import StepStats
from mmcore_baselines.checks import encoder_modules

NAME = "baselines.balm"


def kl_to_fused(prediction: Tensor, unimodal: Tensor, regression: bool) -> Tensor:
    """``[M]`` batch-mean KL(fused ‖ unimodal_m), detached."""
    prediction, unimodal = prediction.detach().float(), unimodal.detach().float()
    if regression:
        p = torch.stack([torch.sigmoid(-prediction[..., 0]), torch.sigmoid(prediction[..., 0])], -1)
        log_q = torch.stack([F.logsigmoid(-unimodal[..., 0]), F.logsigmoid(unimodal[..., 0])], -1)
    else:
        p, log_q = prediction.softmax(-1), unimodal.log_softmax(-1)
    p = p.unsqueeze(1).expand_as(log_q)  # [B, M, C]
    terms = torch.where(p > 0, p * (p.clamp_min(1e-30).log() - log_q), torch.zeros_like(p))
    return terms.sum(-1).mean(0)


def balm_coefficients(previous: Tensor | None, current: Tensor) -> Tensor:
    """coef_m = (Σ d − d_m) / (Σ d + 1e-8), d = previous − current (current on the first step)."""
    d = current if previous is None else previous - current
    total = d.sum() + 1e-8
    return (total - d) / total


class BALM(Balancer):
    """BALM's gradient rebalancing: each encoder's gradient scaled by rho · coef_m (KL progress).

    Logged as ``balm_coef.<modality>`` and ``balm_kl.<modality>``.

    Args:
        target: names the group only; its weights stay 1.
        rho: overall factor on the modulated gradients (reference default 1.3).
        noise: add Gaussian noise with the gradient's std after scaling (``--norm_modulation``).
        start_step: first step with modulation. end_step: last one (null: to the end).
    """

    needs: frozenset[str] = frozenset()
    target_required = True  # the unimodal group must exist: validation asks for model.unimodal_heads

    def __init__(
        self,
        modalities: list[str],
        target: str = "unimodal",
        rho: Positive = 1.3,
        noise: bool = False,
        start_step: NonNegative = 0,
        end_step: int | None = None,
    ) -> None:
        super().__init__(modalities, target=target)
        if len(self.modalities) < 2:
            raise MMCoreError(f"{NAME}: needs at least two modalities, got {self.modalities}")
        self.rho, self.noise = float(rho), bool(noise)
        self.start_step, self.end_step = int(start_step), end_step
        m = len(self.modalities)
        self.prev: Tensor | None = None
        self.kl = torch.zeros(m)
        self.coef = torch.ones(m)
        self.step = 0

    def to(self, device: torch.device | str) -> "BALM":
        super().to(device)
        self.kl, self.coef = self.kl.to(self.device), self.coef.to(self.device)
        self.prev = None if self.prev is None else self.prev.to(self.device)
        return self

    def extra_loss(self, view: StepView) -> Tensor | None:
        if view.unimodal is None:
            raise MMCoreError(f"{NAME}: needs unimodal heads; set model.unimodal_heads=true")
        regression = view.prediction.shape[-1] == 1
        current = view.mean_over_ranks(kl_to_fused(view.prediction, view.unimodal, regression)).to(self.device)
        self.coef = balm_coefficients(self.prev, current)
        self.prev, self.kl, self.step = current, current, view.step
        return None

    def modulate_gradients(self, model: Any, stats: StepStats) -> None:
        if self.step < self.start_step or (self.end_step is not None and self.step > self.end_step):
            return
        encoders = encoder_modules(NAME, model, self.modalities)
        for i, name in enumerate(self.modalities):
            factor = self.rho * self.coef[i]
            for p in encoders[name].parameters():
                if p.grad is None:
                    continue
                p.grad.mul_(factor.to(p.grad.dtype))
                if self.noise and p.grad.numel() > 1:
                    p.grad.add_(torch.randn_like(p.grad) * (p.grad.std() + 1e-8))

    def log_values(self) -> dict[str, Tensor]:
        return {"balm_coef": self.coef, "balm_kl": self.kl}

    def state_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "prev": None if self.prev is None else [float(x) for x in self.prev.cpu().tolist()],
            "coef": [float(x) for x in self.coef.cpu().tolist()],
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities:
            raise MMCoreError(f"{NAME}: checkpoint was saved for modalities {state.get('modalities')}, this run has {self.modalities}")
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=self.device)  # noqa: E731
        self.prev = None if state["prev"] is None else as_tensor(state["prev"])
        self.kl = self.prev if self.prev is not None else torch.zeros(len(self.modalities), device=self.device)
        self.coef, self.step = as_tensor(state["coef"]), int(state["step"])


BALM.contract_options = [{}, {"noise": True, "rho": 1.0}]  # type: ignore[attr-defined]
