"""MOSI / MOSEI from MMSA pickles: values, lengths, tasks, the restricted unpickler, inf/NaN."""

from __future__ import annotations

import logging
import pickle
from fractions import Fraction

import numpy as np
import pytest
import torch

from mmcore.errors import DataError, MMCoreError

from corpora_testdata import SCORES, write_mmsa
from mmcore_corpora.mmsa import MOSEI, MOSI, score_to_class
from mmcore_corpora.safe_pickle import load_pickle

FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
KEYS = {"a": "audio", "v": "vision", "l": "text"}


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32)
    x[~np.isfinite(x)] = 0.0
    return x


def test_unaligned_values_lengths_ids_and_nonfinite(tmp_path, caplog):
    path = tmp_path / "unaligned_50.pkl"
    raw = write_mmsa(path, aligned=False)
    ds = MOSI(str(path))
    with caplog.at_level(logging.WARNING, logger="mmcore.corpora"):
        assert ds.nonfinite_replaced == 3
    assert "replaced 3 non-finite feature values" in caplog.text
    assert ds.nonfinite_by_key == {
        "train/audio": 1, "train/vision": 1, "train/text": 0,
        "valid/audio": 0, "valid/vision": 0, "valid/text": 1,
        "test/audio": 0, "test/vision": 0, "test/text": 0,
    }
    assert [(s.name, s.dim, s.sequence, s.max_len) for s in ds.modalities] == [
        ("a", 3, True, 5), ("v", 2, True, 3), ("l", 6, True, 4)
    ]
    assert ds.task.kind == "regression"
    all_ids = sorted(i for part in ("train", "valid", "test") for i in raw[part]["id"])
    for split, key in FILE_SPLITS.items():
        data = ds.split(split)
        part = raw[key]
        assert data.ids.tolist() == [all_ids.index(i) for i in part["id"]]
        assert data.target.dtype == torch.float32
        np.testing.assert_array_equal(data.target.numpy(), np.array(SCORES[key], dtype=np.float32))
        for m, k in KEYS.items():
            np.testing.assert_array_equal(data.features[m].numpy(), _clean(part[k]))
        mask_len = part["text_bert"][:, 1, :].sum(axis=1).astype(int)
        assert data.lengths["l"].tolist() == mask_len.tolist()
        assert data.lengths["v"].tolist() == list(part["vision_lengths"])
    # audio lengths as written: [2, 0, 4, 5, 6]; 0 -> 1 (one zero frame), 6 -> T = 5
    assert ds.split("train").lengths["a"].tolist() == [2, 1, 4, 5, 5]
    assert ds.split("train").features["a"][0, 0, 0].item() == 0.0  # was +inf
    assert ds.split("val").features["l"][2, 3, 0].item() == 0.0  # was NaN


def test_aligned_without_lengths_uses_full_length(tmp_path):
    raw = write_mmsa(tmp_path / "aligned_50.pkl", aligned=True)
    ds = MOSEI(str(tmp_path), task="regression")  # a folder: file defaults to aligned_50.pkl
    data = ds.split("test")
    assert data.lengths["a"].tolist() == [4, 4] and data.lengths["v"].tolist() == [4, 4]
    np.testing.assert_array_equal(data.features["v"].numpy(), raw["test"]["vision"])


def test_score_to_class_thresholds_by_hand():
    scores = np.array([-3.0, -2.6, -0.5, 0.0, 0.4, 0.5, 1.5, 2.5, 3.0, -1.2])
    assert score_to_class(scores, "binary").tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 0]
    # clip to [-1, 1] then round half to even: -0.5 -> 0, 0.5 -> 0
    assert score_to_class(scores, "3class").tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2, 0]
    # MMSA's classification_labels (RedCore's MOSEI targets): the sign alone, only 0.0 is neutral
    assert score_to_class(scores, "3class_sign").tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2, 0]
    # clip to [-3, 3] then round half to even: 1.5 -> 2, 2.5 -> 2, -2.6 -> -3
    assert score_to_class(scores, "7class").tolist() == [0, 0, 3, 3, 3, 3, 5, 5, 6, 2]


@pytest.mark.parametrize(
    "task, classes, train_targets",
    [("binary", 2, [0, 0, 0, 1, 1]), ("3class", 3, [0, 0, 1, 1, 1]), ("7class", 7, [0, 0, 3, 3, 3])],
)
def test_classification_tasks(tmp_path, task, classes, train_targets):
    write_mmsa(tmp_path / "aligned_50.pkl", aligned=True)
    ds = MOSI(str(tmp_path), task=task)
    assert ds.task.kind == "classification" and ds.task.num_classes == classes
    data = ds.split("train")
    assert data.target.dtype == torch.int64 and data.target.tolist() == train_targets


def test_protocol_2_pickle_loads(tmp_path):
    raw = write_mmsa(tmp_path / "p2.pkl", protocol=2)
    data = MOSI(str(tmp_path / "p2.pkl")).split("test")
    np.testing.assert_array_equal(data.features["a"].numpy(), raw["test"]["audio"])


def test_pickle_with_a_non_array_object_is_refused(tmp_path):
    write_mmsa(tmp_path / "p.pkl")
    data = load_pickle(tmp_path / "p.pkl")
    data["train"]["extra"] = Fraction(1, 3)
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(DataError, match=r"bad.pkl: refusing to unpickle fractions.Fraction: only numpy arrays"):
        MOSI(str(tmp_path / "bad.pkl")).split("train")


def test_pickle_that_would_run_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never print",))

    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"train": Payload()}, f)
    with pytest.raises(DataError, match=r"refusing to unpickle builtins.print"):
        load_pickle(tmp_path / "evil.pkl")


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match=r"corpora.mosi: feature pickle or folder not found: .*none.pkl \(see docs/datasets.md"):
        MOSI(str(tmp_path / "none.pkl"))
    with pytest.raises(DataError, match=r"feature pickle not found: .*unaligned_50.pkl"):
        MOSEI(str(tmp_path), file="unaligned_50.pkl")
    write_mmsa(tmp_path / "aligned_50.pkl")
    with pytest.raises(MMCoreError, match=r"task '5class' is not one of regression, binary, 3class, 3class_sign, 7class"):
        MOSI(str(tmp_path), task="5class")  # type: ignore[arg-type]


def _rewrite(tmp_path, edit):
    raw = write_mmsa(tmp_path / "p.pkl")
    edit(raw)
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(raw, f)
    return MOSI(str(tmp_path / "p.pkl"))


def test_wrong_dimension_across_splits(tmp_path):
    def edit(raw):
        raw["test"]["audio"] = np.zeros((2, 5, 4), dtype=np.float32)

    with pytest.raises(DataError, match=r"'test/audio' has 4 features per step but 'train/audio' has 3"):
        _rewrite(tmp_path, edit).split("train")


def test_mismatched_rows_and_missing_keys(tmp_path):
    def rows(raw):
        raw["valid"]["vision"] = raw["valid"]["vision"][:2]

    with pytest.raises(DataError, match=r"'valid'/vision has shape \[2, 3, 2\]; expected \[3, T, D\]"):
        _rewrite(tmp_path, rows).split("val")

    def no_split(raw):
        del raw["valid"]

    with pytest.raises(DataError, match=r"has no split dict 'valid'"):
        _ = _rewrite(tmp_path, no_split).modalities

    def duplicate(raw):
        raw["test"]["id"][1] = raw["train"]["id"][0]

    with pytest.raises(DataError, match=r"sample id 'vid000\$_\$0' appears twice \(train and test\)"):
        _rewrite(tmp_path, duplicate).split("test")
