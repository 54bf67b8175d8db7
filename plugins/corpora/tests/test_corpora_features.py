"""The safetensors features format: hand-written files, defaults, round trip, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from mmcore.builtins.synthetic import Synthetic
from mmcore.errors import DataError, MMCoreError

from mmcore_corpora.features import Features, write_features

META = {"task": "classification", "num_classes": "3", "modalities": "img,txt"}


def _write(root, split, n, t=4, meta=META, **extra):
    g = torch.Generator().manual_seed(n + t)
    tensors = {
        "x.img": torch.randn(n, 5, generator=g),
        "x.txt": torch.randn(n, t, 2, generator=g).to(torch.float16),
        "target": torch.arange(n) % 3,
    }
    tensors.update(extra)
    root.mkdir(exist_ok=True)
    save_file(tensors, str(root / f"{split}.safetensors"), metadata=meta)
    return tensors


def test_hand_written_files_with_defaults(tmp_path):
    root = tmp_path / "feats"
    train = _write(root, "train", 4, **{"len.txt": torch.tensor([4, 0, 2, 3])})
    val = _write(root, "val", 3, t=2)  # shorter T: padded to the common T = 4
    test = _write(root, "test", 2)
    ds = Features(str(root))
    assert [(m.name, m.dim, m.sequence, m.max_len) for m in ds.modalities] == [("img", 5, False, None), ("txt", 2, True, 4)]
    assert ds.task.kind == "classification" and ds.task.num_classes == 3
    tr = ds.split("train")
    assert torch.equal(tr.features["img"], train["x.img"])
    assert tr.features["txt"].dtype == torch.float32 and torch.equal(tr.features["txt"], train["x.txt"].float())
    assert tr.lengths["txt"].tolist() == [4, 1, 2, 3]  # 0 -> one zero frame
    assert "img" not in tr.lengths
    assert tr.target.dtype == torch.int64 and tr.target.tolist() == [0, 1, 2, 0]
    va = ds.split("val")
    assert va.features["txt"].shape == (3, 4, 2)
    assert torch.equal(va.features["txt"][:, :2], val["x.txt"].float()) and torch.count_nonzero(va.features["txt"][:, 2:]) == 0
    assert va.lengths["txt"].tolist() == [2, 2, 2]  # default: the file's T
    # ids default to row numbers counted on across train, val, test
    assert tr.ids.tolist() == [0, 1, 2, 3] and va.ids.tolist() == [4, 5, 6] and ds.split("test").ids.tolist() == [7, 8]
    assert torch.equal(ds.split("test").features["img"], test["x.img"])


def test_regression_and_explicit_ids(tmp_path):
    root = tmp_path / "reg"
    meta = {"task": "regression"}
    for split, ids in (("train", [10, 11]), ("val", [20]), ("test", [30, 31])):
        _write(root, split, len(ids), meta=meta, ids=torch.tensor(ids), target=torch.linspace(-1, 1, len(ids)).double())
    ds = Features(str(root))
    assert ds.task.kind == "regression" and [m.name for m in ds.modalities] == ["img", "txt"]  # sorted by default
    tr = ds.split("train")
    assert tr.ids.tolist() == [10, 11] and tr.target.dtype == torch.float32 and tr.target.tolist() == [-1.0, 1.0]


def test_round_trip_through_write_features(tmp_path):
    source = Synthetic(modalities=3, classes=4, samples=60, dim=3, sequence=True, max_len=5)
    files = write_features(source, tmp_path / "out", metadata={"source": "synthetic"})
    assert [f.name for f in files] == ["train.safetensors", "val.safetensors", "test.safetensors"]
    loaded = Features(str(tmp_path / "out"))
    assert loaded.modalities == source.modalities and loaded.task == source.task
    assert loaded.metadata["source"] == "synthetic" and loaded.metadata["format"] == "mmcore-features/1"
    assert json.loads(loaded.metadata["class_names"]) == list(source.task.class_names)
    for split in ("train", "val", "test"):
        a, b = source.split(split), loaded.split(split)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.target, b.target)
        for m in a.features:
            assert torch.equal(a.features[m], b.features[m]) and torch.equal(a.lengths[m], b.lengths[m])
    with pytest.raises(MMCoreError, match=r"train.safetensors already exists; pass --force"):
        write_features(source, tmp_path / "out")
    write_features(source, tmp_path / "out", force=True)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"corpora.features: features folder not found: .*nope \(see docs/datasets.md"):
        Features(str(tmp_path / "nope"))
    _write(tmp_path / "f", "train", 2)
    with pytest.raises(DataError, match=r"val split file not found: .*f/val.safetensors"):
        Features(str(tmp_path / "f"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"meta": {"num_classes": "3"}}, r"metadata 'task' is None; expected 'classification' or 'regression'"),
        ({"meta": {"task": "classification"}}, r"metadata 'num_classes' must be an integer"),
        ({"meta": {**META, "modalities": "img,aud"}}, r"metadata 'modalities' lists \['img', 'aud'\]"),
        ({"x.aud": torch.zeros(3, 1)}, r"modalities' lists \['img', 'txt'\] but the file holds x.\{aud,img,txt\}"),
        ({"len.img": torch.zeros(3, dtype=torch.int64)}, r"'len.img' given but 'x.img' is not a \[N, T, D\] sequence"),
        ({"weights": torch.zeros(3)}, r"unexpected tensor 'weights'"),
        ({"ids": torch.zeros(2, dtype=torch.int64)}, r"'ids' has shape \[2\]; expected \[3\]"),
        ({"ids": torch.tensor([7.0, 8.0, 9.0])}, r"'ids' has dtype torch.float32; expected integers"),
    ],
)
def test_malformed_test_file(tmp_path, change, message):
    root = tmp_path / "bad"
    _write(root, "train", 4)
    _write(root, "val", 3)
    extra = dict(change)
    meta = extra.pop("meta", META)
    _write(root, "test", 3, meta=meta, **extra)
    with pytest.raises(DataError, match=message):
        Features(str(root))


def test_cross_split_errors(tmp_path):
    root = tmp_path / "x"
    _write(root, "train", 4)
    _write(root, "val", 3, **{"x.img": torch.zeros(3, 6)})
    _write(root, "test", 2)
    with pytest.raises(DataError, match=r"val.safetensors: 'x.img' has shape \[3, 6\]; expected \[N, 5\]"):
        Features(str(root))
    _write(root, "val", 3, ids=torch.tensor([1, 9, 8]))  # id 1 is also a default id of train
    with pytest.raises(DataError, match=r"sample id 1 of .*val.safetensors is not unique across the splits"):
        Features(str(root))
    _write(root, "val", 3, meta={**META, "num_classes": "4"})
    with pytest.raises(DataError, match=r"val.safetensors describes task classification/4"):
        Features(str(root))


def test_bad_values_found_when_a_split_loads(tmp_path):
    root = tmp_path / "v"
    _write(root, "train", 3, target=torch.tensor([0, 1, 3]))
    _write(root, "val", 2, **{"len.txt": torch.tensor([1, 5])})
    _write(root, "test", 2)
    ds = Features(str(root))
    with pytest.raises(DataError, match=r"train.safetensors: 'target' holds classes outside 0..2"):
        ds.split("train")
    with pytest.raises(DataError, match=r"val.safetensors: 'len.txt' holds values outside 0..4"):
        ds.split("val")
    with pytest.raises(MMCoreError, match=r"unknown split 'dev'"):
        ds.split("dev")


@pytest.mark.parametrize(
    "train, val, message",
    [
        ({"x.img": torch.zeros(4)}, {}, r"train.safetensors: 'x.img' has shape \[4\] \(1-D\); expected \[N, D\]"),
        ({"x.img": torch.zeros(4, 2, 2, 5)}, {}, r"train.safetensors: 'x.img' has shape \[4, 2, 2, 5\] \(4-D\)"),
        ({}, {"x.txt": torch.zeros(3, 2)}, r"val.safetensors: 'x.txt' has shape \[3, 2\]; expected \[N, T, 2\]"),
    ],
)
def test_feature_ranks_are_named_against_what_is_expected(tmp_path, train, val, message):
    root = tmp_path / "r"
    _write(root, "train", 4, **train)
    _write(root, "val", 3, **val)
    _write(root, "test", 3)
    with pytest.raises(DataError, match=message):
        Features(str(root))


def test_a_modality_missing_from_val_is_named_not_shape_none(tmp_path):
    root = tmp_path / "m"
    _write(root, "train", 4)
    g = torch.Generator().manual_seed(0)
    save_file({"x.img": torch.randn(3, 5, generator=g), "target": torch.arange(3) % 3}, str(root / "val.safetensors"),
              metadata=META)
    _write(root, "test", 3)
    with pytest.raises(DataError, match=r"val.safetensors: holds no 'x.txt', which .*train.safetensors has") as info:
        Features(str(root))
    assert "None" not in str(info.value)
