"""``mmcore.textcnn``: 1-D convolutions over time, max-pooled over valid windows (Kim, 2014).

MMIN (Zhao et al., ACL 2021; github AIM3-RUC/MMIN, ``models/networks/textcnn.py``) encodes its
lexical modality this way: kernels of 3, 4 and 5 frames with 128 channels each, ReLU, max over
time, concatenation, dropout, then a linear layer to 128.

The reference takes the max over every window of the padded tensor, so padding frames take part
and a batch's padded length changes the result. Here a window counts only if it starts at a
valid frame and fits inside the row (start ≤ length − k); a row shorter than a kernel gets the
one window at its start, completed with zeros. For rows at least as long as the largest kernel
this is exactly the reference run on the unpadded sequence. Differences kept on purpose: the
reference ends with a ReLU after its linear layer and defaults to dropout 0.5; here the output
is the plain linear map (latents can be negative, like the other encoders') and dropout is 0.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.options.hints import Fraction, NonEmpty, PositiveInt
from mmcore.nn import check_encoder_input, length_mask
from mmcore.types import ModalitySpec

NAME = "mmcore.textcnn"


class TextCNN(nn.Module):
    """Convolutions of widths ``kernels`` over time (ReLU), masked max-pooling, concatenation,
    dropout, linear to ``dim``. A vector is a sequence of length 1; a row of length 0 pools to zeros.

    Args:
        kernels: convolution widths in frames, one set of ``channels`` filters each.
        channels: filters per kernel width.
        dropout: dropout on the pooled features before the linear map.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        kernels: Annotated[list[PositiveInt], NonEmpty()] = [3, 4, 5],  # noqa: B006 - copied, never mutated; MMIN's kernel_heights
        channels: PositiveInt = 128,  # MMIN: out_channels 128
        dropout: Fraction = 0.0,
    ) -> None:
        super().__init__()
        kernels = [int(k) for k in kernels]
        self.spec = spec
        self.kernels = kernels
        self.convs = nn.ModuleList(nn.Conv1d(spec.dim, channels, k) for k in kernels)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(len(kernels) * channels, dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_encoder_input(NAME, self.spec, x)
        if x.dim() == 2:
            x, lengths = x.unsqueeze(1), None
        batch, steps, _ = x.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
        lengths = lengths.clamp(0, steps)
        # Frames past a row's length become zeros (masked_fill, so even NaN junk cannot leak into
        # a window that a short row completes with zeros).
        x = x.masked_fill(~length_mask(lengths, steps).unsqueeze(-1), 0.0)
        x = F.pad(x.transpose(1, 2), (0, max(self.kernels) - 1))  # [B, D, T + kmax - 1]: a window may start at any frame
        pooled = [self._pool(F.relu(conv(x))[..., :steps], lengths, k) for conv, k in zip(self.convs, self.kernels)]
        return self.proj(self.drop(torch.cat(pooled, dim=-1)))

    @staticmethod
    def _pool(y: Tensor, lengths: Tensor, k: int) -> Tensor:
        """Max of ``y [B, C, T]`` over window starts 0 … max(length − k, 0); zeros for length 0."""
        last_start = (lengths - k).clamp_min(0)
        valid = length_mask(last_start + 1, y.shape[-1]) & (lengths > 0).unsqueeze(-1)  # [B, T]
        best = y.masked_fill(~valid.unsqueeze(1), float("-inf")).amax(dim=-1)
        return torch.where((lengths > 0).unsqueeze(-1), best, torch.zeros((), dtype=y.dtype, device=y.device))


# Configurations the contract suite builds: small, and with a kernel longer than any test sequence.
TextCNN.contract_options = [  # type: ignore[attr-defined]
    {"channels": 8},
    {"kernels": [1, 9], "channels": 4, "dropout": 0.2},
]
