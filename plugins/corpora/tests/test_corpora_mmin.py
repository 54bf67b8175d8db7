"""IEMOCAP / MSP-IMPROV in the MMIN h5 layout: values, ids, normalisation, and every clear error."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from mmcore.errors import DataError
from mmcore.types import Dataset

from corpora_testdata import MMIN_DIMS, MMIN_UTTS
from mmcore_corpora.mmin import IEMOCAP, MSPImprov

pytest.importorskip("h5py")

SPLIT_CODES = {"train": "trn", "val": "val", "test": "tst"}


def _expected_ids() -> dict[str, int]:
    return {name: i for i, name in enumerate(sorted(MMIN_UTTS))}


def test_iemocap_values_ids_and_file_normalisation(mmin_layout):
    root, raw = mmin_layout("iemocap")
    ds = IEMOCAP(str(root), fold=1)
    assert isinstance(ds, Dataset)
    assert ds.task.kind == "classification" and ds.task.num_classes == 4
    longest = {m: max(x.shape[0] for x in raw["feats"][m].values()) for m in MMIN_DIMS}
    assert [(s.name, s.dim, s.sequence, s.max_len) for s in ds.modalities] == [
        ("a", 130, True, longest["a"]),
        ("v", 342, True, longest["v"]),
        ("l", 1024, True, longest["l"]),
    ]
    mean, std = raw["stats"][1]
    safe_std = np.where(std == 0, 1.0, std)
    ids = _expected_ids()
    for split, code in SPLIT_CODES.items():
        data = ds.split(split)
        names = raw["names"][code]
        assert data.ids.tolist() == [ids[n] for n in names]
        assert data.target.dtype == torch.int64 and data.target.tolist() == raw["labels"][code]
        for m in MMIN_DIMS:
            x = data.features[m]
            assert x.dtype == torch.float32 and x.shape == (len(names), longest[m], MMIN_DIMS[m])
            for row, name in enumerate(names):
                frames = raw["feats"][m][name]
                t = frames.shape[0]
                want = (frames - mean) / safe_std if m == "a" else frames
                assert int(data.lengths[m][row]) == t
                np.testing.assert_allclose(x[row, :t].numpy(), want, rtol=1e-5, atol=1e-5)
                assert torch.count_nonzero(x[row, t:]) == 0  # padding stays zero
    # the constant feature (std 0 in the file) is centred, not divided by zero
    first = raw["names"]["trn"][0]
    assert ds.split("train").features["a"][0, 0, 5].item() == pytest.approx(raw["feats"]["a"][first][0, 5] - mean[5], rel=1e-5)


def test_msp_improv_index_labels_str_ids_and_train_statistics(mmin_layout):
    root, raw = mmin_layout("msp_improv", folds=(12,))
    ds = MSPImprov(str(root), fold=12)
    train_frames = np.concatenate([raw["feats"]["a"][n] for n in raw["names"]["trn"]]).astype(np.float64)
    mean, std = train_frames.mean(axis=0), train_frames.std(axis=0)
    got_mean, got_std = ds.audio_stats()
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_std, std, rtol=1e-5, atol=1e-6)
    test = ds.split("test")
    assert test.target.tolist() == raw["labels"]["tst"]
    ids = _expected_ids()
    assert test.ids.tolist() == [ids[n] for n in raw["names"]["tst"]]
    name = raw["names"]["tst"][1]
    t = raw["feats"]["a"][name].shape[0]
    np.testing.assert_allclose(test.features["a"][1, :t].numpy(), (raw["feats"]["a"][name] - mean) / std, rtol=1e-4, atol=1e-5)
    # the same utterance keeps its id whatever the fold: ids come from the sorted union of names
    assert sorted(ds.split("train").ids.tolist() + ds.split("val").ids.tolist() + test.ids.tolist()) == list(range(7))


def test_max_len_cuts_and_no_normalisation(mmin_layout):
    root, raw = mmin_layout("iemocap")
    ds = IEMOCAP(str(root), fold=1, audio_norm="none", max_len=2)
    assert {s.name: s.max_len for s in ds.modalities} == {"a": 2, "v": 2, "l": 2}
    train = ds.split("train")
    for row, name in enumerate(raw["names"]["trn"]):
        frames = raw["feats"]["a"][name]
        t = min(frames.shape[0], 2)
        assert int(train.lengths["a"][row]) == t
        np.testing.assert_array_equal(train.features["a"][row, :t].numpy(), frames[:t])


def test_bad_fold_lists_the_valid_folds(mmin_layout):
    root, _ = mmin_layout("iemocap")
    with pytest.raises(DataError, match=r"fold 11 does not exist; valid folds: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10$"):
        IEMOCAP(str(root), fold=11)
    with pytest.raises(DataError, match=r"valid folds: 1, .*, 12$"):
        MSPImprov(str(root), fold=0)
    with pytest.raises(DataError, match=r"target folder of fold 2 not found: .*target/2"):
        IEMOCAP(str(root), fold=2)  # a valid fold whose files are not there


def test_missing_root_and_files_name_the_path(tmp_path, mmin_layout):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"corpora.iemocap: feature folder not found: {missing} \(see docs/datasets.md"):
        IEMOCAP(str(missing))
    root, _ = mmin_layout("iemocap")
    (root / "V" / "denseface.h5").unlink()
    with pytest.raises(DataError, match=r"visual features not found: .*V/denseface.h5"):
        IEMOCAP(str(root))


def test_label_count_must_match_id_count(mmin_layout):
    root, raw = mmin_layout("iemocap")
    np.save(root / "target" / "1" / "val_label.npy", np.eye(4, dtype=np.float32)[[0, 1, 2]])
    with pytest.raises(DataError, match=r"val_label.npy holds 3 labels but .*val_int2name.npy holds 2 utterance ids"):
        IEMOCAP(str(root)).split("val")


def test_id_missing_from_an_h5_file(mmin_layout):
    import h5py

    root, _ = mmin_layout("iemocap")
    with h5py.File(root / "L" / "bert_large.h5", "a") as f:
        del f["Ses03F_impro02_F001"]
    with pytest.raises(DataError, match=r"1 utterance ids of fold 1 are missing from .*bert_large.h5, e.g. 'Ses03F_impro02_F001'"):
        _ = IEMOCAP(str(root)).modalities


def test_an_id_naming_a_group_is_reported_as_missing(mmin_layout):
    import h5py

    root, _ = mmin_layout("iemocap")
    with h5py.File(root / "V" / "denseface.h5", "a") as f:
        del f["Ses03F_impro02_F001"]
        f.create_group("Ses03F_impro02_F001")  # h5py's f[id].shape raised AttributeError here
    with pytest.raises(DataError, match=r"1 utterance ids of fold 1 are missing from .*denseface.h5, e.g. 'Ses03F_impro02_F001' \(an id"):
        _ = IEMOCAP(str(root)).modalities


def test_wrong_feature_dimension(mmin_layout):
    import h5py

    root, _ = mmin_layout("iemocap")
    with h5py.File(root / "V" / "denseface.h5", "a") as f:
        del f["Ses01F_impro01_M001"]
        f["Ses01F_impro01_M001"] = np.zeros((3, 341), dtype=np.float32)
    with pytest.raises(DataError, match=r"denseface.h5\['Ses01F_impro01_M001'\] has shape \[3, 341\]; expected \[T, 342\]"):
        IEMOCAP(str(root)).split("train")


def test_stats_file_without_the_fold(mmin_layout):
    import h5py

    root, _ = mmin_layout("iemocap")
    with h5py.File(root / "A" / "comparE_mean_std.h5", "a") as f:
        del f["1"]
    with pytest.raises(DataError, match=r"comparE_mean_std.h5 has no group '1' with datasets 'mean' and 'std'"):
        IEMOCAP(str(root)).split("train")


def test_object_ids_file_with_a_foreign_object_is_refused(mmin_layout):
    root, _ = mmin_layout("msp_improv")
    np.save(root / "target" / "1" / "val_int2name.npy", np.array([Fraction(1, 2), "x"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"val_int2name.npy: refusing to unpickle fractions.Fraction"):
        MSPImprov(str(root)).split("val")


def test_duplicate_utterance_across_splits(mmin_layout):
    root, raw = mmin_layout("iemocap")
    dup = raw["names"]["trn"][0]
    np.save(root / "target" / "1" / "tst_int2name.npy", np.array([[dup.encode()], [b"Ses05M_script03_F011"]]))
    with pytest.raises(DataError, match=rf"sample id '{dup}' appears twice \(train and test\)"):
        _ = IEMOCAP(str(root)).modalities


def test_missing_h5py_is_a_clear_error(mmin_layout, monkeypatch):
    import sys

    root, _ = mmin_layout("iemocap")
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` fail as if not installed
    with pytest.raises(DataError, match=r'corpora.iemocap: reading .h5 features needs h5py: pip install "mmcore-corpora\[h5\]"'):
        IEMOCAP(str(root))
