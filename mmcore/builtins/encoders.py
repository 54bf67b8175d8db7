"""Generic per-modality encoders: an MLP and a small pre-norm transformer.

Both accept vectors ``[B, D]`` and padded sequences ``[B, T, D]`` with ``lengths [B]``, and
both are *padding invariant*: frames past a row's length never influence its output, so
results do not depend on how far a batch happens to be padded.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcore.errors import DataError, MMCoreError
from mmcore.recipe.hints import Fraction, PositiveInt
from mmcore.nn import length_mask, masked_mean, mlp, sinusoidal_positions
from mmcore.types import ModalitySpec


def _check_input(name: str, spec: ModalitySpec, x: Tensor) -> None:
    if x.dim() not in (2, 3) or x.shape[-1] != spec.dim:
        raise DataError(
            f"encoder {name} for modality '{spec.name}' expects [B, {spec.dim}] or [B, T, {spec.dim}] "
            f"features, got shape {tuple(x.shape)}"
        )


class MLPEncoder(nn.Module):
    """MLP per vector or per frame, then a mean over valid frames.

    Args:
        layers: hidden widths, each followed by ReLU and dropout; a final linear layer maps to ``dim``.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        layers: list[PositiveInt] = [256],  # noqa: B006 - never mutated; a list default shows in the recipe schema
        dropout: Fraction = 0.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.net = mlp(spec.dim, list(layers), out_dim=dim, dropout=dropout)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input("mmcore.mlp", self.spec, x)
        y = self.net(x)  # Linear acts on the last axis, so sequences are encoded frame by frame
        if y.dim() == 3:
            y = masked_mean(y, lengths)
        return y


class _PreNormBlock(nn.Module):
    """``x + Attn(LN(x))`` then ``x + FF(LN(x))``: the pre-norm layout RedCore's encoder uses."""

    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding: Tensor) -> Tensor:
        y = self.norm1(x)
        y, _ = self.attn(y, y, y, key_padding_mask=padding, need_weights=False)
        x = x + self.drop(y)
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Pre-norm transformer with a padding mask, then a mean over valid frames.

    Layout: input projection, ``layers`` blocks, final LayerNorm, length-aware mean pooling.
    A vector is treated as a sequence of length 1. Defaults are smaller than RedCore's reference
    encoder (3 blocks, 8 heads, MLP x4, ReLU, dropout 0.1, attention dropout 0.2, no positions);
    unlike it, padding is masked here.

    Args:
        layers: number of transformer blocks.
        heads: attention heads; must divide the latent ``dim``.
        ff_mult: width of the feed-forward layer as a multiple of ``dim``.
        dropout: dropout on the residual branches and inside the feed-forward layer.
        attn_dropout: dropout on the attention weights.
        positional: add sinusoidal position codes (order then matters).
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        layers: PositiveInt = 2,
        heads: PositiveInt = 4,
        ff_mult: PositiveInt = 4,
        dropout: Fraction = 0.1,
        attn_dropout: Fraction = 0.1,
        positional: bool = False,
    ) -> None:
        super().__init__()
        if dim % heads != 0:  # ranges are in the signature; this invariant spans two values
            raise MMCoreError(f"mmcore.transformer for modality '{spec.name}': latent dim {dim} must be divisible by heads={heads}")
        self.spec = spec
        self.dim = dim
        self.positional = positional
        self.proj = nn.Linear(spec.dim, dim)
        self.blocks = nn.ModuleList(
            [_PreNormBlock(dim, heads, ff_mult, dropout, attn_dropout) for _ in range(layers)]
        )
        self.norm = nn.LayerNorm(dim)  # pre-norm stacks need a final norm on the residual stream

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input("mmcore.transformer", self.spec, x)
        if x.dim() == 2:
            x, lengths = x.unsqueeze(1), None
        batch, steps, _ = x.shape
        y = self.proj(x)
        if self.positional:
            y = y + sinusoidal_positions(steps, self.dim, device=y.device).to(y.dtype)
        if lengths is None:
            padding = torch.zeros(batch, steps, dtype=torch.bool, device=x.device)
        else:
            padding = ~length_mask(lengths, steps)
        # A row of length 0 would mask every key and turn softmax into NaN; letting it attend to
        # frame 0 keeps it finite, and masked_mean below still returns zeros for it.
        padding[:, 0] = False
        for block in self.blocks:
            y = block(y, padding)
        return masked_mean(self.norm(y), lengths)
