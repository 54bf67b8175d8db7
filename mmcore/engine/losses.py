"""The training objective: task loss + Σ_group Σ_m w[group, m] · L[group, m].

Weights are 1 except for the group the balancer targets, where they are the balancer's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore.engine.model import ModelOutput
from mmcore.types import TaskSpec


def task_loss_kind(task: TaskSpec, configured: str) -> str:
    """``auto`` is cross-entropy for classification and L1 for regression (the MOSI/MOSEI habit)."""
    if configured != "auto":
        return configured
    return "ce" if task.kind == "classification" else "l1"


def elementwise_task_loss(prediction: Tensor, target: Tensor, kind: str) -> Tensor:
    """Per-sample loss ``[B]`` (prediction ``[B, C]`` or ``[B, 1]``)."""
    if kind == "ce":
        return F.cross_entropy(prediction.float(), target, reduction="none")
    value = prediction.float().squeeze(-1)
    if kind == "l1":
        return (value - target.float()).abs()
    return (value - target.float()).pow(2)


def unimodal_terms(unimodal: Tensor, target: Tensor, kind: str) -> Tensor:
    """``[M]``: each unimodal head's task loss, averaged over the batch.

    Heads read the *completed* latent, so on samples where a modality is missing the label
    supervises the imputed latent (RedCore's "labels as supervision").
    """
    b, m = unimodal.shape[:2]
    flat = unimodal.reshape(b * m, -1)
    per = elementwise_task_loss(flat, target.repeat_interleave(m), kind).reshape(b, m)
    return per.mean(0)


def unimodal_confidence(unimodal: Tensor, target: Tensor) -> Tensor:
    """``[M]`` mean softmax probability of the true class per head (OGM-GE's signal)."""
    probs = unimodal.float().softmax(-1)
    index = target.view(-1, 1, 1).expand(-1, probs.shape[1], 1)
    return probs.gather(-1, index).squeeze(-1).mean(0)


def combine(
    out: ModelOutput,
    target: Tensor,
    kind: str,
    unimodal_weight: float,
    balanced_group: str,
    balancer_weights: Tensor,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Total loss, task loss, and the unweighted per-modality terms by group."""
    task = elementwise_task_loss(out.prediction, target, kind).mean()
    groups = dict(out.losses)
    if out.unimodal is not None:
        groups["unimodal"] = unimodal_weight * unimodal_terms(out.unimodal, target, kind)
    total = task
    for name, terms in groups.items():
        weights = balancer_weights if name == balanced_group else torch.ones_like(terms)
        total = total + (weights.to(terms.dtype) * terms).sum()
    return total, task, groups


def encoder_grad_norms(model: torch.nn.Module, modalities: list[str]) -> Tensor:
    """``[M]`` L2 norm of each modality encoder's gradient, on the device (no host sync).

    Read at logging steps only: the standard signal of modality imbalance (a modality whose
    encoder gets small gradients is under-trained).
    """
    norms = []
    for m in modalities:
        grads = [p.grad.detach().float().norm() for p in model.encoders[m].parameters() if p.grad is not None]
        norms.append(torch.stack(grads).norm() if grads else torch.zeros((), device=next(model.parameters()).device))
    return torch.stack(norms)


def group_gradients(
    model: torch.nn.Module,
    modalities: list[str],
    wanted: tuple[str, ...],
    groups: dict[str, Tensor],
    task_loss: Tensor,
    balanced_group: str,
    balancer_weights: Tensor,
    rt: Any,
) -> dict[str, list[list[Tensor]]]:
    """Per group, per modality, the gradient of the group's weighted loss w.r.t. each parameter of
    ``model.encoders[m]`` (``task`` is the fusion head's task loss), averaged over ranks.

    One ``autograd.grad`` per group with the graph kept for the total's backward (MMPareto's
    per-objective gradients); one packed all-reduce when distributed. Unused parameters get zeros.
    """
    params = [[p for p in model.encoders[m].parameters() if p.requires_grad] for m in modalities]
    flat = [p for ps in params for p in ps]
    out: dict[str, list[list[Tensor]]] = {}
    for name in wanted:
        if name == "task":
            term = task_loss
        else:
            terms = groups[name]
            weights = balancer_weights if name == balanced_group else torch.ones_like(terms)
            term = (weights.to(terms.dtype) * terms).sum()
        grads = torch.autograd.grad(term, flat, retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, flat)]
        if getattr(rt, "distributed", False):
            packed = rt.all_reduce_mean(torch.cat([g.float().flatten() for g in grads]))
            grads = [chunk.view_as(p).to(p.dtype) for chunk, p in zip(packed.split([p.numel() for p in flat]), flat)]
        it = iter(grads)
        out[name] = [[next(it) for _ in ps] for ps in params]
    return out
