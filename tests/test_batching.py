"""Per-batch padding (mmcore.engine.batching) and the copy-free split checksum."""

from __future__ import annotations

import hashlib

import torch

from mmcore.builtins.encoders import TransformerEncoder
from mmcore.engine.batching import length_order, trim_padding
from mmcore.engine.rundir import split_checksum
from mmcore.types import Batch, ModalitySpec, SplitData


def _batch(lengths: list[int], steps: int = 10) -> Batch:
    n = len(lengths)
    return Batch(
        features={"s": torch.randn(n, steps, 3), "v": torch.randn(n, 4)},
        lengths={"s": torch.tensor(lengths)},
        target=torch.zeros(n, dtype=torch.long),
        ids=torch.arange(n),
    )


def test_trim_cuts_to_the_longest_row_as_a_view_and_leaves_vectors() -> None:
    batch = _batch([2, 5, 3])
    out = trim_padding(batch)
    assert out.features["s"].shape == (3, 5, 3)
    assert out.features["s"].data_ptr() == batch.features["s"].data_ptr()  # a view, not a copy
    assert torch.equal(out.features["s"], batch.features["s"][:, :5])
    assert out.features["v"] is batch.features["v"]
    assert out.lengths is batch.lengths and out.ids is batch.ids


def test_trim_keeps_full_length_and_one_frame_for_empty_rows() -> None:
    assert trim_padding(_batch([10, 1])).features["s"].shape[1] == 10
    assert trim_padding(_batch([0, 0])).features["s"].shape[1] == 1


def test_transformer_output_is_unchanged_by_the_trim() -> None:
    torch.manual_seed(0)
    encoder = TransformerEncoder(ModalitySpec("s", 3, sequence=True, max_len=10), dim=8, heads=2).eval()
    batch = _batch([2, 6, 4])
    full = encoder(batch.features["s"], batch.lengths["s"])
    trimmed = trim_padding(batch)
    assert trimmed.features["s"].shape[1] == 6
    assert torch.allclose(encoder(trimmed.features["s"], trimmed.lengths["s"]), full, atol=1e-6)


def test_length_order_is_a_deterministic_permutation_with_similar_lengths_per_batch() -> None:
    n, batch_size = 103, 10
    lengths = {"s": torch.arange(n) % 37, "t": torch.zeros(n, dtype=torch.long)}
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    out = length_order(order, lengths, batch_size, window=100)
    assert sorted(out.tolist()) == list(range(n))
    assert torch.equal(out, length_order(order, lengths, batch_size, window=100))
    # one window spans the epoch: the full batches are slices of the sorted lengths, and the short
    # last batch (3 rows) holds the longest rows
    ranked = sorted(lengths["s"].tolist())
    slices = [ranked[i : i + batch_size] for i in range(0, 100, batch_size)]
    got = [sorted(lengths["s"][b].tolist()) for b in out[:100].split(batch_size)]
    assert sorted(got) == slices and got != slices  # the sorted slices, in a shuffled batch order
    assert sorted(lengths["s"][out[100:]].tolist()) == sorted(lengths["s"].tolist())[-3:]


def test_length_order_without_lengths_is_the_order() -> None:
    order = torch.randperm(20)
    assert length_order(order, {}, 4) is order


def test_split_checksum_equals_the_digest_over_bytes() -> None:
    split = SplitData(
        features={"a": torch.randn(4, 3, 2), "b": torch.tensor([[True], [False], [True], [True]])},
        lengths={"a": torch.tensor([1, 3, 2, 3])},
        target=torch.tensor([0, 1, 0, 1]),
        ids=torch.arange(4),
    )
    digest = hashlib.sha256()
    parts = [("a", split.features["a"]), ("b", split.features["b"]), ("len.a", split.lengths["a"])]
    for name, tensor in [*parts, ("target", split.target), ("ids", split.ids)]:
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    assert split_checksum(split) == digest.hexdigest()
    strided = SplitData({"a": torch.randn(4, 6)[:, ::2]}, {}, torch.zeros(4, dtype=torch.long), torch.arange(4))
    empty = SplitData({"a": torch.zeros(0, 3)}, {}, torch.zeros(0, dtype=torch.long), torch.arange(0))
    assert len(split_checksum(strided)) == len(split_checksum(empty)) == 64
