"""The multimodal model the engine trains: encoders → absent rows zeroed → [calibration] → imputer → fusion.

The engine, not the imputer, zeroes the encodings of absent modalities, so that no method can
peek at data that is missing by construction. Encoders depend on their own modality only, which
is what lets evaluation encode a batch once and run the imputer and fusion once per condition.

The optional calibration step is a module a balancer's factory supplies (``calibration`` in
``register_balancers``; BALM's feature calibration): it reads the zeroed encodings and the mask
and rescales each modality's row before the imputer. The engine zeroes absent rows again after
it, so the imputer's no-leakage guarantee does not depend on the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from mmcore.engine.outputs import check_connected, check_imputer_output, check_tensor
from mmcore.nn import mlp
from mmcore.types import Batch, ImputerOutput, ModalitySpec


# how :meth:`MultimodalModel._encode` encodes sequence modality ``i``: (i, encoder, x, lengths) -> [B, d]
SequenceEncoding = Callable[[int, nn.Module, Tensor, Tensor], Tensor]


@dataclass
class ModelOutput:
    """Predictions of the fusion head, of the unimodal heads, and the imputer's loss terms."""

    prediction: Tensor  # [B, out_dim]
    unimodal: Tensor | None  # [B, M, out_dim] when unimodal heads are on
    losses: dict[str, Tensor]  # group -> [M]
    z: Tensor | None = None  # [B, M, d] completed latents (what balancer hooks such as PMR read)
    # [B, M, d] encodings with absent rows zeroed, before any calibration (what a fusion probe re-completes)
    h: Tensor | None = None
    monitors: dict[str, Tensor] = field(default_factory=dict)  # the imputer's logged-only statistics


class MultimodalModel(nn.Module):
    """Composition of the recipe's components; the order of ``specs`` is the modality order."""

    def __init__(
        self,
        specs: list[ModalitySpec],
        encoders: dict[str, nn.Module],
        imputer: nn.Module,
        fusion: nn.Module,
        unimodal_heads: nn.ModuleDict | None = None,
        calibration: nn.Module | None = None,
        dim: int | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__()
        # the widths the components were built for: given, their outputs are checked against them
        # (``mmcore.engine.outputs``), so a plugin's wrong shape is named instead of broadcast
        self.dim, self.out_dim = dim, out_dim
        self.specs = list(specs)
        self.modalities = [s.name for s in specs]
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.imputer = imputer
        self.fusion = fusion
        self.unimodal_heads = unimodal_heads
        self.calibration = calibration  # (h, present) -> h before the imputer; a balancer's, or None
        self.skip_absent = False  # train.absent_rows: skip sets it (the trainer, outside compile)

    def encode(self, batch: Batch, present: Tensor | None = None) -> Tensor:
        """``[B, M, d]``: every modality encoded from its own input only.

        Given ``present [B, M]`` and ``skip_absent`` (``train.absent_rows: skip``), a sequence
        modality's encoder runs on its present rows only and absent rows are left zero: their
        encodings are zeroed by :meth:`complete` anyway, so this is the same function, with
        fewer frames to compute and keep for the backward (text present in 20% of the
        IEMOCAP recipe's rows pays for 20%) and fewer dropout draws. Vector modalities are
        always encoded whole: little work to save, and their runs stay bit for bit as they were.
        """
        if present is None or not self.skip_absent:
            return self._encode(batch, None)
        return self._encode(batch, lambda i, encoder, x, lengths: encode_present(encoder, x, lengths, present[:, i]))

    def encode_by_length(self, batch: Batch, frames_per_call: int) -> Tensor:
        """:meth:`encode` for evaluation: each sequence modality encoded in length order, in calls
        of about ``frames_per_call`` frames (:func:`encode_in_length_order`); vectors whole, as
        :meth:`encode` does, so vector models evaluate bit for bit as before."""
        return self._encode(batch, lambda i, encoder, x, lengths: encode_in_length_order(encoder, x, lengths, frames_per_call))

    def _encode(self, batch: Batch, sequence: SequenceEncoding | None) -> Tensor:
        """``[B, M, d]``; a sequence modality with rows through ``sequence(i, encoder, x, lengths)``,
        everything else (and ``sequence`` None) through its encoder on the whole batch."""
        outs = []
        for i, spec in enumerate(self.specs):
            encoder, x, lengths = self.encoders[spec.name], batch.features[spec.name], batch.lengths.get(spec.name)
            if sequence is not None and spec.sequence and lengths is not None and len(lengths) > 0:
                outs.append(sequence(i, encoder, x, lengths))
            else:
                outs.append(encoder(x, lengths))
            if self.dim is not None:
                check_tensor(encoder, outs[-1], (len(x), self.dim), "its output", x.device)
                check_connected(encoder, outs[-1], "its output")
        return torch.stack(outs, dim=1)

    def complete(self, h: Tensor, present: Tensor, unimodal: bool = True) -> ModelOutput:
        """Impute and fuse, given encodings and the availability mask ``present [B, M]``.

        ``unimodal=False`` leaves the unimodal heads out (``ModelOutput.unimodal`` is None): for
        callers that read the fusion's prediction only (evaluation's ``predict``, probes, export),
        which would otherwise compute and discard three MLPs on every row and condition."""
        # the no-leakage rule: absent rows are zero (a select, so a NaN there cannot survive as NaN × 0)
        zero, keep = torch.zeros((), dtype=h.dtype, device=h.device), present.unsqueeze(-1)
        h = torch.where(keep, h, zero)
        seen = h if self.calibration is None else torch.where(keep, self.calibration(h, present), zero)
        out: ImputerOutput = self.imputer(seen, present)
        if self.dim is not None:
            check_imputer_output(self.imputer, out, seen)
        prediction = self.fusion(out.z, present)
        if self.out_dim is not None:
            check_tensor(self.fusion, prediction, (len(h), self.out_dim), "its prediction", h.device, double_ok=True)
            check_connected(self.fusion, prediction, "its prediction")
        heads = None
        if unimodal and self.unimodal_heads is not None:
            heads = torch.stack([self.unimodal_heads[m](out.z[:, i]) for i, m in enumerate(self.modalities)], dim=1)
        return ModelOutput(prediction, heads, dict(out.losses), out.z, h, dict(out.monitors))

    def probe(self, h: Tensor, present: Tensor) -> Tensor:
        """The fusion's prediction with only ``present`` modalities, from given encodings, without
        gradients (AGM-style probes of what each modality contributes); rows stay in the mask's order."""
        was_training = self.training
        self.eval()  # no dropout draws, no running statistics updated by a probe
        try:
            with torch.no_grad():
                return self.complete(h.detach(), present, unimodal=False).prediction
        finally:
            self.train(was_training)

    def forward(self, batch: Batch, present: Tensor) -> ModelOutput:
        return self.complete(self.encode(batch, present), present)


def encode_rows(encoder: nn.Module, x: Tensor, lengths: Tensor | None, index: Tensor) -> Tensor:
    """``encoder``'s ``[len(index), d]`` output for rows ``index`` of a batch, the sequences cut
    to those rows' longest length (encoders are padding invariant and row-wise)."""
    if lengths is not None:
        lengths = lengths.index_select(0, index)
        x = x[:, : max(1, int(lengths.max()))]
    return encoder(x.index_select(0, index), lengths)


def encode_present(encoder: nn.Module, x: Tensor, lengths: Tensor | None, rows: Tensor) -> Tensor:
    """``encoder``'s ``[B, d]`` output with only the rows where ``rows`` is true computed and
    zeros elsewhere. When every row or none is present the encoder runs on the whole batch, as
    without skipping (a zero-row call has no width to read)."""
    index = rows.nonzero().squeeze(1)  # one host read per modality and step
    if len(index) in (0, len(rows)):
        return encoder(x, lengths)
    h = encode_rows(encoder, x, lengths, index)
    return h.new_zeros((len(rows), *h.shape[1:])).index_copy(0, index, h)


def encode_in_length_order(encoder: nn.Module, x: Tensor, lengths: Tensor, frames_per_call: int) -> Tensor:
    """``encoder(x, lengths)`` computed on the rows sorted by length, in calls of at most
    ``frames_per_call`` padded frames (at least one row), each cut to its longest row.

    Evaluation's encoding: a call then holds rows of nearly equal length, so almost no padding
    is computed and attention's ``T x T`` work follows each row's own length instead of the
    batch's longest; and moderate calls keep the matrix products in cache (on a 2-core CPU a
    ``[24000, 128] x [128, 384]`` product ran at about half the rate of a ``[4800, 128]`` one).
    The same function, row for row, up to float rounding."""
    order = lengths.argsort(stable=True)
    longest = lengths.index_select(0, order).clamp(min=1).tolist()  # one host read per modality and batch
    parts, start = [], 0
    while start < len(longest):
        stop = start + 1
        while stop < len(longest) and (stop + 1 - start) * longest[stop] <= frames_per_call:
            stop += 1
        parts.append(encode_rows(encoder, x, lengths, order[start:stop]))
        start = stop
    h = torch.cat(parts)
    return torch.empty_like(h).index_copy_(0, order, h)


def unimodal_heads(modalities: list[str], dim: int, out_dim: int, layers: list[int], dropout: float) -> nn.ModuleDict:
    """One classifier per modality on its completed latent (RedCore: d→128→128→C, ReLU)."""
    return nn.ModuleDict({m: mlp(dim, layers, out_dim=out_dim, dropout=dropout) for m in modalities})
