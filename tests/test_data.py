"""mmcore.data, the public loader helpers dataset plugins share (padding, ids, order, splits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcore.data import pad_sequences, require, seeded_order, stable_ids, to_split
from mmcore.errors import DataError


def test_pad_sequences_pads_cuts_and_keeps_empty_rows_one_frame_long() -> None:
    seqs = [np.ones((2, 3)), np.full((5, 3), 2.0), np.zeros((0, 3))]
    out, lengths = pad_sequences(seqs, dim=3, max_len=4)
    assert out.dtype == np.float32 and out.shape == (3, 4, 3)
    assert lengths.tolist() == [2, 4, 1]  # cut at max_len; empty -> one zero frame
    assert out[0, :2].sum() == 6 and out[0, 2:].sum() == 0 and out[1].sum() == 24 and out[2].sum() == 0


def test_stable_ids_are_the_sorted_positions_and_refuse_duplicates() -> None:
    ids = stable_ids({"train": ["b", "d"], "val": ["a"], "test": ["c"]}, "toy", "names.txt")
    assert ids == {"a": 0, "b": 1, "c": 2, "d": 3}
    with pytest.raises(DataError, match=r"toy: sample id 'a' appears twice \(train and val\) in names.txt"):
        stable_ids({"train": ["a"], "val": ["a"]}, "toy", "names.txt")


def test_seeded_order_depends_on_the_seed_only() -> None:
    keys = list(range(20))
    assert seeded_order(3, keys) == seeded_order(3, reversed(keys))
    assert sorted(seeded_order(3, keys)) == keys and seeded_order(3, keys) != seeded_order(4, keys)


def test_to_split_gives_the_engine_dtypes_and_require_names_the_docs(tmp_path) -> None:
    split = to_split({"a": np.zeros((2, 3), dtype=np.float64)}, {}, np.array([0, 1]), np.array([7, 8]), regression=False)
    assert split.features["a"].dtype == torch.float32 and split.target.dtype == torch.int64 and split.ids.tolist() == [7, 8]
    with pytest.raises(DataError, match=r"toy: data folder not found: .*nope \(see my-docs.md for the expected layout\)"):
        require(tmp_path / "nope", "toy", "data folder", docs="my-docs.md")
