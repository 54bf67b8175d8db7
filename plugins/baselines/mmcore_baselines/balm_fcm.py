"""BALM's Feature Calibration Module (FCM), as the ``calibration`` step of ``baselines.balm``.

Source: "BALM: A Model-Agnostic Framework for Balanced Multimodal Learning under Imbalanced
Missing Rates", CVPR 2026, arXiv 2603.19718, and the authors' code (github np4s/BALM_CVPR2026,
``MMGCN/BALM.py`` class ``FCM``, used first thing in ``MMGCN/model.py``'s forward; the width
``--d_global`` defaults to 737 in ``MMGCN/train.py``). It is a squeeze-and-excitation gate
computed from every modality's statistics over the positions where that modality is present:

    s_m  = masked mean of x_m                         (zero where m is absent)
    g    = ReLU(W_g [s_1; …; s_M] + b_g)              (width c, ``fcm_dim``)
    e_m  = W_m g + b_m
    x'_m = 2 σ(e_m) ⊙ x_m ⊙ mask_m

so a gate starts near 1 (σ(0) = ½) and can scale a feature by anything in (0, 2).

Where it sits in mmcore, and the deviations that follow from it:
- On the encodings ``h [B, M, d]`` after the engine zeroes absent rows and before the imputer
  (the ``calibration`` hook of ``register_balancers``), not on the raw inputs: mmcore's encoders
  see only their own modality, which is what lets evaluation encode a batch once; the reference
  calibrates the raw features before its per-modality layers. The engine zeroes absent rows of
  the output again (the reference multiplies by the mask).
- The statistic s_m is the row's own encoding (zero where absent). In the reference a batch
  element is a dialogue and the mean runs over its utterances where m is present; an mmcore row
  is one sample whose encoder has already pooled over time, so there is nothing left to pool.
- One ``Linear(c, M·d)`` stands for the reference's M ``Linear(c, d_m)`` (the same function,
  and the same default initialisation, whose scale depends on the input width c only).
- ``fcm_dim`` defaults to M·d/4: the reference's 737 is (1582 + 1024 + 342)/4, a quarter of
  IEMOCAP's concatenated input width, the squeeze ratio this keeps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def default_width(modalities: int, dim: int) -> int:
    """The squeeze width c: a quarter of the concatenated width, as the reference's 737."""
    return max(1, modalities * dim // 4)


class FeatureCalibration(nn.Module):
    """``(h [B, M, d], present [B, M]) -> 2 σ(e) ⊙ h``, with e computed from the present rows."""

    def __init__(self, modalities: int, dim: int, width: int | None = None) -> None:
        super().__init__()
        self.modalities, self.dim = modalities, dim
        width = width or default_width(modalities, dim)
        self.squeeze = nn.Linear(modalities * dim, width)  # the reference's ``wg``
        self.excite = nn.Linear(width, modalities * dim)  # its ``wa``, ``wv``, ``wl`` side by side

    def gates(self, h: Tensor, present: Tensor) -> Tensor:
        """``[B, M, d]`` the factors 2 σ(e_m); a function of the present rows only."""
        s = torch.where(present.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))
        e = self.excite(torch.relu(self.squeeze(s.flatten(1))))
        return 2.0 * torch.sigmoid(e).view(-1, self.modalities, self.dim)

    def forward(self, h: Tensor, present: Tensor) -> Tensor:
        return self.gates(h, present) * h
