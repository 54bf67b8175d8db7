"""``baselines.shaspec``: ShaSpec's shared and specific features, with absent modalities filled
from the shared features of the present ones.

Source: Wang, Chen, Ma, Avery, Hull and Carneiro, "Multi-modal Learning with Missing Modality via
Shared-Specific Feature Modelling", CVPR 2023, and the authors' code (github billhhh/ShaSpec:
``DualNet_SS.py`` for the model, ``train_SS.py`` for the losses and their weights).

The model, on the encodings h (absent rows masked to zero first, so nothing below reads them):

    s_m = shared(h_m)                 one projection, the same weights for every modality
    p_m = specific_m(h_m)             one projection per modality
    z_m = s_m + compose([s_m, p_m])   m present: the reference's CompositionalLayer, a bias-free
                                      layer on the concatenation added to the shared feature
    z_m = mean of s_k over the present modalities k of the row      m absent

Loss groups, one term per modality (``[M]``), each exactly 0 for a modality with no row to
compute it on:

    align_m = (align_weight / M) · mean over rows where m is present of CE(classify(p_m), m)
    share_m = share_weight · mean over rows where m and another modality are present of
              dist(s_m, mean of s_k over the row's other present modalities k)

``align`` is the paper's distribution-alignment ("specific domain") loss: a linear classifier
must tell from the specific feature which modality it came from. Dividing by M makes
``align_weight`` the reference's ``beta = 0.02``, which weighs one ``nn.CrossEntropyLoss`` over
all (sample, modality) pairs. ``share`` is the domain-sharing loss: the reference sums, with
``alpha = 0.1``, an ``nn.L1Loss`` (mean absolute difference) between the shared features of
consecutive modalities in a ring (0-1, 1-2, …, M-1-0); ``dist`` is that mean absolute
difference (``share_distance: l1``) or the mean squared one (``mse``, the alternative the
reference leaves commented out).

Deviations from the reference, and why:
- The paper's shared and specific encoders are whole networks on the raw inputs; here they are
  projections (``mmcore.nn.mlp``, ``hidden`` layers, ReLU) on top of mmcore's encoders' h, so the
  encoders stay the recipe's and ShaSpec is an imputer like the others.
- The absent modality's feature is the *mean* of the present modalities' shared features, as
  the paper describes; the released code takes the first available modality's shared feature
  (its mean variant is commented out). Per row, because availability is per sample here,
  whereas the reference fixes one availability pattern for the whole batch.
- ``share`` compares each modality with the mean of the row's other present ones rather than
  ring neighbours: with per-sample missingness a ring pair is often not both present, and the
  mean does not depend on the order of the modalities. With two modalities both forms agree.
- ``align`` and ``share`` are averaged over the rows where they are defined (present
  modalities), since training data is really missing; the reference trains on complete data
  with zeroed inputs for dropped modalities, so it also classifies and compares features of
  dropped (zero) inputs. Here nothing is computed on an absent row.
- The reference's compositional layer is a 3×3×3 convolution on feature maps; here a bias-free
  Linear(2d → d). Its optional normalisation of both inputs is ``normalize`` (off, as there).
- PyTorch's default initialisation replaces the reference's Kaiming-normal one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore import NonNegative, PositiveInt
from mmcore.errors import MMCoreError
from mmcore.nn import mlp
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore_baselines.checks import check_shapes

NAME = "baselines.shaspec"


class ShaSpec(nn.Module):
    """Shared and specific projections of every present latent, fused by a residual layer; an
    absent latent is the mean of the row's present shared features. ``align`` (modality
    classification of the specific features) and ``share`` (distance between shared features)
    are its loss groups.

    Args:
        hidden: hidden widths of the shared and of each specific projection (ReLU between); [] for one Linear.
        align_weight: weight of the modality-classification loss on specific features; 0 removes the group.
        share_weight: weight of the distance between shared features; 0 removes the group.
        share_distance: l1 (mean absolute difference, the reference's) or mse.
        normalize: L2-normalise shared and specific features before the compositional layer.
    """

    @staticmethod
    def loss_groups(align_weight: float = 0.02, share_weight: float = 0.1, **_: object) -> tuple[str, ...]:
        """Declared for ``mmcore.lossgroups``: a weight of 0 removes its group."""
        return tuple(g for g, w in (("align", align_weight), ("share", share_weight)) if float(w) > 0)

    def __init__(
        self,
        specs: list[ModalitySpec],
        dim: int,
        hidden: list[PositiveInt] = [],  # noqa: B006 - copied; [] is one Linear per projection
        align_weight: NonNegative = 0.02,  # ShaSpec train_SS.py: beta, the specific (domain classification) loss weight
        share_weight: NonNegative = 0.1,  # ShaSpec train_SS.py: alpha, the shared (domain sharing) loss weight
        share_distance: Literal["l1", "mse"] = "l1",  # ShaSpec train_SS.py: nn.L1Loss (nn.MSELoss commented out)
        normalize: bool = False,  # ShaSpec CompositionalLayer normalization_sign (off by default)
    ) -> None:
        super().__init__()
        names = [s.name for s in specs]
        if len(specs) < 2:
            raise MMCoreError(f"{NAME}: needs at least two modalities to share features between, got {names}")
        self.names = names
        self.dim = dim
        self.align_weight = float(align_weight)
        self.share_weight = float(share_weight)
        self.share_distance = share_distance
        self.normalize = bool(normalize)
        widths = [int(w) for w in hidden]
        self.shared = mlp(dim, widths, dim)
        self.specific = nn.ModuleList(mlp(dim, widths, dim) for _ in specs)
        self.compose = nn.Linear(2 * dim, dim, bias=False)  # one layer for every modality, as the reference's
        # only built when its loss is on, so no parameter sits unused
        self.classifier = nn.Linear(dim, len(specs)) if self.align_weight > 0 else None

    def features(self, h: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """``(shared, specific)``, each ``[B, M, d]``, of the masked latents (absent rows read as zero)."""
        x = torch.where(present.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))
        shared = self.shared(x)
        specific = torch.stack([proj(x[:, i]) for i, proj in enumerate(self.specific)], dim=1)
        return shared, specific

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        m, d = len(self.names), self.dim
        check_shapes(NAME, m, d, h, present)
        present = present.bool()
        shared, specific = self.features(h, present)
        a, b = (F.normalize(shared, dim=-1), F.normalize(specific, dim=-1)) if self.normalize else (shared, specific)
        fused = shared + self.compose(torch.cat([a, b], dim=-1))
        fill = _masked_mean(shared, present)  # [B, d]: mean of the row's present shared features
        z = torch.where(present.unsqueeze(-1), fused, fill.unsqueeze(1).to(fused.dtype))

        losses: dict[str, Tensor] = {}
        if self.classifier is not None:
            logits = self.classifier(specific).float()  # [B, M, M]
            labels = torch.arange(m, device=h.device).expand(h.shape[0], m)
            ce = F.cross_entropy(logits.reshape(-1, m), labels.reshape(-1), reduction="none").view(-1, m)
            losses["align"] = self.align_weight / m * _column_mean(ce, present)
        if self.share_weight > 0:
            losses["share"] = self.share_weight * self.share_terms(shared, present)
        return ImputerOutput(z=z, losses=losses)

    def share_terms(self, shared: Tensor, present: Tensor) -> Tensor:
        """``[M]`` unweighted: per modality, mean over rows where it and another modality are present of
        the distance between its shared feature and the mean of the row's other present shared features."""
        weights = present.to(torch.float32)  # [B, M]
        s = torch.where(present.unsqueeze(-1), shared.float(), torch.zeros((), device=shared.device))
        others = weights.sum(1, keepdim=True) - weights  # [B, M] other present modalities of the row
        rest = (s.sum(1, keepdim=True) - s) / others.clamp_min(1.0).unsqueeze(-1)  # mean of the others
        diff = s - rest
        dist = diff.abs().mean(-1) if self.share_distance == "l1" else diff.pow(2).mean(-1)  # [B, M]
        return _column_mean(dist, present & (others > 0))


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """``[B, d]``: the mean of ``x [B, M, d]`` over the positions where ``mask [B, M]``, 0 where none."""
    kept = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
    return kept.sum(1) / mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)


def _column_mean(values: Tensor, mask: Tensor) -> Tensor:
    """``[M]``: per column, the mean of ``values [B, M]`` over rows where ``mask``; exactly 0 for a
    column with no such row (``where``, so a non-finite value of a masked row cannot leak)."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum(0)
    return total / mask.sum(0).clamp_min(1).to(total.dtype)


# Configurations the core's contract suite builds: the defaults, and every switch flipped.
ShaSpec.contract_options = [  # type: ignore[attr-defined]
    {},
    {"hidden": [8], "share_distance": "mse", "normalize": True},
    {"align_weight": 0.0, "share_weight": 0.0},
]
