"""Late fusion by concatenation: the classifier head RedCore and MMIN put on completed latents."""

from __future__ import annotations

from torch import Tensor, nn

from mmcore.errors import DataError
from mmcore.options.hints import Fraction, PositiveInt
from mmcore.nn import mlp
from mmcore.types import ModalitySpec


class ConcatFusion(nn.Module):
    """Concatenate the completed latents of all modalities, then an MLP (ReLU, dropout) to the output.

    Defaults follow RedCore's fusion classifier: hidden widths 128, 128 and dropout 0.5.
    ``present`` is not used: absent modalities arrive already imputed (or zero).

    Args:
        layers: hidden widths of the MLP on the concatenated latents.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self,
        specs: list[ModalitySpec],
        dim: int,
        out_dim: int,
        layers: list[PositiveInt] = [128, 128],  # noqa: B006 - never mutated; a list default shows in the recipe schema
        dropout: Fraction = 0.5,
    ) -> None:
        super().__init__()
        self.num_modalities = len(specs)
        self.dim = dim
        self.net = mlp(len(specs) * dim, list(layers), out_dim=out_dim, dropout=dropout)

    def forward(self, z: Tensor, present: Tensor | None = None) -> Tensor:
        if z.dim() != 3 or z.shape[1:] != (self.num_modalities, self.dim):
            raise DataError(
                f"mmcore.concat expects z [B, {self.num_modalities}, {self.dim}], got {tuple(z.shape)}"
            )
        return self.net(z.flatten(1))
