"""``baselines.balm``: BALM for M modalities — gradient rebalancing (magnitude and direction)
and feature calibration.

Source: "BALM: A Model-Agnostic Framework for Balanced Multimodal Learning under Imbalanced
Missing Rates", CVPR 2026, arXiv 2603.19718, and the authors' code (github np4s/BALM_CVPR2026,
``MMGCN/BALM.py`` classes ``GRM`` and ``FCM``, ``MMGCN/train.py``; defaults rho 1.3, tau 0.2
and the noise switch ``--norm_modulation`` read there, tau in (0.2, 0.8] in its README). Each
step, with p the fused prediction's distribution and q_m modality m's unimodal head's:

    KL_m   = KL(p ‖ q_m), batch mean                   (the reference's KLDivLoss(log q_m, p))
    d_m    = KL_m(previous step) − KL_m(this step)     (d = KL on the first step)
    coef_m = (Σ_k d_k − d_m) / Σ_k d_k                 (Σ_k d_k + 1e-8 in the denominator)
    grad(encoder_m) ← rho · coef_m · grad(encoder_m)   (magnitude, ``modulate_gradients``)
    L_dir  = (1/M) Σ_m |coef_m · cos(vec W_m, vec W_f)|  (direction)
    grad(W_f) += tau · ∂L_dir/∂W_f

so the modality whose head closed in on the fused prediction fastest gets the smallest share
(Σ_m coef_m = M − 1). The shares lie in [0, 1] only while every d_m ≥ 0: a KL that grew, or changes
of mixed sign that nearly cancel in Σ_k d_k, give a coef below 0 (a reversed gradient) or far above
1 (tens in a tiny run whose batches mostly lack a modality). The formula is kept unclipped.
W_f is the fusion's output-layer weight and W_m unimodal head m's (the last ``nn.Linear`` of
each; they must have one shape, as the reference asserts); the direction gradient reaches W_f
only (the reference zeroes what it leaves on the heads before their own step). Regression: p and
q_m are (σ(−y), σ(y)) of the raw outputs, as the reference.
``noise: true`` adds N(0, std(grad)²) to each modulated gradient, as ``--norm_modulation``.
``fcm: true`` (the reference always has it) adds the Feature Calibration Module before the
imputer: ``mmcore_baselines.balm_fcm``, with its own deviations.

Hooks: ``extra_loss`` only reads the step's fused and unimodal outputs (it returns None) and
stores the KL, pooled over ranks; ``modulate_gradients`` rescales the encoders' gradients and
adds the direction gradient; the factory's ``calibration`` gives the engine the FCM. Needs
``model.unimodal_heads``.

Deviations from the reference:
- The unimodal heads are the recipe's (``model.unimodal_heads``), trained by the engine's
  unimodal loss on the *completed* latents; the reference trains its own two-layer heads on
  detached encoder features with a second optimiser.
- The direction term's gradient is added in the step whose coefficients and weights it uses.
  The reference builds L_dir after step t's backward (from step t's coef and weights) and adds
  tau · L_dir to step t+1's loss, so the same gradient lands one step later, and step 0 has none.
  Adding it directly to W_f's gradient (before clipping, as the reference's backward is) needs
  no graph kept across steps, so a resumed run equals an uninterrupted one.
- Scaling uses this step's coefficients (the reference also does); the KL is pooled over ranks
  so coefficients agree on every rank, and the direction gradient, a function of those and of
  weights every rank shares, agrees too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore import NonNegative, Positive, PositiveInt
from mmcore.components import Balancer, StepView
from mmcore.errors import MMCoreError
from mmcore.types import StepStats
from mmcore_baselines.balm_fcm import FeatureCalibration
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


def direction_loss(fusion_weight: Tensor, head_weights: list[Tensor], coef: Tensor) -> tuple[Tensor, Tensor]:
    """(L_dir, cos): L_dir = mean_m |coef_m · cos(vec W_m, vec W_f)|, differentiable in W_f only."""
    f = fusion_weight.reshape(-1).float()
    cos = torch.stack([F.cosine_similarity(w.detach().reshape(-1).float(), f, dim=0) for w in head_weights])
    return (coef.to(cos.device) * cos).abs().mean(), cos.detach()


def output_layer(module: Any, what: str) -> nn.Linear:
    """The last ``nn.Linear`` registered in ``module``: the output layer of ``mmcore.concat`` and
    of every MLP head (``mmcore.nn.mlp`` appends it last)."""
    last = None
    for layer in module.modules() if isinstance(module, nn.Module) else ():
        if isinstance(layer, nn.Linear):
            last = layer
    if last is None:
        raise MMCoreError(f"{NAME}: the {what} has no nn.Linear output layer for the direction term; set balancer.tau=0")
    return last


def direction_layers(model: Any, modalities: list[str]) -> tuple[nn.Linear, list[nn.Linear]]:
    """The fusion's output layer and each unimodal head's, checked to have one shape."""
    heads = getattr(model, "unimodal_heads", None)
    if heads is None:
        raise MMCoreError(f"{NAME}: needs unimodal heads; set model.unimodal_heads=true")
    fusion = output_layer(getattr(model, "fusion", None), "fusion head")
    layers = [output_layer(heads[m], f"unimodal head '{m}'") for m in modalities]
    for m, layer in zip(modalities, layers):
        if layer.weight.shape != fusion.weight.shape:
            raise MMCoreError(
                f"{NAME}: the direction term compares output layers of one shape, but the fusion's is "
                f"{tuple(fusion.weight.shape)} and unimodal head '{m}''s is {tuple(layer.weight.shape)}; end "
                "model.unimodal_heads.layers with the fusion's last hidden width, or set balancer.tau=0"
            )
    return fusion, layers


class BALM(Balancer):
    """BALM: each encoder's gradient scaled by rho · coef_m (KL progress), the fusion's output
    layer turned from the unimodal heads' (tau), and an optional feature calibration (fcm).

    Logged as ``balm_coef.<modality>``, ``balm_kl.<modality>``, ``balm_cos.<modality>`` and
    ``balm_direction`` (L_dir).

    Args:
        target: names the group only; its weights stay 1.
        rho: overall factor on the modulated gradients (reference default 1.3).
        tau: weight of the direction term (reference default 0.2; 0 turns it off).
        noise: add Gaussian noise with the gradient's std after scaling (``--norm_modulation``).
        fcm: add BALM's feature calibration before the imputer (part of the model's weights).
        fcm_dim: the calibration's squeeze width (null: a quarter of modalities × model.dim).
        start_step: first step with modulation.
        end_step: last step with modulation (null: to the end).
    """

    needs: frozenset[str] = frozenset()
    target_required = True  # the unimodal group must exist: validation asks for model.unimodal_heads

    def __init__(
        self,
        modalities: list[str],
        target: str = "unimodal",
        rho: Positive = 1.3,
        tau: NonNegative = 0.2,
        noise: bool = False,
        fcm: bool = True,
        fcm_dim: PositiveInt | None = None,
        start_step: NonNegative = 0,
        end_step: int | None = None,
    ) -> None:
        super().__init__(modalities, target=target)
        if len(self.modalities) < 2:
            raise MMCoreError(f"{NAME}: needs at least two modalities, got {self.modalities}")
        self.rho, self.tau, self.noise = float(rho), float(tau), bool(noise)
        self.start_step, self.end_step = int(start_step), end_step
        m = len(self.modalities)
        self.prev: Tensor | None = None
        self.kl, self.coef, self.cos = torch.zeros(m), torch.ones(m), torch.zeros(m)
        self.direction = torch.zeros(())
        self.step = 0

    @staticmethod
    def calibration(specs: list[Any], dim: int, fcm: bool = True, fcm_dim: int | None = None, **_: Any) -> nn.Module | None:
        """The engine's pre-imputer module (``register_balancers``): the FCM when ``fcm`` is on."""
        return FeatureCalibration(len(specs), dim, fcm_dim) if fcm else None

    def to(self, device: torch.device | str) -> "BALM":
        super().to(device)
        self.kl, self.coef, self.cos = self.kl.to(self.device), self.coef.to(self.device), self.cos.to(self.device)
        self.direction = self.direction.to(self.device)
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
        if self.tau > 0:
            self._turn_fusion(model)

    def _turn_fusion(self, model: Any) -> None:
        """Add tau · ∂L_dir/∂W_f to the fusion output layer's gradient (the direction part)."""
        fusion, heads = direction_layers(model, self.modalities)
        weight = fusion.weight
        with torch.enable_grad():
            leaf = weight.detach().requires_grad_(True)
            loss, self.cos = direction_loss(leaf, [h.weight for h in heads], self.coef)
            (grad,) = torch.autograd.grad(self.tau * loss, leaf)
        grad = grad.to(weight.dtype)
        weight.grad = grad if weight.grad is None else weight.grad + grad
        self.direction = loss.detach()

    def log_values(self) -> dict[str, Tensor]:
        return {"balm_coef": self.coef, "balm_kl": self.kl, "balm_cos": self.cos, "balm_direction": self.direction}

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


# the contract suite's model has encoders only: the direction term is tested in the engine
BALM.contract_options = [{"tau": 0.0}, {"noise": True, "rho": 1.0, "tau": 0.0, "fcm": False}]  # type: ignore[attr-defined]
