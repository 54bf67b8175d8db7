"""Loader helpers for dataset plugins: clear file errors, padding with lengths, stable ids, seeded
order, ``SplitData``. Part of mmcore's public API (a plugin needs nothing deeper).

Loaders read numpy arrays in whatever layout a corpus is published in and finish through the
helpers here, so that padding, lengths, dtypes and ids follow one convention in every plugin:

- sequences are zero padded to one length ``T`` per modality (the same for every split, so that
  ``ModalitySpec.max_len`` is a property of the dataset), longer ones are cut to ``T``;
- a length is at least 1: an empty sequence is stored as one zero frame, so an encoder never
  pools over nothing (the engine's masks, not empty sequences, express a missing modality);
- features are float32, the dtype the engine trains in (``to_split`` converts);
- sample ids are int64, unique over the dataset's three splits and a pure function of the files
  (``stable_ids``), because training masks are a pure function of (seed, id, spec).

Typical use in a dataset factory::

    from mmcore.data import SPLITS, check_split, pad_sequences, stable_ids, to_split
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import torch

from mmcore.errors import DataError, MMCoreError
from mmcore.paths import is_readable_kind, require_file
from mmcore.types import SplitData

DOCS = "docs/datasets.md"
SPLITS: tuple[str, ...] = ("train", "val", "test")


def require(path: Path, dataset: str, what: str, docs: str = DOCS, *, expect: Literal["file", "folder"] | None = None) -> Path:
    """``path`` if it exists, else the one-line error a user sees when the data is not there
    (``docs``: where the expected layout is described; a plugin passes its own page).

    ``expect`` names the kind the layout wants, so that a file given where a folder belongs is
    said to be one, instead of a "not found" for a path below it that no folder can hold."""
    if not path.exists():
        if os.path.lexists(path):  # a link whose target is gone, or a loop of links
            raise DataError(f"{dataset}: {what} {path} is a broken symbolic link (or a loop of links)")
        raise DataError(f"{dataset}: {what} not found: {path} (see {docs} for the expected layout)")
    if not is_readable_kind(path):  # a FIFO or a device would block or stream forever when opened
        raise DataError(f"{dataset}: {what} {path} is not a regular file or folder (a FIFO, device or socket)")
    if expect is not None and path.is_dir() != (expect == "folder"):
        found = "a folder" if path.is_dir() else "a file"
        raise DataError(f"{dataset}: {what} {path} is {found}; expected a {expect} (see {docs} for the expected layout)")
    return path


def check_split(dataset: str, name: str) -> None:
    if name not in SPLITS:
        raise MMCoreError(f"{dataset}: unknown split '{name}'; expected one of {', '.join(SPLITS)}")


def pad_sequences(seqs: Sequence[np.ndarray], dim: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``[T_i, dim]`` arrays into ``[N, max_len, dim]`` float32 (zero padded, cut at
    ``max_len``) and their ``[N]`` int64 lengths, at least 1."""
    out = np.zeros((len(seqs), max_len, dim), dtype=np.float32)
    lengths = np.empty(len(seqs), dtype=np.int64)
    for i, seq in enumerate(seqs):
        t = min(int(seq.shape[0]), max_len)
        out[i, :t] = seq[:t]
        lengths[i] = max(t, 1)
    return out, lengths


def pad_time(x: np.ndarray, max_len: int) -> np.ndarray:
    """An already padded ``[N, T, D]`` array brought to ``T = max_len`` (zeros added or frames cut)."""
    t = x.shape[1]
    if t == max_len:
        return x
    if t > max_len:
        return x[:, :max_len]
    out = np.zeros((x.shape[0], max_len, x.shape[2]), dtype=x.dtype)
    out[:, :t] = x
    return out


def clamp_lengths(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """Lengths as int64 within ``[1, max_len]`` (see the module docstring for why at least 1)."""
    return np.clip(np.asarray(lengths).reshape(-1).astype(np.int64), 1, max_len)


def stable_ids(names_by_split: Mapping[str, Sequence[str]], dataset: str, source: str) -> dict[str, int]:
    """Utterance name -> int64 id: its position in the sorted union of all splits' names.

    Sorting makes the id a function of the set of names alone, so ids (and therefore the
    training masks drawn from them) are the same on every run and every machine. A name that
    appears twice, in one split or in two, would make two samples share a mask: refused.
    """
    seen: dict[str, str] = {}
    for split, names in names_by_split.items():
        for name in names:
            if name in seen:
                where = split if seen[name] == split else f"{seen[name]} and {split}"
                raise DataError(f"{dataset}: sample id '{name}' appears twice ({where}) in {source}")
            seen[name] = split
    return {name: i for i, name in enumerate(sorted(seen))}


def seeded_order(seed: int, keys: Iterable[int]) -> list[int]:
    """``keys`` in a pseudo-random order fixed by ``seed``.

    A hash instead of a numpy generator: the order then depends on nothing but the seed and the
    keys, never on the numpy version, so a split drawn today is the split drawn next year.
    """
    def rank(key: int) -> bytes:
        return hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()

    return sorted(keys, key=rank)


def replace_nonfinite(x: np.ndarray) -> int:
    """Set ±inf and NaN entries of a float array to 0 in place; returns how many there were."""
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        x[bad] = 0.0
    return count


def sha256_file(path: Path) -> str:
    require_file(path, "sha256")  # never open a FIFO: it would wait for a writer
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_split(
    features: Mapping[str, np.ndarray],
    lengths: Mapping[str, np.ndarray],
    target: np.ndarray,
    ids: np.ndarray,
    regression: bool,
) -> SplitData:
    """numpy arrays -> ``SplitData`` with the dtypes the engine expects (float32, int64)."""
    return SplitData(
        features={k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in features.items()},
        lengths={k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in lengths.items()},
        target=torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32 if regression else np.int64)),
        ids=torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
    )


def as_names(values: np.ndarray | Sequence[object], dataset: str, source: Path | str) -> list[str]:
    """Utterance names stored as str, bytes, numpy strings, or ``[N, 1]`` rows of them."""
    arr = np.asarray(values, dtype=object)
    if arr.ndim == 2 and arr.shape[1] == 1:  # MMIN's IEMOCAP int2name is [N, 1] bytes
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{dataset}: {source} holds ids of shape {list(arr.shape)}; expected [N] or [N, 1] strings")
    names: list[str] = []
    for value in arr:
        if isinstance(value, (bytes, np.bytes_)):
            try:
                names.append(bytes(value).decode("utf-8"))
            except UnicodeDecodeError:
                raise DataError(f"{dataset}: {source} holds id {bytes(value)!r}, which is not UTF-8 text; expected strings") from None
        elif isinstance(value, str):
            names.append(str(value))
        else:
            raise DataError(f"{dataset}: {source} holds an id of type {type(value).__name__}; expected strings")
    return names
