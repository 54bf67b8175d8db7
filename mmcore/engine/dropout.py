"""Modality dropout (``train.modality_dropout``): hide present modalities in training, for any imputer.

Each epoch, every (sample, modality) pair gets a uniform ``u`` fixed by (seed, epoch, sample id,
modality) through the same counter-based hash as the training masks (``mmcore.missing``), so
the draw depends on neither batch composition, order, nor the number of processes, and a
resumed run redraws exactly what the uninterrupted one drew (no state to checkpoint). A present
modality is hidden when ``u < rate``; when that would hide every present modality of a sample,
the present modality with the largest ``u`` stays (so a sample is never left with nothing, and
rows with several present modalities keep the configured rate).

Hidden modalities are absent for everything downstream of the encoders in that step: their
rows are zeroed, the imputer completes them, and its loss terms count only what it was shown.
How it relates to ``baselines.mmin``'s ``hide_rate``: MMIN hides rows *inside* the imputer, from
its autoencoder's input only, while still training the reconstruction of the hidden rows
against their real latents (that is MMIN's recipe, kept for fidelity). Modality dropout hides
them from the whole model, so the fusion head and the unimodal heads also practise on the rarer
patterns, but no imputer sees the hidden latent as a target. The two compose; with MMIN, set
``hide_rate: 0`` to have only the engine's dropout. Every imputer that reconstructs
(``baselines.mmin``, ``redcore.vib``) offers MMIN's hiding through ``mmcore.hiding``;
``hide_scope: model`` there is this dropout with the hidden rows kept as reconstruction targets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.missing import hash_uniform

STREAM_DROPOUT = 0x6470  # its own hash stream, independent of the training and evaluation masks


def dropout_uniforms(seed: int, ids: Tensor, modalities: int, epoch: int) -> Tensor:
    """``[N, M]`` float32 uniforms on the ids' device, one per (sample, modality), for one epoch."""
    columns = [hash_uniform(seed, ids, STREAM_DROPOUT + m, epoch) for m in range(modalities)]
    return torch.stack(columns, dim=1).to(ids.device, torch.float32)


def apply_dropout(present: Tensor, u: Tensor, rate: float) -> Tensor:
    """``present`` with modalities hidden where ``u < rate``, never all of a row's present ones.

    Device ops only (no host sync): a row left empty keeps its present modality of largest ``u``.
    """
    kept = present & ~(u < rate)
    scores = torch.where(present, u, torch.full_like(u, -1.0))
    best = torch.zeros_like(present).scatter_(1, scores.argmax(1, keepdim=True), True) & present
    return torch.where(kept.any(1, keepdim=True), kept, best)
