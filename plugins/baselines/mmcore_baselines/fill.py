"""Imputers that fill an absent modality with one vector per modality, whatever the sample.

They are the simplest rivals of a cross-modal imputer: they never look at the other
modalities, so any gain a cross-modal method shows over them is the gain of reading the
present modalities. ``mmcore.zero`` (in the core) fills zeros; here:

- ``baselines.missing_token``: a learned vector per modality, trained by the task loss only —
  the "[MASK]"-style missing-modality token common in multimodal transformers.
- ``baselines.mean``: the running mean of the modality's present latents in training (a
  buffer, so it is saved with the weights); evaluation uses the stored mean.

Neither adds a loss group.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from mmcore import Above, Between
from mmcore.errors import MMCoreError
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore_baselines.checks import check_shapes


def _fill(h: Tensor, present: Tensor, fill: Tensor) -> Tensor:
    """``h`` where present, ``fill [M, d]`` where absent (where, not a product: no NaN survives)."""
    return torch.where(present.bool().unsqueeze(-1), h, fill.to(h.dtype).unsqueeze(0))


class MissingToken(nn.Module):
    """A learned embedding per modality stands in for the modality when it is absent.

    The tokens start at zero, so training starts exactly where ``mmcore.zero`` is and a token
    moves only as far as the task gradient asks.
    """

    loss_groups: tuple[str, ...] = ()  # mmcore.lossgroups: no loss terms

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__()
        if not specs or dim < 1:
            raise MMCoreError(f"baselines.missing_token needs at least one modality and dim >= 1, got {len(specs)} and {dim}")
        self.names = [s.name for s in specs]
        self.dim = dim
        self.token = nn.Parameter(torch.zeros(len(specs), dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        check_shapes("baselines.missing_token", len(self.names), self.dim, h, present)
        return ImputerOutput(z=_fill(h, present, self.token), losses={})


class RunningMean(nn.Module):
    """Absent latents are replaced by the running training mean of that modality's present latents.

    In training mode every call first folds the batch's present rows (detached) into the mean
    of each modality that has any, then fills with the updated mean, so the very first batch
    already fills with real statistics rather than zeros. ``momentum`` (as in BatchNorm):
    ``mean ← (1 − momentum)·mean + momentum·batch_mean``, which follows encoders that keep
    changing; ``momentum: null`` is the exact average over every present latent seen so far.
    Either way the first batch that contains a modality sets its mean outright. A modality
    never seen yet fills with zeros. In evaluation mode the stored mean is used and never changed.

    The statistics (``mean [M, d]`` and the count of present latents seen, ``seen [M]``) are
    buffers, so they are checkpointed and restored with the model. They are per process: under
    data parallelism each rank keeps its own mean (as BatchNorm does without SyncBatchNorm).

    Args:
        momentum: weight of a batch's mean in the running mean (as BatchNorm's); null: the exact
            average over every present latent seen so far.
    """

    loss_groups: tuple[str, ...] = ()  # mmcore.lossgroups: no loss terms
    mean: Tensor
    seen: Tensor

    def __init__(self, specs: list[ModalitySpec], dim: int, momentum: Annotated[float, Above(0.0), Between(0.0, 1.0)] | None = 0.1) -> None:
        super().__init__()
        if not specs or dim < 1:
            raise MMCoreError(f"baselines.mean needs at least one modality and dim >= 1, got {len(specs)} and {dim}")
        self.names = [s.name for s in specs]
        self.dim = dim
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(len(specs), dim))  # float32 whatever the autocast
        self.register_buffer("seen", torch.zeros(len(specs), dtype=torch.int64))  # present latents folded in so far

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        check_shapes("baselines.mean", len(self.names), self.dim, h, present)
        if self.training:
            self._update(h.detach(), present.bool())
        return ImputerOutput(z=_fill(h, present, self.mean), losses={})

    @torch.no_grad()
    def _update(self, h: Tensor, present: Tensor) -> None:
        """Fold the batch in on the device, with no host sync (``torch.where``, no branches on values)."""
        weights = present.to(torch.float32)  # [B, M]
        count = weights.sum(0)  # [M]
        seen = self.seen.to(torch.float32)
        total = (h.float() * weights.unsqueeze(-1)).sum(0)  # [M, d]; elementwise, so autocast keeps it in float32
        has = (count > 0).unsqueeze(-1)
        batch_mean = total / count.clamp_min(1.0).unsqueeze(-1)
        if self.momentum is None:
            # exact: (seen·mean + total) / (seen + count), written as an increment to stay accurate
            step = (total - count.unsqueeze(-1) * self.mean) / (seen + count).clamp_min(1.0).unsqueeze(-1)
            merged = self.mean + step
        else:
            first = (self.seen == 0).unsqueeze(-1)
            blended = (1.0 - self.momentum) * self.mean + self.momentum * batch_mean
            merged = torch.where(first, batch_mean, blended)
        self.mean.copy_(torch.where(has, merged, self.mean))
        self.seen.add_(present.sum(0))


# Configurations the core's contract suite builds: the EMA default and the exact average.
RunningMean.contract_options = [{}, {"momentum": None}]  # type: ignore[attr-defined]
