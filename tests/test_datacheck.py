"""mmcore.datacheck: every inconsistency between a dataset's description and its tensors is one
line naming dataset, split and modality; non-finite features are an error or, by choice, absent rows."""

from __future__ import annotations

import math

import pytest
import torch

from mmcore.datacheck import check_splits
from mmcore.errors import DataError
from mmcore.types import ModalitySpec, SplitData, TaskSpec

SPECS = [ModalitySpec("a", 3), ModalitySpec("s", 2, sequence=True, max_len=4)]
TASK = TaskSpec("classification", num_classes=3)


def _split(n: int, offset: int) -> SplitData:
    gen = torch.Generator().manual_seed(offset)
    return SplitData(
        features={"a": torch.randn(n, 3, generator=gen), "s": torch.randn(n, 4, 2, generator=gen)},
        lengths={"s": torch.full((n,), 4, dtype=torch.int64)},
        target=torch.arange(n, dtype=torch.int64) % 3,
        ids=torch.arange(offset, offset + n, dtype=torch.int64),
    )


def _splits() -> dict[str, SplitData]:
    return {"train": _split(6, 0), "val": _split(4, 100), "test": _split(5, 200)}


def _error(splits: dict[str, SplitData], specs=SPECS, task=TASK, **kw) -> str:
    with pytest.raises(DataError) as info:
        check_splits("toy.data", splits, specs, task, **kw)
    message = str(info.value)
    assert "\n" not in message and message.startswith("dataset toy.data")
    return message


def test_clean_splits_come_back_unchanged():
    splits = _splits()
    out = check_splits("toy.data", splits, SPECS, TASK)
    assert all(out[k] is splits[k] for k in splits) and all(s.unusable is None for s in out.values())


def test_nonfinite_features_are_one_line_with_split_modality_and_row_count():
    splits = _splits()
    splits["val"].features["a"][1, 0] = math.nan
    splits["val"].features["a"][3, 2] = math.inf
    message = _error(splits)
    assert "split 'val'" in message and "modality 'a'" in message and "2 of 4 rows" in message
    assert "data.nonfinite: absent" in message


def test_nonfinite_in_sequence_padding_counts_too():
    splits = _splits()
    splits["test"].features["s"][0, 3, 1] = -math.inf
    assert "modality 's'" in _error(splits) and "1 of 5 rows" in _error(splits)


def test_sources_name_the_file():
    splits = _splits()
    splits["train"].features["a"][0, 0] = math.nan
    message = _error(splits, sources={"train": "/data/train.safetensors"})
    assert "split 'train' (/data/train.safetensors)" in message


def test_absent_policy_zeroes_rows_and_records_them():
    splits = _splits()
    original = splits["train"].features["a"].clone()
    splits["train"].features["a"][2, 1] = math.nan
    splits["train"].features["s"][4, 0, 0] = math.inf
    out = check_splits("toy.data", splits, SPECS, TASK, nonfinite="absent")
    train = out["train"]
    expected = torch.zeros(6, 2, dtype=torch.bool)
    expected[2, 0] = expected[4, 1] = True
    assert torch.equal(train.unusable, expected)
    assert torch.equal(train.features["a"][2], torch.zeros(3)) and torch.equal(train.features["s"][4], torch.zeros(4, 2))
    keep = torch.tensor([0, 1, 3, 4, 5])
    assert torch.equal(train.features["a"][keep], original[keep])
    assert out["val"] is splits["val"]  # clean splits untouched
    batch = train.select(torch.tensor([4, 2]))
    assert batch.unusable.tolist() == [[False, True], [True, False]]
    assert torch.equal(train.to("cpu").unusable, expected)


def test_absent_policy_refuses_rows_with_no_usable_modality():
    splits = _splits()
    splits["test"].features["a"][0, 0] = math.nan
    splits["test"].features["s"][0, 0, 0] = math.nan
    assert "1 of 5 rows hold NaN or inf in every modality" in _error(splits, nonfinite="absent")


def test_wrong_dtype_names_the_dtype():
    splits = _splits()
    splits["val"].features["a"] = splits["val"].features["a"].double()
    message = _error(splits)
    assert "torch.float64" in message and "modality 'a'" in message


@pytest.mark.parametrize(
    "shape, words",
    [((6, 4), "[6, 4]"), ((6, 1, 3), "[6, 1, 3]"), ((5, 3), "[5, 3]")],
)
def test_vector_shape_mismatches(shape, words):
    splits = _splits()
    splits["train"].features["a"] = torch.zeros(shape)
    message = _error(splits)
    assert f"shape {list(shape)}" in message and "[6, 3] (a vector)" in message


def test_sequence_given_as_vector_and_wrong_padded_length():
    splits = _splits()
    splits["train"].features["s"] = torch.zeros(6, 2)
    assert "[6, 4, 2] (a sequence)" in _error(splits)
    splits = _splits()
    splits["train"].features["s"] = torch.zeros(6, 5, 2)
    assert "shape [6, 5, 2]" in _error(splits)


def test_lengths_out_of_range_and_missing():
    splits = _splits()
    splits["val"].lengths["s"] = torch.tensor([4, 5, -1, 2])
    message = _error(splits)
    assert "2 of 4 rows have lengths outside 0..4" in message and "found -1..5" in message
    splits = _splits()
    del splits["val"].lengths["s"]
    assert "lengths must be a [4] int64 tensor, got nothing" in _error(splits)


def test_empty_split():
    splits = _splits()
    splits["val"] = SplitData(
        features={"a": torch.zeros(0, 3), "s": torch.zeros(0, 4, 2)},
        lengths={"s": torch.zeros(0, dtype=torch.int64)},
        target=torch.zeros(0, dtype=torch.int64),
        ids=torch.zeros(0, dtype=torch.int64),
    )
    assert "split 'val': the split is empty (0 rows)" in _error(splits)


def test_targets_out_of_range_for_num_classes():
    splits = _splits()
    splits["test"].target[0] = 3
    splits["test"].target[1] = -1
    message = _error(splits)
    assert "2 of 5 targets are outside 0..2 for num_classes=3" in message


def test_regression_targets_must_be_finite_float32():
    task = TaskSpec("regression")
    splits = _splits()
    for s in splits.values():
        s.target = s.target.float()
    assert check_splits("toy.data", splits, SPECS, task)["train"] is splits["train"]
    splits["val"].target[0] = math.nan
    assert "1 of 4 regression targets are NaN or inf" in _error(splits, task=task, nonfinite="absent")


def test_implausible_num_classes():
    message = _error(_splits(), task=TaskSpec("classification", num_classes=1_000_000_000))
    assert "num_classes=1000000000 is implausible for 15 samples (the targets use 3 classes)" in message
    assert "num_classes, an integer >= 2" in _error(_splits(), task=TaskSpec("classification", num_classes=1))


def test_implausible_dims_in_the_description():
    assert "dim must be an integer >= 1" in _error(_splits(), specs=[ModalitySpec("a", 0), SPECS[1]])
    assert "needs max_len" in _error(_splits(), specs=[SPECS[0], ModalitySpec("s", 2, sequence=True)])
    # a declared width the tensors do not have is a shape error, not a huge allocation later
    assert "shape [6, 3]" in _error(_splits(), specs=[ModalitySpec("a", 4096), SPECS[1]])


def test_ids_unique_within_and_across_splits():
    splits = _splits()
    splits["val"].ids = torch.tensor([100, 100, 101, 102])
    assert "1 of 4 sample ids are repeated" in _error(splits)
    splits = _splits()
    splits["test"].ids = torch.tensor([0, 1, 200, 201, 202])
    assert "2 sample ids appear in both split 'train' and split 'test'" in _error(splits)


def test_missing_modality_and_unknown_policy():
    splits = _splits()
    del splits["train"].features["s"]
    assert "modality 's': no features (the split holds a)" in _error(splits)
    with pytest.raises(DataError, match="data.nonfinite: expected one of error, absent"):
        check_splits("toy.data", _splits(), SPECS, TASK, nonfinite="drop")  # type: ignore[arg-type]
