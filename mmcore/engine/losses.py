"""The training objective: task loss + Σ_group Σ_m w[group, m] · L[group, m].

Weights are 1 except for the group the balancer targets, where they are the balancer's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcore.engine.model import ModelOutput
from mmcore.types import UNIMODAL_GROUP, StepStats, TaskSpec

if TYPE_CHECKING:
    from mmcore.engine.runtime import Runtime


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


def pool_stats(stats: StepStats, rt: "Runtime") -> StepStats:
    """The statistics one process with the whole global batch would have seen.

    Lives next to the losses it pools, so the runtime is device, precision and collectives only.
    The engine's rule, so that no balancer calls ``torch.distributed`` itself and every balancer's
    state stays identical on every rank: per-modality loss terms are means over
    each rank's present samples, so they are pooled weighted by the present counts
    (Σ_r n_r·L_r / Σ_r n_r; NaN where no rank has a finite term), counts are summed, and
    unimodal confidences (means over each rank's batch) are averaged weighted by batch size.
    One packed all-reduce per step, with no host sync.
    """
    if not rt.distributed:
        return stats
    groups = sorted(stats.losses)
    counts = stats.present_counts.float()
    weight_of_rank = float(stats.batch_size or 1)  # batch size unknown: every rank weighs the same
    rows = torch.full_like(counts[:1], weight_of_rank)
    parts: list[Tensor] = [counts, rows]
    for g in groups:
        term = stats.losses[g].float()
        finite = torch.isfinite(term)
        # unimodal heads' terms are means over every row of the batch, the others over
        # the rows where the modality is present
        base = rows.expand_as(counts) if g == UNIMODAL_GROUP else counts
        weight = torch.where(finite, base, torch.zeros_like(counts))
        parts += [torch.where(finite, term, torch.zeros_like(term)) * weight, weight]
    if stats.unimodal_confidence is not None:
        parts.append(stats.unimodal_confidence.float() * weight_of_rank)
    packed = rt.all_reduce_sum(torch.cat(parts))
    m = counts.numel()
    pooled_counts, total_rows = packed[:m], packed[m]
    offset, losses = m + 1, {}
    for g in groups:
        weighted, weight = packed[offset : offset + m], packed[offset + m : offset + 2 * m]
        mean = weighted / weight.clamp_min(1.0)
        losses[g] = torch.where(weight > 0, mean, torch.full_like(mean, float("nan")))
        offset += 2 * m
    confidence = None
    if stats.unimodal_confidence is not None:
        confidence = packed[offset : offset + m] / total_rows
    return StepStats(
        step=stats.step,
        losses=losses,
        present_counts=pooled_counts.round().to(stats.present_counts.dtype),
        unimodal_confidence=confidence,
        batch_size=stats.batch_size * rt.world_size,
    )
