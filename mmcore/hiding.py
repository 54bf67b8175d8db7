"""MMIN-style hiding for imputers that reconstruct: hide a present modality from the imputer's
input in training, and keep its real latent as the reconstruction target.

Why it exists. An imputer that reconstructs is trained on present modalities only (the only
ones with a target). If its input holds every present modality, the rows it learns to fill are
exactly the rows it never has to fill at test time. MMIN (Zhao et al., ACL 2021; code
AIM3-RUC/MMIN, ``models/mmin_model.py``) therefore hides modalities of complete training
samples from its autoencoder and trains the autoencoder to imagine them. ``train.modality_dropout``
(``mmcore.engine.dropout``) is the engine's generic version, but it hides a modality from the
whole model, so the imputer's loss drops the hidden rows as targets: the imputer never learns
from them. Hiding here keeps them.

The rules, shared by every imputer that offers ``hide_rate`` and ``hide_rule`` (``baselines.mmin``,
``redcore.vib``); both run in training only and draw from the global torch RNG (checkpointed, so
resume is exact); evaluation hides nothing, and a row is never left with an empty input:

- ``independent`` (the default): each present (row, modality) is hidden when a uniform draw is
  below ``hide_rate``; a row whose every present modality was drawn keeps all of them.
  So ``hide_rate`` is the chance a modality is *drawn*, not the chance it is hidden: in a row
  with k present modalities each is hidden with probability r·(1 − r^(k−1))
  (``hidden_fraction``): 0.375 at r = 0.5 with three present, at most 0.385 (r ≈ 0.58), and
  falling beyond (0.9: 0.171); a row with one present modality is never hidden. MMIN's six
  uniform patterns hide each of three modalities half the time, which this rule cannot reach.
  It stays the default because the studies' published numbers were trained with it, and it
  draws exactly what it always drew (one uniform per (row, modality)), so those runs reproduce.
- ``subsets``: MMIN's rule. A row with k ≥ 2 present modalities is hidden with probability
  ``hide_rate``; a hidden row keeps one of the 2^k − 2 proper non-empty subsets of its present
  modalities visible, uniformly. Each present modality is then hidden ``hide_rate``/2 of the time
  whatever k (of the 2^k − 2 subsets, the 2^(k−1) − 1 non-empty ones of the other modalities
  leave it out), and at ``hide_rate: 1`` with three modalities this is exactly MMIN's training
  draw: each sample, each time it is read, gets one of the six patterns with at least one
  modality present and one hidden, uniformly (AIM3-RUC/MMIN, ``data/multimodal_miss_dataset.py``,
  ``__getitem__`` of the training set: ``random.choice`` over the six missing indices). The
  deviation: MMIN's training samples are complete, here a row may already miss modalities, so
  the subsets are drawn among the ones it has (a row with two present modalities shows one of
  them, a row with one is never hidden), and ``hide_rate`` below 1 leaves some rows whole. Two
  uniforms per row (``row_uniforms``): one decides, the other picks the subset, mapped onto the
  present modalities on the device (no host sync); the pick is uniform up to float32's 2^-24.
- the hidden modality's real latent stays the reconstruction target (losses are averaged over
  *present* rows, hidden included);
- ``hide_scope`` says who else sees the hiding: ``imputer`` — only the imputer's input; the
  completed latent of a hidden modality is still its real latent, so the fusion head sees it
  (``baselines.mmin``'s behaviour so far); ``model`` — the completed latent of a hidden modality
  is the imputed one, so the fusion head and unimodal heads also practise on the imagined value,
  as MMIN's classifier, which reads only what its autoencoder produced from the visible part.

Relation to the two existing knobs: MMIN's hiding is ``hide_rule: subsets, hide_rate: 1`` with ``hide_scope: imputer``;
``hide_scope: model`` is ``train.modality_dropout`` at the same rate except that the hidden rows
stay targets (and it draws per step from the RNG rather than per epoch from a hash of the sample
id). The knobs compose: engine dropout first removes modalities from the step, hiding then
works on what is left.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

HideScope = Literal["imputer", "model"]
HideRule = Literal["independent", "subsets"]


def hide(present: Tensor, rate: float, training: bool, rule: HideRule = "independent") -> Tensor:
    """``[B, M]`` bool: the present modalities the imputer may read this step."""
    present = present.bool()
    if not training or rate <= 0.0:
        return present
    if rule == "subsets":
        return _hide_subsets(present, rate)
    hidden = uniforms(present) < rate
    kept = present & ~hidden
    return torch.where(kept.any(1, keepdim=True), kept, present)  # never hide every present modality of a row


def _hide_subsets(present: Tensor, rate: float) -> Tensor:
    """``subsets``: subset number j in 1 … 2^k − 2 of a hidden row; bit i of j shows its i-th present modality."""
    draws = row_uniforms(present)  # [B, 2]: column 0 decides, column 1 picks
    count = present.sum(1)  # [B] present modalities of each row
    choices = ((1 << count) - 2).clamp_min(1)  # proper non-empty subsets (k ≤ 1: unused)
    pick = 1 + (draws[:, 1] * choices).long().clamp_max(choices - 1)  # 1 … 2^k − 2; the clamp guards rounding
    rank = (present.long().cumsum(1) - 1).clamp_min(0)  # [B, M] position among the row's present modalities
    shown = present & ((pick.unsqueeze(1) >> rank) & 1).bool()
    hidden_row = (draws[:, 0] < rate) & (count >= 2)
    return torch.where(hidden_row.unsqueeze(1), shown, present)


def hidden_fraction(rate: float, present_count: int, rule: HideRule = "independent") -> float:
    """The chance that ``hide`` hides a given modality of a row with ``present_count`` present."""
    if present_count < 2:
        return 0.0
    return rate / 2.0 if rule == "subsets" else rate * (1.0 - rate ** (present_count - 1))


def rate_problem(rate: float, rule: HideRule) -> str | None:
    """The ``hide_rate`` a rule cannot use, as a message (the imputers' constructors raise it):
    under ``independent`` a rate of 1 draws every present modality, so it would hide none."""
    if rule == "independent" and rate >= 1.0:
        return (
            f"hide_rate: expected float in [0, 1) with hide_rule independent, got float {rate} "
            "(1 draws every present modality, so none is hidden; hide_rule subsets takes 1: MMIN's six patterns)"
        )
    return None


def uniforms(present: Tensor) -> Tensor:
    """The step's draws, one per (row, modality): a function of its own so a test can fix them."""
    return torch.rand(present.shape, device=present.device)


def row_uniforms(present: Tensor) -> Tensor:
    """``subsets``'s draws, two per row: a function of its own so a test can fix them."""
    return torch.rand((present.shape[0], 2), device=present.device)


def complete(real: Tensor, imputed: Tensor, present: Tensor, visible: Tensor, scope: HideScope) -> Tensor:
    """``[B, M, d]`` completed latents: the real latent where shown, the imputed one elsewhere.

    "Shown" is ``present`` under ``scope: imputer`` and ``visible`` under ``scope: model``.
    """
    shown = present if scope == "imputer" else visible
    return torch.where(shown.bool().unsqueeze(-1), real, imputed)
