"""Bad input on the data-ingestion path (``mmcore convert``, the corpora readers), second fuzz:
one line naming the file, the key and what was expected, a non-zero exit, nothing left behind."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import save_file
from typer.testing import CliRunner

from corpora_testdata import write_mmsa
from mmcore.datacheck import check_splits
from mmcore.errors import DataError
from mmcore_corpora import plugin
from mmcore_corpora.features import Features
from mmcore_corpora.handwritten import Handwritten
from mmcore_corpora.mmin import IEMOCAP, MSPImprov
from mmcore_corpora.mmsa import MOSI

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    plugin.register_commands(app)
    return app


def _fails(args: list[str], *pieces: str) -> str:
    """Run ``args``; assert exit 1, no traceback, one ``error:`` line holding every piece; that line."""
    result = runner.invoke(_app(), args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not an escaped Python error
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]  # mmsa first says what it replaced
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for piece in pieces:
        assert piece in lines[0], lines[0]
    return lines[0]


def _h5_replace(path, key, value) -> None:
    import h5py

    with h5py.File(path, "r+") as f:
        key = key if key is not None else sorted(f.keys())[0]
        del f[key]
        f[key] = value


# ---------------------------------------------------------------- convert: nothing left behind


def test_convert_iemocap_of_a_file_says_it_is_a_file(tmp_path):
    (tmp_path / "f.h5").write_text("x")
    _fails(["convert", "iemocap", str(tmp_path / "f.h5"), "--out", str(tmp_path / "o")],
           f"corpora.iemocap: feature folder {tmp_path / 'f.h5'} is a file; expected a folder")
    assert not (tmp_path / "o").exists()


def test_a_failed_convert_leaves_no_folder_behind(tmp_path, mmin_layout):
    root, _ = mmin_layout("iemocap")
    np.save(root / "target" / "1" / "val_label.npy", np.eye(4, dtype=np.float32)[[0, 0]] * 0)  # all-zero rows
    out = tmp_path / "new" / "deeper" / "out"
    _fails(["convert", "iemocap", str(root), "--out", str(out)],
           "val_label.npy row 0 is [0.0, 0.0, 0.0, 0.0]; expected one-hot rows (one 1, the rest 0)")
    assert not (tmp_path / "new").exists()


def test_a_failed_forced_convert_keeps_the_old_files(tmp_path, mmin_layout):
    root, _ = mmin_layout("iemocap")
    out = tmp_path / "o"
    assert runner.invoke(_app(), ["convert", "iemocap", str(root), "--out", str(out)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    np.save(root / "target" / "1" / "tst_label.npy", np.array([7, 0]))  # test fails after train and val were read
    _fails(["convert", "iemocap", str(root), "--out", str(out), "--force"], "tst_label.npy holds class 7; expected 0..3")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no mixed set, no temporary file


def test_existing_files_are_refused_before_reading(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "val.safetensors").write_text("keep")
    write_mmsa(tmp_path / "p.pkl")
    (tmp_path / "p.pkl").write_bytes(b"\x80\x04broken")  # never read: the refusal comes first
    _fails(["convert", "mmsa", str(tmp_path / "p.pkl"), "--out", str(out)], "val.safetensors already exists; pass --force")


def test_an_empty_split_is_refused_by_convert(tmp_path, mmin_layout):
    root, _ = mmin_layout("msp_improv")
    np.save(root / "target" / "1" / "tst_label.npy", np.zeros(0, dtype=np.int64))
    np.save(root / "target" / "1" / "tst_int2name.npy", np.array([], dtype=object), allow_pickle=True)
    _fails(["convert", "msp-improv", str(root), "--out", str(tmp_path / "o")],
           "split 'test'", "the split is empty (0 rows)")
    assert not (tmp_path / "o").exists()


def test_nonfinite_h5_features_are_kept_with_a_warning_and_refused_by_a_run(tmp_path, mmin_layout, caplog):
    root, _ = mmin_layout("iemocap")
    x = np.ones((2, 342), np.float32)
    x[1, 5] = np.nan
    _h5_replace(root / "V" / "denseface.h5", "Ses01F_impro01_F000", x)
    out = tmp_path / "o"
    result = runner.invoke(_app(), ["convert", "iemocap", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kept rows with NaN or inf features (train/v: 1)" in caplog.text and "data.nonfinite: absent" in caplog.text
    ds = Features(str(out))
    with pytest.raises(DataError, match=r"split 'train' .*modality 'v': 1 of 3 rows hold NaN or inf"):
        check_splits("corpora.features", {s: ds.split(s) for s in ("train", "val", "test")}, ds.modalities, ds.task,
                     sources=ds.sources)


# ---------------------------------------------------------------- MMIN files


@pytest.mark.parametrize("content", [b"", b"not an h5 file" * 20, "truncated"])
def test_corrupt_h5_is_one_line(tmp_path, mmin_layout, content):
    root, _ = mmin_layout("iemocap")
    path = root / "L" / "bert_large.h5"
    path.write_bytes(path.read_bytes()[:4096] if content == "truncated" else content)
    _fails(["convert", "iemocap", str(root), "--out", str(tmp_path / "o")],
           f"corpora.iemocap: {path}: not a readable HDF5 file (", "expected the h5 file of the MMIN layout")


def test_h5_folder_and_link_loop_are_named(tmp_path, mmin_layout):
    root, _ = mmin_layout("iemocap")
    path = root / "A" / "comparE.h5"
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match=r"audio features .*comparE.h5 is a folder; expected a file"):
        IEMOCAP(str(root))
    path.rmdir()
    os.symlink(path, path)
    with pytest.raises(DataError, match=r"audio features .*comparE.h5 is a broken symbolic link \(or a loop of links\)"):
        IEMOCAP(str(root))


@pytest.mark.parametrize(("value", "dtype"), [(np.array([[b"ab"] * 342]), "|S2"), (np.ones((2, 342), np.complex64), "complex64")])
def test_non_numeric_h5_features_are_refused(mmin_layout, value, dtype):
    root, _ = mmin_layout("iemocap")
    _h5_replace(root / "V" / "denseface.h5", "Ses01F_impro01_F000", value)
    with pytest.raises(DataError, match=rf"denseface.h5\['Ses01F_impro01_F000'\] has dtype {dtype}; expected real numbers"):
        IEMOCAP(str(root)).plan()


@pytest.mark.parametrize(
    ("row", "shown"), [([0, 0, 0, 0], r"\[0.0, 0.0, 0.0, 0.0\]"), ([1, 1, 0, 0], r"\[1.0, 1.0, 0.0, 0.0\]"),
                       ([math.nan, 1, 0, 0], r"\[nan, 1.0, 0.0, 0.0\]"), ([0.5, 0.5, 0, 0], r"\[0.5, 0.5, 0.0, 0.0\]")]
)
def test_one_hot_labels_must_be_one_hot(mmin_layout, row, shown):
    root, _ = mmin_layout("iemocap")
    labels = np.eye(4, dtype=np.float32)[[1, 0]]
    labels[1] = row
    np.save(root / "target" / "1" / "val_label.npy", labels)
    with pytest.raises(DataError, match=rf"val_label.npy row 1 is {shown}; expected one-hot rows \(one 1, the rest 0\)"):
        IEMOCAP(str(root)).plan()


@pytest.mark.parametrize(("labels", "dtype"), [(np.array(["a", "b"]), "<U1"), (np.array([True, False]), "bool")])
def test_labels_of_the_wrong_dtype(mmin_layout, labels, dtype):
    root, _ = mmin_layout("iemocap")
    np.save(root / "target" / "1" / "val_label.npy", labels)
    with pytest.raises(DataError, match=rf"val_label.npy has dtype {dtype}; expected numbers"):
        IEMOCAP(str(root)).plan()


def test_an_id_that_is_not_utf8(mmin_layout):
    root, _ = mmin_layout("iemocap")
    np.save(root / "target" / "1" / "val_int2name.npy", np.array([[b"\xff\xfe"], [b"x"]]))
    with pytest.raises(DataError, match=r"val_int2name.npy holds id b'\\xff\\xfe', which is not UTF-8 text; expected strings"):
        IEMOCAP(str(root)).plan()


@pytest.mark.parametrize("bad", ["nan", "negative", "group"])
def test_audio_statistics_file_is_checked(mmin_layout, bad):
    import h5py

    root, _ = mmin_layout("iemocap")
    with h5py.File(root / "A" / "comparE_mean_std.h5", "r+") as f:
        std = f["1"]["std"][()]
        del f["1"]["std"]
        if bad == "group":
            f["1"].create_group("std")
        else:
            std[3] = math.nan if bad == "nan" else -1.0
            f["1"]["std"] = std
    message = "has no group '1' with datasets 'mean' and 'std'" if bad == "group" else (
        r"\['1'\] holds NaN, inf or a negative std; expected finite means and standard deviations >= 0")
    with pytest.raises(DataError, match=rf"comparE_mean_std.h5{message if bad != 'group' else ' ' + message}"):
        IEMOCAP(str(root)).audio_stats()


def test_training_statistics_skip_nonfinite_frames(mmin_layout):
    """One NaN frame must not make every utterance's audio NaN (audio_norm: train)."""
    root, raw = mmin_layout("msp_improv")
    x = raw["feats"]["a"]["Ses01F_impro01_F000"].copy()
    x[0, 7] = np.nan
    _h5_replace(root / "A" / "comparE.h5", "Ses01F_impro01_F000", x)
    mean, std = MSPImprov(str(root)).audio_stats()
    frames = np.concatenate([raw["feats"]["a"][u] for u in raw["names"]["trn"]]).astype(np.float64)
    column = np.delete(frames[:, 7], 0)  # the NaN frame's value is left out of its own column only
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert mean[7] == pytest.approx(column.mean(), rel=1e-5) and mean[8] == pytest.approx(frames[:, 8].mean(), rel=1e-5)
    assert std[7] == pytest.approx(column.std(), rel=1e-4)


def test_a_padded_fold_larger_than_memory_is_refused_before_allocating(monkeypatch, mmin_layout):
    root, _ = mmin_layout("iemocap")
    monkeypatch.setattr("mmcore_corpora.mmin._memory_bytes", lambda: 1 << 30)
    with pytest.raises(DataError, match=r"padding the fold's 7 utterances to 1000000 frames \(.*bert_large.h5\['.*'\] has 4\) "
                                        r"needs 39.0 GiB, more than this machine's 1.0 GiB of memory; .*set max_len"):
        IEMOCAP(str(root), max_len=1_000_000).plan()


# ---------------------------------------------------------------- MMSA pickles


def _pickle(tmp_path, change) -> str:
    path = tmp_path / "p.pkl"
    data = write_mmsa(path)
    change(data)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return str(path)


@pytest.mark.parametrize(
    ("key", "change"),
    [
        ("train'/audio", lambda d: d["train"].__setitem__("audio", np.full(d["train"]["audio"].shape, "ab"))),
        ("train'/audio", lambda d: d["train"].__setitem__("audio", [np.zeros((2, 3)), np.zeros((3, 3))] * 2 + [np.zeros(1)])),
        ("valid'/regression_labels", lambda d: d["valid"].__setitem__("regression_labels", np.array(["x"] * 3))),
        ("train'/audio_lengths", lambda d: d["train"].__setitem__("audio_lengths", ["a"] * 5)),
    ],
)
def test_mmsa_values_that_are_not_numbers(tmp_path, key, change):
    with pytest.raises(DataError, match=rf"mmsa: .*p.pkl '{key} is not an array of numbers \("):
        MOSI(_pickle(tmp_path, change)).split("train")


@pytest.mark.parametrize(("value", "shown"), [([-5] * 5, "-5.0"), ([math.nan] * 5, "nan"), ([2.7] * 5, "2.7")])
def test_mmsa_lengths_must_be_whole_and_not_negative(tmp_path, value, shown):
    path = _pickle(tmp_path, lambda d: d["train"].__setitem__("audio_lengths", value))
    with pytest.raises(DataError, match=rf"'train'/audio_lengths holds length {shown}; expected whole numbers >= 0"):
        MOSI(path).split("train")


def test_mmsa_zero_time_steps_and_a_split_that_is_not_a_dict(tmp_path):
    def no_frames(d):
        for part in d.values():
            part["vision"] = part["vision"][:, :0]
    with pytest.raises(DataError, match=r"'train'/vision has shape \[5, 0, 2\]; expected \[5, T, D\] with T, D >= 1"):
        MOSI(_pickle(tmp_path, no_frames)).split("train")
    with pytest.raises(DataError, match=r"has no split dict 'test' \('test' is a list\); expected a dict of arrays"):
        MOSI(_pickle(tmp_path, lambda d: d.__setitem__("test", [1]))).split("train")


# ---------------------------------------------------------------- corpora.features headers


META = {"task": "classification", "num_classes": "2", "modalities": "a,b"}


def _features(root, **change) -> str:
    root.mkdir(exist_ok=True)
    for offset, split in enumerate(("train", "val", "test")):
        tensors = {"x.a": torch.randn(4, 3), "x.b": torch.randn(4, 5, 2), "len.b": torch.full((4,), 3),
                   "target": torch.tensor([0, 1, 0, 1]), "ids": torch.arange(4) + 4 * offset}
        if split == "val":
            tensors.update(change)
        save_file(tensors, str(root / f"{split}.safetensors"), metadata=META)
    return str(root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"len.b": torch.full((4,), 2.7)}, r"'len.b' has dtype F32; expected integers \(int64\)"),
        ({"target": torch.tensor([True, False, True, False])}, r"'target' has dtype BOOL; expected integer class indices"),
        ({"x.a": torch.ones(4, 3, dtype=torch.int64)}, r"'x.a' has dtype I64; expected floating-point features"),
        ({"x.b": torch.zeros(4, 0, 2), "len.b": torch.zeros(4, dtype=torch.int64)},
         r"'x.b' has shape \[4, 0, 2\]; expected at least 1 frame and 1 feature per row"),
        ({k: torch.zeros(0, *s) for k, s in (("x.a", (3,)), ("x.b", (5, 2)), ("len.b", ()), ("target", ()), ("ids", ()))},
         r"'target' has 0 rows; expected at least one sample in every split"),
    ],
)
def test_feature_headers_are_checked_without_loading(tmp_path, change, message):
    """``describe`` (what ``validate`` calls) reads headers only, and these are all in the header."""
    with pytest.raises(DataError, match=rf"corpora.features: .*val.safetensors: {message}"):
        Features.describe(_features(tmp_path / "f", **change))


def test_feature_root_and_split_paths_of_the_wrong_kind(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"features folder .*file is a file; expected a folder"):
        Features(str(tmp_path / "file"))
    root = _features(tmp_path / "f")
    os.remove(f"{root}/val.safetensors")
    os.mkdir(f"{root}/val.safetensors")
    with pytest.raises(DataError, match=r"val split file .*val.safetensors is a folder; expected a file"):
        Features(root)


# ---------------------------------------------------------------- handwritten and validate's describe


def _uci(root, mor: str | None = None) -> str:
    root.mkdir()
    rng = np.random.default_rng(0)
    for view, dim in (("fou", 76), ("fac", 216), ("kar", 64), ("pix", 240), ("zer", 47), ("mor", 6)):
        np.savetxt(root / f"mfeat-{view}", rng.normal(size=(2000, dim)), fmt="%.2f")
    if mor is not None:
        (root / "mfeat-mor").write_text(mor)
    return str(root)


def test_handwritten_nan_and_empty_files(tmp_path, recwarn):
    root = _uci(tmp_path / "nan")
    text = (tmp_path / "nan" / "mfeat-mor").read_text().splitlines()
    text[4] = "nan " + text[4].split(" ", 1)[1]
    (tmp_path / "nan" / "mfeat-mor").write_text("\n".join(text))
    with pytest.raises(DataError, match=r"mfeat-mor: data row 5, column 1 is nan; expected finite numbers"):
        Handwritten(root).split("train")
    with pytest.raises(DataError, match=r"mfeat-mor has 0 rows x 1 columns; expected 2000 x 6"):
        Handwritten(_uci(tmp_path / "empty", mor="")).split("train")
    assert not [w for w in recwarn if "no data" in str(w.message)]  # one line, no numpy warning beside it


def test_describe_checks_the_layout_for_validate(tmp_path, mmin_layout):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"corpora.iemocap: feature folder .*file is a file; expected a folder"):
        IEMOCAP.describe(root=str(tmp_path / "file"), fold=1)
    root, _ = mmin_layout("iemocap")
    assert IEMOCAP.describe(root=str(root), fold=1)[0] == ["a", "v", "l"]
    with pytest.raises(DataError, match=r"target folder of fold 2 not found"):
        IEMOCAP.describe(root=str(root), fold=2)
    (tmp_path / "mosi").mkdir()
    with pytest.raises(DataError, match=r"corpora.mosi: feature pickle not found: .*mosi/aligned_50.pkl"):
        MOSI.describe(root=str(tmp_path / "mosi"))


def test_handwritten_root_that_is_a_file(tmp_path):
    (tmp_path / "mfeat-fou").write_text("1 2 3")
    with pytest.raises(DataError, match=r"corpora.handwritten: data folder .*mfeat-fou is a file; expected a folder"):
        Handwritten(str(tmp_path / "mfeat-fou"))


def test_mmsa_lists_of_shared_references_cannot_ask_for_gigabytes(tmp_path):
    row = [0.0] * 1000
    block = [row] * 1000  # pickled once, referenced 1000 times: 3e8 values from about 12 KB
    path = _pickle(tmp_path, lambda d: d["train"].__setitem__("audio", [block] * 300))
    with pytest.raises(DataError, match=r"'train'/audio declares 300000000 values, more than its file can hold"):
        MOSI(path).split("train")


def test_a_write_error_takes_back_the_folder_and_the_temporary_files(tmp_path, monkeypatch):
    import mmcore_corpora.features as features

    pkl = tmp_path / "p.pkl"
    write_mmsa(pkl)
    calls = []

    def full_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        open(filename, "wb").close()

    monkeypatch.setattr(features, "save_file", full_disk)
    out = tmp_path / "a" / "b"
    _fails(["convert", "mmsa", str(pkl), "--out", str(out)],
           f"{out}: cannot write the converted splits ([Errno 28] No space left on device); nothing was changed there")
    assert len(calls) == 2 and not (tmp_path / "a").exists()
