"""``mmcore.lstm``: an LSTM over the valid frames of each row, pooled to one vector.

MMIN (Zhao et al., ACL 2021; github AIM3-RUC/MMIN, ``models/networks/lstm.py``) encodes its
acoustic and visual utterances this way: a unidirectional LSTM with 128 hidden units and
max-pooling over time (``embd_method maxpool`` in its scripts). Unlike the reference, which runs
the LSTM over the padded tensor, the sequence is packed with its lengths, so padding frames are
never read: results do not depend on how far a batch happens to be padded.

Packing needs the lengths on the host, which costs one device-to-host copy per call on a GPU;
that is the price of ``pack_padded_sequence`` and the reason vectors skip it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmcore.options.hints import Fraction, PositiveInt
from mmcore.nn import check_encoder_input, length_mask, masked_mean
from mmcore.types import ModalitySpec

NAME = "mmcore.lstm"


class LSTMEncoder(nn.Module):
    """LSTM over the valid frames, then ``last`` (final hidden state), ``mean`` or ``max`` pooling
    over them, dropout, and a linear map to ``dim``.

    ``last`` concatenates the final states of both directions when ``bidirectional``. A vector
    is a sequence of length 1. A row of length 0 pools to zeros (its output is the bias).

    Args:
        hidden: LSTM hidden units per direction.
        layers: stacked LSTM layers.
        bidirectional: run a second LSTM backwards in time.
        dropout: dropout between stacked layers and before the final linear map.
        pooling: how frames become one vector: final state, mean or max over valid frames.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        hidden: PositiveInt = 128,  # MMIN: embd_size 128
        layers: PositiveInt = 1,
        bidirectional: bool = False,
        dropout: Fraction = 0.0,
        pooling: Literal["last", "mean", "max"] = "max",  # MMIN's scripts: embd_method maxpool
    ) -> None:
        super().__init__()
        self.spec = spec
        self.pooling = pooling
        # nn.LSTM applies its dropout between stacked layers only (and warns with one layer).
        self.rnn = nn.LSTM(
            spec.dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(self.directions * hidden, dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_encoder_input(NAME, self.spec, x)
        if x.dim() == 2:  # a vector: one frame, nothing to pack
            out, (h_n, _) = self.rnn(x.unsqueeze(1))
            return self.proj(self.drop(self._pool(out, h_n, None)))
        batch, steps, _ = x.shape
        if lengths is None:
            out, (h_n, _) = self.rnn(x)
            return self.proj(self.drop(self._pool(out, h_n, None)))
        # pack_padded_sequence rejects length 0; such rows run one (zero-padded) frame and are
        # zeroed after pooling.
        valid = lengths.clamp(0, steps)
        packed = pack_padded_sequence(x, valid.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        pooled = self._pool(out, h_n, valid)
        pooled = torch.where((valid > 0).unsqueeze(-1), pooled, torch.zeros((), dtype=pooled.dtype, device=pooled.device))
        return self.proj(self.drop(pooled))

    def _pool(self, out: Tensor, h_n: Tensor, lengths: Tensor | None) -> Tensor:
        """``[B, directions·hidden]`` from the per-frame outputs ``[B, T, ·]`` or the final states."""
        if self.pooling == "last":
            # h_n is [layers·directions, B, hidden]; the last layer's states are the final entries.
            return torch.cat(list(h_n[-self.directions :]), dim=-1)
        if self.pooling == "mean":
            return masked_mean(out, lengths)
        if lengths is None:
            return out.amax(dim=1)
        valid = length_mask(lengths.clamp_min(1), out.shape[1]).unsqueeze(-1)
        return out.masked_fill(~valid, float("-inf")).amax(dim=1)


# Configurations the contract suite builds: the default, and every switch at once.
LSTMEncoder.contract_options = [  # type: ignore[attr-defined]
    {"hidden": 8},
    {"hidden": 6, "layers": 2, "bidirectional": True, "dropout": 0.1, "pooling": "last"},
    {"hidden": 6, "pooling": "mean"},
]
