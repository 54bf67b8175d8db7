"""Small shared layers: an MLP builder, a residual autoencoder cascade and length-aware pooling.

Feature-level datasets pad sequences to one length and carry the valid lengths beside them,
so every sequence model needs the same two facts: which frames are real, and how to average
over only those. They live here so that the core's encoders and any plugin agree on them
(a mean that silently includes padding makes results depend on the batch's padded length).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from mmcore.types import ModalitySpec


def mlp(
    in_dim: int,
    layers: list[int],
    out_dim: int | None = None,
    dropout: float = 0.0,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """``Linear -> activation -> Dropout`` for each width in ``layers``, then an optional plain
    ``Linear`` to ``out_dim`` (no activation, so the output can be logits or a free latent).

    With no ``layers`` and no ``out_dim`` the result is an empty ``Sequential`` (the identity).
    """
    widths = [int(w) for w in layers]
    if in_dim < 1 or any(w < 1 for w in widths) or (out_dim is not None and out_dim < 1):
        raise ValueError(f"mlp widths must be positive: in_dim={in_dim}, layers={widths}, out_dim={out_dim}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"mlp dropout must be in [0, 1), got {dropout}")
    modules: list[nn.Module] = []
    prev = in_dim
    for width in widths:
        modules += [nn.Linear(prev, width), activation()]
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        prev = width
    if out_dim is not None:
        modules.append(nn.Linear(prev, out_dim))
    return nn.Sequential(*modules)



class ResidualCascade(nn.Module):
    """A cascade of residual MLP autoencoder blocks (MMIN's ``ResidualAE``, RedCore's
    ``ResidualXE``; github AIM3-RUC/MMIN ``models/networks/autoencoder.py``): block i reads
    x_i = x_{i-1} + out_{i-1} (out_0 = 0) and outputs out_i = decoder_i(encoder_i(x_i)); the
    cascade returns x_n + out_n. Each encoder is width -> hidden[0] -> ... -> hidden[-1] with
    LeakyReLU between layers, each decoder mirrors it back to width with ReLU.

    The one implementation both methods share; each adds its own output layer under its own name
    (``transition`` in MMIN, ``head`` in RedCore), so checkpoint keys stay ``encoders.N``,
    ``decoders.N`` and that name, and the blocks are made in the same order (every encoder, then
    every decoder, then the output layer) so a seeded initialisation draws the same numbers.
    """

    def __init__(self, width: int, hidden: list[int], blocks: int) -> None:
        super().__init__()
        back = list(reversed(hidden))  # mlp: Linear, activation, ..., Linear (none after the last)
        self.encoders = nn.ModuleList(mlp(width, hidden[:-1], hidden[-1], activation=nn.LeakyReLU) for _ in range(blocks))
        self.decoders = nn.ModuleList(mlp(back[0], back[1:], width, activation=nn.ReLU) for _ in range(blocks))

    def cascade(self, x: Tensor) -> Tensor:
        """x_n + out_n, what the output layer reads."""
        out = torch.zeros_like(x)
        for encoder, decoder in zip(self.encoders, self.decoders):
            x = x + out
            out = decoder(encoder(x))
        return x + out


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[B, max_len]`` bool, True on valid frames (position < length)."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def key_bias(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, T]`` additive attention bias: 0 on kept keys, ``-inf`` on the others. Added to
    ``[B, h, T, T]`` scores as ``bias[:, None, None, :]`` (a broadcast add is ~6x a broadcast
    ``masked_fill`` of the scores on a CPU)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill_(~keep, float("-inf"))


def masked_mean(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean of ``x [B, T, D]`` over the valid frames of each row -> ``[B, D]``.

    Padded frames are filled with zeros before summing (so even NaN padding cannot leak), and a
    row of length 0 gives zeros rather than 0/0. ``lengths=None`` means every frame is valid.
    The sum runs in at least float32 so that bf16 activations over long sequences stay accurate.
    """
    if x.dim() != 3:
        raise ValueError(f"masked_mean expects x of shape [B, T, D], got {tuple(x.shape)}")
    if lengths is None:
        return x.mean(dim=1)
    acc = torch.promote_types(x.dtype, torch.float32)
    mask = length_mask(lengths, x.shape[1]).unsqueeze(-1)  # [B, T, 1]
    total = x.masked_fill(~mask, 0.0).sum(dim=1, dtype=acc)
    count = mask.sum(dim=1).clamp(min=1).to(acc)  # min(length, T), at least 1
    return (total / count).to(x.dtype)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """Fixed sine/cosine position codes ``[length, dim]`` (Vaswani et al. 2017, section 3.5).

    Parameter-free, so a model trained on short sequences still runs on longer ones.
    """
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * freq)
    codes[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return codes


def check_encoder_input(name: str, spec: "ModalitySpec", x: Tensor) -> None:
    """One-line ``DataError`` unless ``x`` is ``[B, D]`` or ``[B, T, D]`` with the modality's ``D``.

    Encoders call it first, so a dataset whose tensors disagree with its specs is named with the
    encoder and modality rather than failing inside a matrix multiply.
    """
    if x.dim() not in (2, 3) or x.shape[-1] != spec.dim:
        from mmcore.errors import DataError

        raise DataError(
            f"encoder {name} for modality '{spec.name}' expects [B, {spec.dim}] or [B, T, {spec.dim}] "
            f"features, got shape {tuple(x.shape)}"
        )
