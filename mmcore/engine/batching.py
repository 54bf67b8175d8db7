"""Per-batch padding: a batch's sequences cut to the longest valid length in that batch.

Why: a split is held padded to its longest sequence (one tensor per modality, so that a batch is
an index selection), but a batch whose rows are all shorter than that carries frames that every
encoder masks anyway and still pays for them (linear layers per frame, attention quadratic in
the padded length). Cutting those frames changes nothing an encoder that ignores padding
computes — the bundled encoders are written to be padding invariant and are tested for it — and
removes their cost. Frames inside any row's valid length are never touched.

The cut is a view (``x[:, :T]``), not a copy. It needs the batch's longest length on the host:
one small read per batch for all sequence modalities together (on a GPU, one sync per step).

``length_order`` is the opt-in companion: it arranges an epoch's shuffled order so that rows of
similar length share a batch, which makes the cut bite. That *does* change what a step
computes (which rows are batched together), so it is never applied silently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.types import Batch


def trim_padding(batch: Batch, contiguous: bool = False) -> Batch:
    """``batch`` with every sequence modality cut to its longest valid length in the batch.

    Modalities without lengths (vectors, or sequences whose every frame is valid) are left as
    they are; so is a modality already as short as its longest row. A batch of zero rows is
    returned unchanged. ``contiguous`` copies each cut into its own tensor: a compiled forward
    (``compile: true``) guards on strides, and a view's row stride (the uncut length) differs
    from an uncut batch's, which would compile the forward once more.
    """
    names = [m for m in batch.lengths if m in batch.features and batch.features[m].dim() == 3]
    if not names or len(batch) == 0:
        return batch
    longest = torch.stack([batch.lengths[m].max() for m in names]).tolist()  # one host read per batch
    features = dict(batch.features)
    for m, keep in zip(names, longest):
        x = features[m]
        keep = max(1, int(keep))  # a batch of empty rows keeps one (masked) frame: shapes stay [B, T>=1, D]
        if keep < x.shape[1]:
            features[m] = x[:, :keep].contiguous() if contiguous else x[:, :keep]
    return Batch(features=features, lengths=batch.lengths, target=batch.target, ids=batch.ids, unusable=batch.unusable)


def length_order(order: Tensor, lengths: dict[str, Tensor], batch_size: int, window: int = 50) -> Tensor:
    """A shuffled ``order`` regrouped so that each batch holds rows of similar length.

    The classic "bucket by length" of sequence training (e.g. torchtext's BucketIterator, fairseq's
    length-sorted batches): the order is cut into windows of ``window`` batches, each window is
    sorted by the rows' total length over modalities, cut into batches, and the batches of the
    whole epoch (all full ones; a short last batch stays last) are shuffled again with a generator seeded from the order itself, so the result
    depends on ``order`` only (resumable, the same on every rank). Rows are neither dropped nor
    repeated.
    """
    if not lengths or len(order) <= batch_size:
        return order
    total = sum(v.index_select(0, order).to(torch.int64) for v in lengths.values())
    span = max(batch_size, batch_size * int(window))
    pieces = []
    for start in range(0, len(order), span):
        chunk, size = order[start : start + span], total[start : start + span]
        pieces.append(chunk[torch.argsort(size, stable=True)])
    grouped = torch.cat(pieces)
    full = len(order) // batch_size  # the loop slices batch i as order[i*B:(i+1)*B]: a short one stays last
    batches = list(grouped[: full * batch_size].split(batch_size))
    gen = torch.Generator().manual_seed(int(order[: min(8, len(order))].sum()) * 1_000_003 + len(order))
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return torch.cat([*shuffled, grouped[full * batch_size :]])
