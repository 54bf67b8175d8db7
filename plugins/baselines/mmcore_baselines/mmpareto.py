"""``baselines.mmpareto``: MMPareto's conflict-free merge of multimodal and unimodal gradients, for M modalities.

Source: Wei and Hu, "MMPareto: Boosting Multimodal Learning with Innocent Unimodal Assistance",
ICML 2024, and the authors' code (github GeWu-Lab/MMPareto_ICML2024, ``code/MMPareto.py``,
``train_epoch``, and ``code/min_norm_solvers.py``), from which the rule below was read.

For each modality m, with g_mm the gradient of the multimodal objective and g_u that of m's
unimodal objective, both w.r.t. the parameters of encoder m (flattened for the angle):

    cos = cos(g_mm, g_u)
    (k_mm, k_u) = (½, ½)                                    if cos > 0
                = (γ, 1 − γ), γ = (g_u·g_u − g_mm·g_u) / ‖g_mm − g_u‖²   otherwise (min-norm point,
                  clipped to [0.001, 0.999] as the reference's two-vector MinNormSolver does)
    per parameter tensor p of encoder m:
    new = 2·k_mm·g_mm[p] + 2·k_u·g_u[p]
    g[p] = γ_s · new · max(1, ‖g_total[p]‖ / ‖new‖)        (γ_s = ``scale`` = 1.5, the reference's gamma)

Hook: ``needs = {"group_grads"}`` with ``gradient_groups = ("unimodal",)``: the engine hands the
unimodal group's encoder gradients before the optimiser step (one extra ``autograd.grad``).

Generalisation and differences from the reference (two modalities, audio/visual):
- M modalities: the rule is applied per modality, to its encoder, unchanged.
- the multimodal gradient g_mm is the total gradient minus g_u (``param.grad − g_u``): the task
  loss *and* every other term of the objective (the imputer's ``recon``/``kl``, other heads' terms
  that reach encoder m through imputation). With ``mmcore.zero`` it is exactly the reference's
  g_mm; the reference computes it by its own backward of the multimodal loss.
- g_u is the gradient of the whole ``unimodal`` group w.r.t. encoder m; with a cross-modal imputer
  it includes other heads' terms reaching m through imputed latents (with ``mmcore.zero`` it is
  exactly m's own). The unimodal terms carry ``model.unimodal_heads.weight``; the reference's are 1.
- decisions are tensors (no host sync); a zero gradient gives cos 0 and the min-norm branch.
- works for regression too: the unimodal terms are the heads' task losses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmcore import Positive
from mmcore.components import Balancer
from mmcore.errors import MMCoreError
from mmcore.types import StepStats

NAME = "baselines.mmpareto"
CLIP = (0.001, 0.999)  # min_norm_solvers._min_norm_element_from2's bounds


def pareto_weights(g_mm: Tensor, g_u: Tensor) -> tuple[Tensor, Tensor]:
    """``(cos, k_mm)`` for two flat gradients: ½ when they agree, else the min-norm weight of g_mm."""
    mm, uu, mu = g_mm.dot(g_mm), g_u.dot(g_u), g_mm.dot(g_u)
    cos = mu / (mm.sqrt() * uu.sqrt()).clamp_min(1e-12)
    denom = (mm + uu - 2 * mu).clamp_min(1e-12)
    gamma = ((uu - mu) / denom).clamp(*CLIP)
    gamma = torch.where(mu >= mm, torch.full_like(gamma, CLIP[1]), torch.where(mu >= uu, torch.full_like(gamma, CLIP[0]), gamma))
    return cos, torch.where(cos > 0, torch.full_like(gamma, 0.5), gamma)


class MMPareto(Balancer):
    """MMPareto: each encoder follows a conflict-free mix of its multimodal and unimodal gradients,
    rescaled to at least the plain gradient's norm. Needs unimodal heads.

    Logged as ``pareto_cos.<modality>`` (angle of the two gradients) and ``pareto_k.<modality>``
    (weight of the multimodal one).

    Args:
        target: names the group only; its weights stay 1 (it acts on gradients).
        scale: the factor on the merged gradient (the reference's gamma, 1.5).
    """

    needs = frozenset({"group_grads"})
    gradient_groups = ("unimodal",)
    target_required = False

    def __init__(self, modalities: list[str], target: str = "unimodal", scale: Positive = 1.5) -> None:
        super().__init__(modalities, target=target)
        self.scale = float(scale)
        self.cos = torch.zeros(len(self.modalities))
        self.k = torch.full((len(self.modalities),), 0.5)

    def to(self, device: torch.device | str) -> "MMPareto":
        super().to(device)
        self.cos, self.k = self.cos.to(self.device), self.k.to(self.device)
        return self

    def modulate_gradients(self, model: nn.Module, stats: StepStats) -> None:
        if stats.group_grads is None or "unimodal" not in stats.group_grads:
            raise MMCoreError(f"{NAME} needs the unimodal group's gradients: set model.unimodal_heads=true")
        cos, k = [], []
        for i, name in enumerate(self.modalities):
            params = [p for p in model.encoders[name].parameters() if p.requires_grad]
            g_u = stats.group_grads["unimodal"][i]
            totals = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            g_mm = [t - u for t, u in zip(totals, g_u)]
            c, k_mm = pareto_weights(torch.cat([g.flatten().float() for g in g_mm]), torch.cat([g.flatten().float() for g in g_u]))
            for p, total, mm, u in zip(params, totals, g_mm, g_u):
                new = 2 * k_mm * mm + 2 * (1 - k_mm) * u
                ratio = total.norm() / new.norm().clamp_min(1e-12)
                p.grad = (self.scale * torch.clamp(ratio, min=1.0) * new).to(p.dtype)
            cos.append(c)
            k.append(k_mm)
        self.cos, self.k = torch.stack(cos).to(self.device), torch.stack(k).to(self.device)

    def log_values(self) -> dict[str, Tensor]:
        return {"pareto_cos": self.cos, "pareto_k": self.k}

    def state_dict(self) -> dict[str, Any]:
        # Stateless rule: only the logged values of the last step, so a resumed log line matches.
        return {"modalities": list(self.modalities), "cos": self.cos.cpu().tolist(), "k": self.k.cpu().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state.get("modalities", [])) != self.modalities or len(state.get("k", [])) != len(self.modalities):
            raise MMCoreError(f"{NAME}: checkpoint state is for modalities {state.get('modalities')}, this run has {self.modalities}")
        self.cos = torch.tensor(state["cos"], dtype=torch.float32, device=self.device)
        self.k = torch.tensor(state["k"], dtype=torch.float32, device=self.device)
