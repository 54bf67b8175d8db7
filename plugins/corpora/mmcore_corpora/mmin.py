"""IEMOCAP and MSP-IMPROV in the feature layout of the MMIN and RedCore code.

Layout under ``root`` (facts read from AIM3-RUC/MMIN ``data/multimodal_miss_dataset.py`` and
sunjunaimer/RedCore ``data/multimodal_miss_msp_dataset.py``)::

    A/comparE.h5            utterance id -> [T, 130] ComParE frames
    A/comparE_mean_std.h5   group "<fold>" with datasets "mean" [130] and "std" [130]
    V/denseface.h5          utterance id -> [T, 342] DenseFace frames
    L/bert_large.h5         utterance id -> [T, 1024] BERT-large token features
    target/<fold>/{trn,val,tst}_label.npy     IEMOCAP: one-hot [N, 4]; MSP-IMPROV: indices [N]
    target/<fold>/{trn,val,tst}_int2name.npy  utterance ids: IEMOCAP [N, 1] bytes; MSP-IMPROV [N] str

Audio is normalised per feature with the fold's training statistics; everything is padded to
one length per modality (the longest utterance of the fold, or ``max_len``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np

from mmcore.errors import DataError, MMCoreError
from mmcore import Between, InputTransform
from mmcore.types import ModalitySpec, SplitData, TaskSpec

from mmcore.data import DOCS, SPLITS, as_names, check_split, pad_sequences, require, stable_ids, to_split
from mmcore_corpora.safe_pickle import load_npy

DIMS: dict[str, int] = {"a": 130, "v": 342, "l": 1024}
FILE_SPLITS: dict[str, str] = {"train": "trn", "val": "val", "test": "tst"}
NUM_CLASSES = 4
AudioNorm = Literal["file", "train", "none"]


def _h5py(dataset: str = "corpora") -> Any:
    try:
        import h5py
    except ImportError:
        raise DataError(f'{dataset}: reading .h5 features needs h5py: pip install "mmcore-corpora[h5]"') from None
    return h5py


class _MMINCorpus:
    """Shared loader; subclasses fix the corpus name, the number of folds and the defaults."""

    name = ""
    n_folds = 0

    def __init__(self, root: str, fold: int, audio: str, audio_norm: AudioNorm, max_len: int | None) -> None:
        if not 1 <= int(fold) <= self.n_folds:
            valid = ", ".join(str(k) for k in range(1, self.n_folds + 1))
            raise DataError(f"{self.name}: fold {fold} does not exist; valid folds: {valid}")
        if audio_norm not in ("file", "train", "none"):
            raise MMCoreError(f"{self.name}: audio_norm '{audio_norm}' is not one of file, train, none")
        if max_len is not None and int(max_len) < 1:
            raise MMCoreError(f"{self.name}: max_len must be a positive integer or null, got {max_len}")
        self.fold, self.audio_norm, self.max_len = int(fold), audio_norm, max_len
        self.h5, stats_file, self.target_files = self._layout(root, self.fold, audio, audio_norm)
        if stats_file is not None:
            self.stats_file = stats_file
        _h5py(self.name)  # fail now, not at the first batch, when the optional dependency is missing
        self.task = self.describe()[1]
        self._plan: dict[str, Any] | None = None
        self._audio_stats: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def _layout(cls, root: str, fold: int, audio: str, audio_norm: str) -> tuple[dict[str, Path], Path | None, dict[str, tuple[Path, Path]]]:
        """The layout's files (h5 per modality, the statistics file when used, labels and ids per
        split), each checked to exist as a file or folder where the layout says, none opened."""
        base = require(Path(root).expanduser(), cls.name, "feature folder", expect="folder")
        h5 = {
            "a": require(base / "A" / f"{audio}.h5", cls.name, "audio features", expect="file"),
            "v": require(base / "V" / "denseface.h5", cls.name, "visual features", expect="file"),
            "l": require(base / "L" / "bert_large.h5", cls.name, "lexical features", expect="file"),
        }
        stats = None
        if audio_norm == "file":
            stats = require(base / "A" / "comparE_mean_std.h5", cls.name, "audio mean/std file", expect="file")
        target = require(base / "target" / str(fold), cls.name, f"target folder of fold {fold}", expect="folder")
        targets = {
            split: (
                require(target / f"{code}_label.npy", cls.name, f"{split} labels", expect="file"),
                require(target / f"{code}_int2name.npy", cls.name, f"{split} utterance ids", expect="file"),
            )
            for split, code in FILE_SPLITS.items()
        }
        return h5, stats, targets

    @classmethod
    def describe(cls, **options: object) -> tuple[list[str], TaskSpec]:
        """Modality names and task (for ``validate``); given ``root``, also the layout's files,
        found where expected but not read, so that a file given for the folder or a missing fold
        is a validation error. The padded lengths need the features: left to ``modalities``."""
        if "root" in options:
            defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()}
            get = lambda key: options.get(key, defaults.get(key))  # noqa: E731  (the subclass's defaults)
            cls._layout(str(options["root"]), int(get("fold")), str(get("audio")), str(get("audio_norm")))
        return list(DIMS), TaskSpec("classification", NUM_CLASSES)

    @property
    def modalities(self) -> list[ModalitySpec]:
        lengths = self.plan()["max_len"]
        return [ModalitySpec(m, DIMS[m], sequence=True, max_len=lengths[m]) for m in DIMS]

    def plan(self) -> dict[str, Any]:
        """Labels, names, ids and padded lengths of the fold, read once (feature shapes only)."""
        if self._plan is None:
            names, labels = {}, {}
            for split, (label_path, names_path) in self.target_files.items():
                labels[split] = self._labels(label_path)
                names[split] = as_names(load_npy(names_path), self.name, names_path)
                if len(labels[split]) != len(names[split]):
                    raise DataError(
                        f"{self.name}: {label_path} holds {len(labels[split])} labels but {names_path} "
                        f"holds {len(names[split])} utterance ids"
                    )
            ids = stable_ids(names, self.name, f"target/{self.fold}")
            every = [n for split in SPLITS for n in names[split]]
            longest = {m: self._check_shapes(m, every) for m in DIMS}
            max_len = {m: int(self.max_len or longest[m][0]) for m in DIMS}
            self._check_padded_size(len(every), max_len, longest)
            self._plan = {"names": names, "labels": labels, "ids": ids, "max_len": max_len}
        return self._plan

    def _check_padded_size(self, n: int, max_len: dict[str, int], longest: dict[str, tuple[int, str]]) -> None:
        """Refuse, before allocating, a padded fold larger than this machine's memory: one
        utterance that declares 10^8 frames (an h5 dataset's shape costs nothing to declare)
        would otherwise end in an out-of-memory error that names nothing."""
        need = sum(n * max_len[m] * DIMS[m] * 4 for m in DIMS)
        have = _memory_bytes()
        if have and need > have:
            m = max(DIMS, key=lambda k: max_len[k] * DIMS[k])
            frames, utt = longest[m]
            raise DataError(
                f"{self.name}: padding the fold's {n} utterances to {max_len[m]} frames ({self.h5[m]}['{utt}'] has "
                f"{frames}) needs {need / 2**30:.1f} GiB, more than this machine's {have / 2**30:.1f} GiB of memory; "
                "expected shorter sequences, or set max_len (convert: --max-len) to cut them"
            )

    def split(self, name: str) -> SplitData:
        check_split(self.name, name)
        plan = self.plan()
        names = plan["names"][name]
        features, lengths = {}, {}
        for m, path in self.h5.items():
            with _open_h5(path, self.name) as f:
                seqs = [_read(d, np.float32) for d in self._datasets(f, path, names)]
            if m == "a" and self.audio_norm != "none":
                mean, std = self.audio_stats()
                seqs = [(s - mean) / std for s in seqs]
            features[m], lengths[m] = pad_sequences(seqs, DIMS[m], plan["max_len"][m])
        ids = np.array([plan["ids"][n] for n in names], dtype=np.int64)
        return to_split(features, lengths, plan["labels"][name], ids, regression=False)

    def input_transform(self) -> InputTransform:
        """Audio standardised with the fold's statistics (``audio_norm``), video and text as read:
        what ``mmcore predict`` applies to raw ComParE frames."""
        if self.audio_norm == "none":
            return InputTransform.identity()
        return InputTransform.standardize({"a": self.audio_stats()})

    def audio_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and std of the fold's training audio: from the stats file, or
        computed over every valid training frame (the padding never enters)."""
        if self._audio_stats is None:
            if self.audio_norm == "file":
                mean, std = self._stats_from_file()
            else:
                total, total_sq, count = np.zeros(DIMS["a"]), np.zeros(DIMS["a"]), np.zeros(DIMS["a"])
                with _open_h5(self.h5["a"], self.name) as f:
                    for d in self._datasets(f, self.h5["a"], self.plan()["names"]["train"]):
                        x = _read(d, np.float64)
                        finite = np.isfinite(x)  # one NaN frame must not turn every utterance's audio into NaN
                        x = np.where(finite, x, 0.0)
                        total += x.sum(axis=0)
                        total_sq += np.square(x).sum(axis=0)
                        count += finite.sum(axis=0)
                mean = total / np.maximum(count, 1)
                std = np.sqrt(np.maximum(total_sq / np.maximum(count, 1) - np.square(mean), 0.0))
            std = np.where(std == 0.0, 1.0, std)  # a constant feature stays at 0 instead of dividing by 0
            self._audio_stats = (mean.astype(np.float32), std.astype(np.float32))
        return self._audio_stats

    def _stats_from_file(self) -> tuple[np.ndarray, np.ndarray]:
        h5py = _h5py()
        with _open_h5(self.stats_file, self.name) as f:
            group = f.get(str(self.fold))
            if not isinstance(group, h5py.Group) or not all(isinstance(group.get(k), h5py.Dataset) for k in ("mean", "std")):
                found = ", ".join(sorted(f.keys())) or "none"
                raise DataError(
                    f"{self.name}: {self.stats_file} has no group '{self.fold}' with datasets 'mean' and 'std' "
                    f"(groups found: {found})"
                )
            mean = np.asarray(group["mean"][()], dtype=np.float64).reshape(-1)
            std = np.asarray(group["std"][()], dtype=np.float64).reshape(-1)
        if mean.shape != (DIMS["a"],) or std.shape != (DIMS["a"],):
            raise DataError(
                f"{self.name}: {self.stats_file}['{self.fold}'] holds mean {list(mean.shape)} and std "
                f"{list(std.shape)}; expected [{DIMS['a']}] each"
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
            # a NaN or negative std would silently turn one audio feature of every utterance into NaN
            raise DataError(
                f"{self.name}: {self.stats_file}['{self.fold}'] holds NaN, inf or a negative std; "
                "expected finite means and standard deviations >= 0"
            )
        return mean, std

    def _labels(self, path: Path) -> np.ndarray:
        raw = load_npy(path)
        if raw.dtype.kind not in "iuf":  # strings, objects and booleans are no class labels
            raise DataError(f"{self.name}: {path} has dtype {raw.dtype}; expected numbers (one-hot rows or class indices)")
        if raw.ndim == 2 and raw.shape[1] == NUM_CLASSES:  # one-hot rows (IEMOCAP)
            one_hot = ((raw == 0) | (raw == 1)).all(axis=1) & ((raw == 1).sum(axis=1) == 1)
            if not one_hot.all():  # argmax of an all-zero, two-hot or NaN row is a class nobody gave
                row = int(np.argmin(one_hot))
                raise DataError(
                    f"{self.name}: {path} row {row} is {raw[row].tolist()}; expected one-hot rows (one 1, the rest 0)"
                )
            labels = np.argmax(raw, axis=1)
        elif raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1):  # class indices (MSP-IMPROV)
            labels = raw.reshape(-1)
            if not np.all(np.equal(np.mod(labels, 1), 0)):
                raise DataError(f"{self.name}: {path} holds non-integer class indices")
        else:
            raise DataError(
                f"{self.name}: {path} has shape {list(raw.shape)}; expected one-hot [N, {NUM_CLASSES}] or indices [N]"
            )
        labels = labels.astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise DataError(f"{self.name}: {path} holds class {int(labels.max())}; expected 0..{NUM_CLASSES - 1}")
        return labels

    def _check_shapes(self, m: str, names: list[str]) -> tuple[int, str]:
        """Every utterance present with [T, D] numeric features of the right width; returns the
        longest T and the utterance that has it."""
        path, dim, longest = self.h5[m], DIMS[m], (1, names[0] if names else "")
        with _open_h5(path, self.name) as f:
            for n, d in zip(names, self._datasets(f, path, names)):
                shape = d.shape
                if len(shape) != 2 or shape[1] != dim:
                    raise DataError(
                        f"{self.name}: {path}['{n}'] has shape {list(shape)}; expected [T, {dim}] (see {DOCS})"
                    )
                if d.dtype.kind not in "fiu":  # HDF5 cannot convert strings or compounds to float
                    raise DataError(f"{self.name}: {path}['{n}'] has dtype {d.dtype}; expected real numbers (float)")
                longest = max(longest, (int(shape[0]), n), key=lambda t: t[0])
        return longest

    def _datasets(self, f: Any, path: Path, names: list[str]) -> list[Any]:
        """Low-level handles (``h5py.h5d``) of the utterances ``names`` in the open file ``f``.

        h5py's ``f[name]`` builds a ``Dataset`` object on every call, about 55 µs of Python,
        which was most of a fold's loading time; opening the dataset directly measured 2.5x
        faster for shapes and 2x for reads (1800 utterances of ``V/denseface.h5``, h5py 3).
        An id that is missing, or names a group rather than a dataset, is one ``DataError``."""
        h5d = _h5py().h5d
        handles, missing = [], []
        for n in names:
            try:
                handles.append(h5d.open(f.id, n.encode()))
            except KeyError:
                missing.append(n)
        if missing:
            raise DataError(
                f"{self.name}: {len(missing)} utterance ids of fold {self.fold} are missing from {path}, "
                f"e.g. '{missing[0]}' (an id that names a group, not a dataset, counts as missing)"
            )
        return handles


def _open_h5(path: Path, dataset: str) -> Any:
    """An h5 file open for reading, or one line naming it: a truncated, empty or foreign file
    makes h5py raise an ``OSError`` whose text is several lines of HDF5 internals."""
    try:
        return _h5py(dataset).File(path, "r")
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{dataset}: {path}: not a readable HDF5 file ({reason}); expected the h5 file of the MMIN layout") from None


def _memory_bytes() -> int:
    """This machine's physical memory in bytes (0 where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def _read(dataset: Any, dtype: type) -> np.ndarray:
    """A low-level dataset's values as ``dtype`` (HDF5 converts while reading, as ``np.asarray``
    would after it: the same values, overflow to ±inf included)."""
    everything = _h5py().h5s.ALL  # the whole dataset into the whole array
    out = np.empty(dataset.shape, dtype=dtype)
    dataset.read(everything, everything, out)
    return out


class IEMOCAP(_MMINCorpus):
    """IEMOCAP, 4 emotion classes, 10 folds, MMIN/RedCore feature layout (modalities a, v, l).

    ``audio_norm``: ``file`` uses the fold's statistics in ``A/comparE_mean_std.h5`` (as the
    reference code does), ``train`` computes them from the fold's training frames, ``none``
    leaves audio raw. ``max_len`` cuts every sequence to that many frames (default: the longest).
    Args:
        root: the corpus folder in MMIN's layout (A/, V/, L/ feature files and target/<fold>/ ids).
        fold: the cross-validation fold, 1 to 10.
        audio: the audio feature file A/<audio>.h5.
        audio_norm: file standardises audio with A/comparE_mean_std.h5; train with the fold's
            training frames; none leaves it raw.
        max_len: cut every sequence to this many frames; null: the longest in the corpus.
    """

    name = "corpora.iemocap"
    n_folds = 10

    def __init__(
        self,
        root: str,
        fold: Annotated[int, Between(1, 10)] = 1,  # validated with the other options: no such fold, no run
        audio: str = "comparE",
        audio_norm: AudioNorm = "file",
        max_len: int | None = None,
    ) -> None:
        super().__init__(root, fold, audio, audio_norm, max_len)


class MSPImprov(_MMINCorpus):
    """MSP-IMPROV, 4 emotion classes, 12 folds, the same layout as IEMOCAP (modalities a, v, l).

    Audio statistics default to ``train`` (computed from the fold's training frames); MMIN's own
    MSP scripts read ``A/comparE_raw.h5`` (pass ``audio: comparE_raw``).
    Args:
        root: the corpus folder in MMIN's layout (A/, V/, L/ feature files and target/<fold>/ ids).
        fold: the cross-validation fold, 1 to 12.
        audio: the audio feature file A/<audio>.h5.
        audio_norm: file standardises audio with A/comparE_mean_std.h5; train with the fold's
            training frames; none leaves it raw.
        max_len: cut every sequence to this many frames; null: the longest in the corpus.
    """

    name = "corpora.msp_improv"
    n_folds = 12

    def __init__(
        self,
        root: str,
        fold: Annotated[int, Between(1, 12)] = 1,
        audio: str = "comparE",
        audio_norm: AudioNorm = "train",
        max_len: int | None = None,
    ) -> None:
        super().__init__(root, fold, audio, audio_norm, max_len)
