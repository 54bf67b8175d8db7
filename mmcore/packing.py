"""Packed frames: per-frame work on a padded batch's real frames only.

Why: a batch of sequences is padded to its longest row, so on IEMOCAP-shaped data (20-60 and
10-30 frames) about a third of every per-frame operation — projections, feed-forward layers,
norms, dropout, and the activations kept for the backward — is spent on padding that the
encoder then masks away. Those operations act on each frame alone, so they can run on the
``[N, D]`` stack of the ``N`` real frames instead of on ``[B, T, D]`` (the "unpadding" of
BERT-style variable-length training). Only attention needs a sequence's frames side by side;
``unpack`` lays the packed rows back out as ``[B, T, D]`` for it (zeros in the padding, which
the key mask hides) and ``pack`` takes the real frames out again.

What it changes: nothing that a padding-invariant encoder computes on real frames (outputs agree
with the padded computation to float rounding; tested), but dropout masks are drawn for ``N``
frames instead of ``B × T``, so a training run does not reproduce a padded run draw for draw.

Packing costs two gathers and two scatters per attention block. In training it paid on every
batch measured with the fast dropout masks and absent-row skipping (a 2-core CPU,
``benchmarks/README.md``, issue 25's sixth session): on length-bucketed batches of correlated
lengths (95% real frames) the recipe's encoders' step ran 1.13x faster packed and the whole run
1.07-1.32x (an earlier measurement, before those defaults and on a loaded box, had found 0.70x
there). In evaluation, whose calls hold rows of nearly equal length (``encode_in_length_order``),
packing them cost 4-11% of evaluation's rate. ``frames: auto`` (``use_packing``) therefore packs
a training batch with any padding, and an evaluation batch only when under
``PACK_BELOW_EVALUATION`` of its frames are real. Both paths are the same function, so the choice
never changes what an encoder computes in eval mode.

The index is built once per encoder call from the lengths (one ``nonzero``) and reused by every
block; ``pack`` / ``unpack`` are ``index_select`` / ``index_copy`` on the flattened batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmcore.nn import length_mask


PACK_BELOW_TRAINING = 1.0  # any padding: packed measured faster at 66% and at 95% real frames
PACK_BELOW_EVALUATION = 0.8  # length-ordered calls are ~full, and packing them measured slower


def __getattr__(name: str) -> Any:
    """Deprecated names (``PACK_BELOW``), from :mod:`mmcore.deprecated`, with their warning."""
    from mmcore.deprecated import moved_name

    return moved_name(__name__, name)


def use_packing(frames: str, lengths: Tensor, steps: int, training: bool = False) -> bool:
    """Whether an encoder with option ``frames`` packs a batch padded to ``steps`` frames.

    ``auto`` reads the batch's real-frame count on the host (one small read; the trainer's
    per-batch trim already reads the longest length) and packs below ``PACK_BELOW_TRAINING``
    of full in training (any padding), below ``PACK_BELOW_EVALUATION`` otherwise."""
    if torch.jit.is_tracing():  # mmcore export: a trace would fix this batch's choice, rows and frames as constants
        return False
    if frames != "auto":
        return frames == "packed"
    if torch.compiler.is_compiling():  # a host read and a data-dependent shape would split the graph
        return False
    real = int(lengths.clamp(min=0, max=steps).sum())
    below = PACK_BELOW_TRAINING if training else PACK_BELOW_EVALUATION
    return real < below * int(lengths.shape[0]) * steps


@dataclass(frozen=True)
class Packing:
    """Where the real frames of a ``[batch, steps]`` padded batch are.

    ``index``: flat positions ``b * steps + t`` of the real frames, row by row, in frame order;
    ``rows`` / ``positions``: each real frame's row ``b`` and frame ``t``;
    ``counts``: real frames per row (``min(length, steps)``);
    ``keep``: ``[batch, steps]`` key mask for attention, with frame 0 kept even in an empty row
    (a row whose every key is masked would turn softmax into NaN; nothing of it is packed).
    """

    index: Tensor
    rows: Tensor
    positions: Tensor
    counts: Tensor
    keep: Tensor
    batch: int
    steps: int

    @property
    def frames(self) -> int:
        return int(self.index.shape[0])


def packing(lengths: Tensor, steps: int) -> Packing:
    """The ``Packing`` of a batch padded to ``steps`` frames with valid ``lengths [B]``."""
    valid = length_mask(lengths, steps)  # [B, T]
    index = valid.reshape(-1).nonzero().squeeze(1)
    keep = valid.clone()
    keep[:, 0] = True
    return Packing(
        index=index,
        rows=torch.div(index, steps, rounding_mode="floor"),
        positions=index % steps,
        counts=valid.sum(dim=1),
        keep=keep,
        batch=int(lengths.shape[0]),
        steps=int(steps),
    )


class _Gather(torch.autograd.Function):
    """``flat[index]`` whose backward writes the gradient back with ``index_copy``.

    The indices are distinct, so no accumulation is needed; autograd's own backward of
    ``index_select`` is a scatter-add, which on a CPU ran ~10x slower than this copy (a tenth of
    a step on IEMOCAP-shaped batches)."""

    @staticmethod
    def forward(ctx, flat: Tensor, index: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.rows = flat.shape[0]
        return flat.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        return _scatter(grad, index, ctx.rows), None


class _Scatter(torch.autograd.Function):
    """Zeros of ``rows`` rows with ``y`` copied to ``index``; backward gathers (see ``_Gather``)."""

    @staticmethod
    def forward(ctx, y: Tensor, index: Tensor, rows: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        return _scatter(y, index, rows)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors
        return grad.index_select(0, index), None, None


def _scatter(y: Tensor, index: Tensor, rows: int) -> Tensor:
    return y.new_zeros(rows, y.shape[-1]).index_copy_(0, index, y)


def pack(x: Tensor, p: Packing) -> Tensor:
    """``[B, T, D]`` -> ``[N, D]``: the real frames, row by row.

    While dynamo traces (``compile: true``), plain ``index_select`` and ``index_copy`` stand in
    for ``_Gather`` and ``_Scatter``: inductor writes the backward itself, and a graph holding a
    custom ``autograd.Function`` is one AOT autograd does not cache ("Unsupported call_function
    target autograd_function_apply"), so a warm inductor cache still traced the joint graph again
    (the IEMOCAP recipe: 7.3 s of compilation with it, 4.1 s without; the same step time)."""
    flat = x.reshape(p.batch * p.steps, x.shape[-1])
    if torch.compiler.is_compiling():
        return flat.index_select(0, p.index)
    return _Gather.apply(flat, p.index)


def unpack(y: Tensor, p: Packing) -> Tensor:
    """``[N, D]`` -> ``[B, T, D]`` with zeros on the padding (the inverse of ``pack`` on real frames)."""
    scatter = _scatter if torch.compiler.is_compiling() else _Scatter.apply  # see pack
    return scatter(y, p.index, p.batch * p.steps).view(p.batch, p.steps, y.shape[-1])


def packed_mean(y: Tensor, p: Packing) -> Tensor:
    """Mean of each row's packed frames -> ``[B, D]``; an empty row gives zeros.

    The same as ``mmcore.nn.masked_mean`` on the padded layout: the sum runs in at least float32
    (bf16 activations over long rows stay accurate) and is divided by the row's frame count.
    """
    acc = torch.promote_types(y.dtype, torch.float32)
    total = unpack(y, p).sum(dim=1, dtype=acc)  # a copy and a sum: cheaper than a scatter-add on a CPU
    return (total / p.counts.clamp(min=1).to(acc).unsqueeze(1)).to(y.dtype)
