"""Tiny corpora written in their published layouts, for the corpora plugin's tests.

(A module with a unique name rather than conftest.py, so that test files can import it whatever
other conftest modules the session has loaded.)

Each builder writes files exactly as the reference code reads them and returns the raw arrays
it wrote, so that tests can check loaded values against what is on disk.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

MMIN_DIMS = {"a": 130, "v": 342, "l": 1024}
MMIN_FILES = {"a": "A/comparE.h5", "v": "V/denseface.h5", "l": "L/bert_large.h5"}
# utterance -> (split, label); lengths per modality differ so that padding is visible
MMIN_UTTS: dict[str, tuple[str, int]] = {
    "Ses01F_impro01_F000": ("trn", 0),
    "Ses01F_impro01_M001": ("trn", 2),
    "Ses02M_script01_F002": ("trn", 3),
    "Ses03F_impro02_M000": ("val", 1),
    "Ses03F_impro02_F001": ("val", 0),
    "Ses05M_script03_M010": ("tst", 3),
    "Ses05M_script03_F011": ("tst", 1),
}


def write_mmin(root: Path, corpus: str = "iemocap", folds: tuple[int, ...] = (1,)) -> dict[str, Any]:
    """The MMIN/RedCore layout. IEMOCAP: one-hot labels and [N, 1] bytes ids; MSP-IMPROV:
    index labels and [N] str ids (an object array, as np.save writes lists of str)."""
    import h5py

    rng = np.random.default_rng(0)
    feats: dict[str, dict[str, np.ndarray]] = {m: {} for m in MMIN_DIMS}
    for i, utt in enumerate(MMIN_UTTS):
        for j, (m, d) in enumerate(MMIN_DIMS.items()):
            t = 1 + (i + 2 * j) % 4  # 1..4 frames
            feats[m][utt] = rng.normal(3.0, 2.0, size=(t, d)).astype(np.float32)
    for m, rel in MMIN_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(root / rel, "w") as f:
            for utt, x in feats[m].items():
                f[utt] = x
    stats = {}
    with h5py.File(root / "A" / "comparE_mean_std.h5", "w") as f:
        for fold in range(1, 11):
            mean = rng.normal(size=130).astype(np.float32)
            std = rng.uniform(0.5, 2.0, size=130).astype(np.float32)
            std[5] = 0.0  # a constant feature: must not divide by zero
            f.create_group(str(fold))
            f[str(fold)]["mean"], f[str(fold)]["std"] = mean, std
            stats[fold] = (mean, std)
    names: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    for code in ("trn", "val", "tst"):
        names[code] = [u for u, (s, _) in MMIN_UTTS.items() if s == code]
        labels[code] = [MMIN_UTTS[u][1] for u in names[code]]
    for fold in folds:
        target = root / "target" / str(fold)
        target.mkdir(parents=True, exist_ok=True)
        for code in ("trn", "val", "tst"):
            if corpus == "iemocap":
                np.save(target / f"{code}_label.npy", np.eye(4, dtype=np.float32)[labels[code]])
                np.save(target / f"{code}_int2name.npy", np.array([[u.encode()] for u in names[code]]))
            else:
                np.save(target / f"{code}_label.npy", np.array(labels[code], dtype=np.int64))
                np.save(target / f"{code}_int2name.npy", np.array(names[code], dtype=object), allow_pickle=True)
    return {"feats": feats, "stats": stats, "names": names, "labels": labels}


SCORES = {
    "train": [-3.0, -2.6, -0.5, 0.0, 0.4],
    "valid": [0.5, 1.5, 2.5],
    "test": [3.0, -1.2],
}


def write_mmsa(path: Path, aligned: bool = False, protocol: int = 4, dims: tuple[int, int, int] = (6, 3, 2)) -> dict[str, Any]:
    """An MMSA feature pickle: splits train/valid/test, text/audio/vision [N, T, D], id,
    regression_labels, raw_text, text_bert, and *_lengths when unaligned. One +inf, one -inf
    and one NaN are planted in train audio/vision and valid text."""
    dt, da, dv = dims
    rng = np.random.default_rng(1)
    data: dict[str, Any] = {}
    clip = 0
    for split, scores in SCORES.items():
        n = len(scores)
        t_text, t_audio, t_vision = (4, 4, 4) if aligned else (4, 5, 3)
        part: dict[str, Any] = {
            "raw_text": np.array([f"sentence {k}" for k in range(n)], dtype=object),
            "text": rng.normal(size=(n, t_text, dt)).astype(np.float32),
            "audio": rng.normal(size=(n, t_audio, da)).astype(np.float32),
            "vision": rng.normal(size=(n, t_vision, dv)).astype(np.float32),
            "id": np.array([f"vid{clip + k:03d}$_${k}" for k in range(n)], dtype=object),
            "regression_labels": np.array(scores, dtype=np.float32),
        }
        clip += n
        mask = np.zeros((n, t_text), dtype=np.float32)
        for k in range(n):
            mask[k, : 1 + k % t_text] = 1.0
        part["text_bert"] = np.stack([mask * 101, mask, np.zeros_like(mask)], axis=1)
        if not aligned:
            part["audio_lengths"] = [min(k + 2, t_audio + 3) if k != 1 else 0 for k in range(n)]  # 0 and > T on purpose
            part["vision_lengths"] = np.array([1 + k % t_vision for k in range(n)], dtype=np.int64)
        data[split] = part
    data["train"]["audio"][0, 0, 0] = np.inf
    data["train"]["vision"][1, 2, 1] = -np.inf
    data["valid"]["text"][2, 3, 0] = np.nan
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return data
