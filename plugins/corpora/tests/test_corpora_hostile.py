"""Damaged or hostile corpus files: one line naming the file, never a silent guess or a huge allocation."""

from __future__ import annotations

import io
import json
import math
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mmcore.datacheck import check_splits
from mmcore.errors import DataError
from mmcore_corpora.features import Features
from mmcore_corpora.handwritten import Handwritten
from mmcore_corpora.mmin import IEMOCAP
from mmcore_corpora.mmsa import MOSEI
from mmcore_corpora.safe_pickle import load_pickle

META = {"task": "classification", "num_classes": "2", "modalities": "img"}


def _write(root, meta=META, bad_row=None):
    root.mkdir(exist_ok=True)
    for offset, split in enumerate(("train", "val", "test")):
        x = torch.arange(12, dtype=torch.float32).reshape(4, 3) + offset
        if split == "val" and bad_row is not None:
            x[bad_row, 1] = math.nan
        ids = torch.arange(4, dtype=torch.int64) + 4 * offset
        save_file({"x.img": x, "target": torch.tensor([0, 1, 0, 1]), "ids": ids}, str(root / f"{split}.safetensors"), metadata=meta)


def test_class_names_must_be_a_json_list(tmp_path):
    _write(tmp_path / "ok", {**META, "class_names": json.dumps(["no", "yes"])})
    assert Features(str(tmp_path / "ok")).task.class_names == ("no", "yes")
    _write(tmp_path / "obj", {**META, "class_names": json.dumps({"yes": 1, "no": 0})})
    with pytest.raises(DataError, match=r"train.safetensors: metadata 'class_names' must be a JSON list of names, got dict"):
        Features(str(tmp_path / "obj"))


def test_implausible_num_classes_is_refused_from_the_headers(tmp_path):
    _write(tmp_path, {**META, "num_classes": "1000000000"})
    with pytest.raises(DataError, match=r"num_classes=1000000000 is implausible for 12 samples"):
        Features(str(tmp_path))


def test_nonfinite_features_name_the_file_split_modality_and_rows(tmp_path):
    _write(tmp_path, bad_row=2)
    ds = Features(str(tmp_path))
    splits = {s: ds.split(s) for s in ("train", "val", "test")}
    with pytest.raises(DataError) as info:
        check_splits("corpora.features", splits, ds.modalities, ds.task, sources=ds.sources)
    assert str(info.value) == (
        f"dataset corpora.features, split 'val' ({tmp_path / 'val.safetensors'}), modality 'img': 1 of 4 rows hold NaN "
        "or inf features; fix the data or set data.nonfinite: absent to treat those rows' modality as missing"
    )


def test_datasets_describe_themselves_without_reading_features(tmp_path):
    _write(tmp_path)
    modalities, task = Features.describe(str(tmp_path))
    assert [m.name for m in modalities] == ["img"] and task.num_classes == 2
    modalities, task = Handwritten.describe(root="/nowhere")
    assert [m.name for m in modalities] == ["fou", "fac", "kar", "pix", "zer", "mor"] and task.num_classes == 10
    assert IEMOCAP.describe(fold=1) == (["a", "v", "l"], IEMOCAP.describe()[1])  # with a root, its layout is checked
    names, task = MOSEI.describe(task="7class")
    assert names == ["a", "v", "l"] and task.num_classes == 7 and MOSEI.describe()[1].kind == "regression"


def test_pickled_bytearray_cannot_ask_for_gigabytes(tmp_path):
    path = tmp_path / "bomb.pkl"
    # protocol 2: GLOBAL builtins.bytearray, BININT 2^31-1... here 8 GiB written as a LONG1, TUPLE1, REDUCE
    path.write_bytes(b"\x80\x02c__builtin__\nbytearray\n\x8a\x05\x00\x00\x00\x00\x02\x85R.")
    with pytest.raises(DataError, match=r"bomb.pkl: refusing bytearray\(int\) in a pickle"):
        load_pickle(path)
    path.write_bytes(b"\x80\x02c__builtin__\nbytes\n\x8a\x05\x00\x00\x00\x00\x02\x85R.")
    with pytest.raises(DataError, match=r"bomb.pkl: refusing bytes\(int\) in a pickle"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_pickles_still_load(tmp_path, protocol):
    obj = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "raw": bytearray(b"ab"), "b": b"cd", "s": {1}}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = load_pickle(path)
    assert np.array_equal(out["x"], obj["x"]) and out["raw"] == bytearray(b"ab") and out["b"] == b"cd" and out["s"] == {1}
    assert isinstance(io.BytesIO(out["b"]).read(), bytes)
