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

The rule, shared by every imputer that offers ``hide_rate`` (``baselines.mmin``, ``redcore.vib``):

- training only: each present (row, modality) is hidden when a uniform draw from the global
  torch RNG (checkpointed, so resume is exact) is below ``hide_rate``; a row whose every present
  modality was drawn keeps all of them (never an empty input). Evaluation hides nothing.
  So ``hide_rate`` is the chance a modality is *drawn*, not the chance it is hidden: in a row
  with k present modalities each is hidden with probability r·(1 − r^(k−1))
  (``hidden_fraction``): 0.375 at r = 0.5 with three present, at most 0.385 (r ≈ 0.58), and
  falling beyond (0.9: 0.171); a row with one present modality is never hidden. MMIN's six
  uniform patterns hide each of three modalities half the time, which this rule cannot reach.
  The rule stays as it is because the studies' published numbers were trained with it.
- the hidden modality's real latent stays the reconstruction target (losses are averaged over
  *present* rows, hidden included);
- ``hide_scope`` says who else sees the hiding: ``imputer`` — only the imputer's input; the
  completed latent of a hidden modality is still its real latent, so the fusion head sees it
  (``baselines.mmin``'s behaviour so far); ``model`` — the completed latent of a hidden modality
  is the imputed one, so the fusion head and unimodal heads also practise on the imagined value,
  as MMIN's classifier, which reads only what its autoencoder produced from the visible part.

Relation to the two existing knobs: MMIN's ``hide_rate`` is this with ``hide_scope: imputer``;
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


def hide(present: Tensor, rate: float, training: bool) -> Tensor:
    """``[B, M]`` bool: the present modalities the imputer may read this step."""
    present = present.bool()
    if not training or rate <= 0.0:
        return present
    hidden = uniforms(present) < rate
    kept = present & ~hidden
    return torch.where(kept.any(1, keepdim=True), kept, present)  # never hide every present modality of a row


def hidden_fraction(rate: float, present_count: int) -> float:
    """The chance that ``hide`` hides a given modality of a row with ``present_count`` present."""
    return rate * (1.0 - rate ** (present_count - 1)) if present_count > 1 else 0.0


def uniforms(present: Tensor) -> Tensor:
    """The step's draws, one per (row, modality): a function of its own so a test can fix them."""
    return torch.rand(present.shape, device=present.device)


def complete(real: Tensor, imputed: Tensor, present: Tensor, visible: Tensor, scope: HideScope) -> Tensor:
    """``[B, M, d]`` completed latents: the real latent where shown, the imputed one elsewhere.

    "Shown" is ``present`` under ``scope: imputer`` and ``visible`` under ``scope: model``.
    """
    shown = present if scope == "imputer" else visible
    return torch.where(shown.bool().unsqueeze(-1), real, imputed)
