"""CMU-MOSI and CMU-MOSEI from the feature pickles of the MMSA toolkit.

Layout (facts read from thuiar/MMSA ``src/MMSA/data_loader.py`` and its
``config_regression.json``): one pickle (``aligned_50.pkl`` or ``unaligned_50.pkl``) holding a
dict with splits ``train``, ``valid`` and ``test``; each split a dict of

    text               [N, T, Dt]  BERT features (Dt = 768; GloVe releases: 300)
    audio              [N, T, Da]  acoustic features, MOSI: 5-d, MOSEI: 74-d
    vision             [N, T, Dv]  facial features, MOSI: 20-d, MOSEI: 35-d
    id                 [N]         "<video>$_$<clip>" strings
    regression_labels  [N]         sentiment score in [-3, 3]
    audio_lengths, vision_lengths [N]   unaligned files only
    text_bert          [N, 3, T]   optional: token ids, attention mask, segment ids

``text_bert`` holds token ids for a BERT model, not features; we read only its attention mask,
as the valid length of ``text``. The file is read with the restricted unpickler, ±inf and NaN
features are set to 0 (the reference sets audio -inf to 0), and the count is reported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmcore.errors import DataError, MMCoreError
from mmcore import InputTransform
from mmcore.types import ModalitySpec, SplitData, TaskSpec

from mmcore.data import SPLITS, as_names, check_split, clamp_lengths, pad_time, replace_nonfinite, require
from mmcore.data import stable_ids, to_split
from mmcore_corpora.safe_pickle import load_pickle

log = logging.getLogger("mmcore.corpora")

KEYS: dict[str, str] = {"a": "audio", "v": "vision", "l": "text"}  # modality -> key in a split dict
LENGTH_KEYS: dict[str, str] = {"a": "audio_lengths", "v": "vision_lengths"}
FILE_SPLITS: dict[str, str] = {"train": "train", "val": "valid", "test": "test"}
Task = Literal["regression", "binary", "3class", "3class_sign", "7class"]
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "binary": ("negative", "non-negative"),
    "3class": ("negative", "neutral", "positive"),
    "3class_sign": ("negative", "neutral", "positive"),
    "7class": ("-3", "-2", "-1", "0", "1", "2", "3"),
}


def score_to_class(score: np.ndarray, task: str) -> np.ndarray:
    """Class targets from sentiment scores, as the field's metrics define them (MMSA metricsTop):
    binary is ``score >= 0`` (the non-negative/negative Acc-2); 3class and 7class round the score
    clipped to [-1, 1] and [-3, 3] (numpy rounding: halves go to the even integer) and shift it to
    start at 0.

    ``3class_sign`` is the pickle's own ``classification_labels`` as MMSA documents them
    (github thuiar/MMSA, README: "Negative(0), Neutral(1), Positive(2)" for scores "<0", "0", ">0"),
    which is what RedCore's reference trains MOSEI on (``data/cmu_mosei_miss_dataset.py`` reads
    ``classification_labels``). It differs from ``3class`` for every score with 0 < |score| < 0.5
    (neutral under ``3class``, signed under ``3class_sign``). It is computed from the scores, not
    read, because MMSA v2 pickles no longer carry ``classification_labels``."""
    if task == "binary":
        return (score >= 0).astype(np.int64)
    if task == "3class_sign":
        return (np.sign(score) + 1).astype(np.int64)
    bound = {"3class": 1.0, "7class": 3.0}[task]
    return (np.round(np.clip(score, -bound, bound)) + bound).astype(np.int64)


def _task_spec(task: str) -> TaskSpec:
    if task == "regression":
        return TaskSpec("regression")
    if task not in CLASS_NAMES:
        raise MMCoreError(f"mmsa: task '{task}' is not one of regression, binary, 3class, 3class_sign, 7class")
    return TaskSpec("classification", len(CLASS_NAMES[task]), CLASS_NAMES[task])


class MMSAPickle:
    """One MMSA feature pickle of either corpus; ``corpora.mosi``/``corpora.mosei`` name it."""

    name = "mmsa"

    def __init__(self, root: str, file: str, task: Task) -> None:
        if task not in ("regression", *CLASS_NAMES):
            raise MMCoreError(f"{self.name}: task '{task}' is not one of regression, binary, 3class, 3class_sign, 7class")
        self.path = self._pickle_path(root, file)
        self.task_name = task
        self.task = _task_spec(task)
        self._data: dict[str, Any] | None = None

    @classmethod
    def describe(cls, task: Task = "regression", **options: object) -> tuple[list[str], TaskSpec]:
        """Modality names and task from the options (for ``validate``); given ``root``, also the
        pickle found where expected (not read: dims and lengths are in it, loaded only for a run)."""
        if "root" in options:
            cls._pickle_path(str(options["root"]), str(options.get("file", "aligned_50.pkl")))
        return list(KEYS), _task_spec(task)

    @classmethod
    def _pickle_path(cls, root: str, file: str) -> Path:
        """``root`` itself, or ``root/file`` when ``root`` is a folder; a file either way."""
        path = require(Path(root).expanduser(), cls.name, "feature pickle or folder")
        return require(path / file, cls.name, "feature pickle", expect="file") if path.is_dir() else path

    @property
    def modalities(self) -> list[ModalitySpec]:
        data = self._load()
        return [ModalitySpec(m, data["dims"][m], sequence=True, max_len=data["max_len"][m]) for m in KEYS]

    @property
    def nonfinite_replaced(self) -> int:
        """How many ±inf/NaN feature values were set to 0 (all splits and modalities)."""
        return int(sum(self._load()["nonfinite"].values()))

    @property
    def nonfinite_by_key(self) -> dict[str, int]:
        """The same count per ``<split>/<key>`` of the pickle, for the report."""
        return dict(self._load()["nonfinite"])

    def input_transform(self) -> InputTransform:
        """The pickle's features are the model's inputs (MMSA ships them already processed)."""
        return InputTransform.identity()

    def split(self, name: str) -> SplitData:
        check_split(self.name, name)
        data = self._load()
        part = data["splits"][name]
        features = {m: pad_time(part["x"][m], data["max_len"][m]) for m in KEYS}
        lengths = {m: clamp_lengths(part["len"][m], data["max_len"][m]) for m in KEYS}
        score = part["score"]
        target = score if self.task_name == "regression" else score_to_class(score, self.task_name)
        ids = np.array([data["ids"][n] for n in part["names"]], dtype=np.int64)
        return to_split(features, lengths, target, ids, regression=self.task_name == "regression")

    def _load(self) -> dict[str, Any]:
        if self._data is not None:
            return self._data
        raw = load_pickle(self.path)
        # how many values the file can hold: lists that repeat one shared list expand a few KB into GBs
        self._budget = 64 * max(self.path.stat().st_size, 1 << 16)
        if not isinstance(raw, dict):
            raise DataError(f"{self.name}: {self.path} holds a {type(raw).__name__}; expected a dict of splits")
        splits = {split: self._read_split(raw, split) for split in SPLITS}
        dims: dict[str, int] = {}
        for m, key in KEYS.items():
            dims[m] = splits["train"]["x"][m].shape[2]
            for split in SPLITS:
                d = splits[split]["x"][m].shape[2]
                if d != dims[m]:
                    raise DataError(
                        f"{self.name}: {self.path}: '{FILE_SPLITS[split]}/{key}' has {d} features per step "
                        f"but 'train/{key}' has {dims[m]}"
                    )
        counts = {s: splits[s].pop("nonfinite") for s in SPLITS}
        nonfinite = {f"{FILE_SPLITS[s]}/{KEYS[m]}": counts[s][m] for s in SPLITS for m in KEYS}
        total = sum(nonfinite.values())
        if total:
            detail = ", ".join(f"{k}: {v}" for k, v in nonfinite.items() if v)
            log.warning("%s: replaced %d non-finite feature values (inf/NaN) by 0 in %s (%s)", self.name, total, self.path, detail)
        self._data = {
            "splits": splits,
            "dims": dims,
            "max_len": {m: max(splits[s]["x"][m].shape[1] for s in SPLITS) for m in KEYS},
            "ids": stable_ids({s: splits[s]["names"] for s in SPLITS}, self.name, str(self.path)),
            "nonfinite": nonfinite,
        }
        return self._data

    def _read_split(self, raw: dict[str, Any], split: str) -> dict[str, Any]:
        key = FILE_SPLITS[split]
        part = raw.get(key)
        if not isinstance(part, dict):
            found = f"'{key}' is a {type(part).__name__}" if key in raw else f"found: {', '.join(map(str, raw))}"
            raise DataError(f"{self.name}: {self.path} has no split dict '{key}' ({found}); expected a dict of arrays")
        where = f"{self.path} '{key}'"
        for k in (*KEYS.values(), "id", "regression_labels"):
            if k not in part:
                raise DataError(f"{self.name}: {where} has no '{k}' (found: {', '.join(map(str, part))})")
        names = as_names(part["id"], self.name, f"{where}/id")
        n = len(names)
        x, nonfinite = {}, {}
        for m, k in KEYS.items():
            arr = _numbers(part[k], np.float32, f"{where}/{k}", self._budget)  # a copy: the replacement below never aliases the pickle
            if arr.ndim != 3 or arr.shape[0] != n or 0 in arr.shape[1:]:
                raise DataError(f"{self.name}: {where}/{k} has shape {list(arr.shape)}; expected [{n}, T, D] with T, D >= 1")
            nonfinite[m] = replace_nonfinite(arr)
            x[m] = arr
        score = _numbers(part["regression_labels"], np.float64, f"{where}/regression_labels", self._budget).reshape(-1)
        if score.shape != (n,):
            raise DataError(f"{self.name}: {where}/regression_labels has {score.size} values for {n} samples")
        if not np.all(np.isfinite(score)):
            raise DataError(f"{self.name}: {where}/regression_labels holds inf or NaN")
        lengths = {m: self._lengths(part, m, x[m].shape[1], n, where) for m in KEYS}
        return {"x": x, "len": lengths, "score": score.astype(np.float32), "names": names, "nonfinite": nonfinite}

    def _lengths(self, part: dict[str, Any], m: str, t: int, n: int, where: str) -> np.ndarray:
        """Valid lengths: the file's ``*_lengths`` for unaligned audio/vision, the attention mask
        of ``text_bert`` for text; otherwise the padded length ``T``."""
        if m in LENGTH_KEYS and LENGTH_KEYS[m] in part:
            key = LENGTH_KEYS[m]
            raw = _numbers(part[key], np.float64, f"{where}/{key}", self._budget).reshape(-1)
        elif m == "l" and "text_bert" in part and np.shape(part["text_bert"]) == (n, 3, t):
            key = "text_bert"
            raw = _numbers(part[key], np.float64, f"{where}/{key}", self._budget)[:, 1, :].sum(axis=1)
        else:
            return np.full(n, t, dtype=np.int64)
        if raw.shape != (n,):
            raise DataError(f"{self.name}: {where}: lengths of '{KEYS[m]}' have {raw.size} values for {n} samples")
        if not np.all(np.isfinite(raw) & (raw >= 0) & (raw == np.round(raw))):
            # a cast would turn -5 into 1, 2.7 into 2 and NaN into garbage, all in silence
            bad = raw[~(np.isfinite(raw) & (raw >= 0) & (raw == np.round(raw)))][0]
            raise DataError(f"{self.name}: {where}/{key} holds length {bad}; expected whole numbers >= 0")
        return raw.astype(np.int64)


def _numbers(value: Any, dtype: type, where: str, budget: int) -> np.ndarray:
    """``value`` as a numeric array (a copy), or one line naming the key: strings, ragged lists
    and objects in a pickle would otherwise end in numpy's traceback. Nested lists may declare
    at most ``budget`` values (their first element per level gives the shape): an 11 KB pickle
    of shared references asked numpy for 3e8 floats and 20 s; one more level, for hours."""
    count, inner = 1, value
    while isinstance(inner, (list, tuple)) and inner:
        count, inner = count * len(inner), inner[0]
    if count > budget:
        raise DataError(f"mmsa: {where} declares {count} values, more than its file can hold (lists repeating one shared "
                        "list); expected numpy arrays")
    try:
        return np.array(value, dtype=dtype)
    except (ValueError, TypeError) as exc:
        raise DataError(f"mmsa: {where} is not an array of numbers ({exc})") from None


class MOSI(MMSAPickle):
    """CMU-MOSI sentiment (MMSA feature pickle): modalities a, v, l; regression or 2/3/7 classes.

    ``root`` is the pickle itself or the folder holding ``file``.

    Args:
        root: the MMSA feature pickle, or the folder holding ``file``.
        file: the pickle's name inside ``root`` when ``root`` is a folder.
        task: regression on the sentiment score, or classes cut from it: binary, 3class,
            3class_sign, 7class.
    """

    name = "corpora.mosi"

    def __init__(self, root: str, file: str = "aligned_50.pkl", task: Task = "regression") -> None:
        super().__init__(root, file, task)


class MOSEI(MMSAPickle):
    """CMU-MOSEI sentiment (MMSA feature pickle): modalities a, v, l; regression or 2/3/7 classes.

    ``root`` is the pickle itself or the folder holding ``file``.

    Args:
        root: the MMSA feature pickle, or the folder holding ``file``.
        file: the pickle's name inside ``root`` when ``root`` is a folder.
        task: regression on the sentiment score, or classes cut from it: binary, 3class,
            3class_sign, 7class.
    """

    name = "corpora.mosei"

    def __init__(self, root: str, file: str = "aligned_50.pkl", task: Task = "regression") -> None:
        super().__init__(root, file, task)
