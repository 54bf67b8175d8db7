"""Your own features: one safetensors file per split, the format ``mmcore convert`` writes.

``<root>/{train,val,test}.safetensors``, each holding, for N samples:

    x.<modality>    [N, D] vectors or [N, T, D] zero-padded sequences (any float dtype)
    len.<modality>  [N] int64 valid lengths, sequence modalities only (default: T)
    target          [N] int64 class indices, or float regression targets
    ids             [N] int64 sample ids, unique across the three files (default: the row
                    number, counted on from train through val to test)

and string metadata: ``task`` (``classification`` | ``regression``, required), ``num_classes``
(classification, required), ``modalities`` (comma-separated order; default: sorted names),
``class_names`` (a JSON list, optional), ``format`` (``mmcore-features/1`` when present) and
any other keys, which are kept as provenance. safetensors holds no code, so no file can run
anything when loaded. Headers are checked when the dataset is built; tensors load per split.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mmcore.errors import DataError, MMCoreError
from mmcore import InputTransform
from mmcore.types import Dataset, ModalitySpec, SplitData, TaskSpec

from mmcore.data import DOCS, SPLITS, check_split, require

NAME = "corpora.features"
FORMAT = "mmcore-features/1"
log = logging.getLogger(__name__)


class Features:
    """A user's own features in the mmcore safetensors format (train/val/test.safetensors).

    Args:
        root: the folder holding train.safetensors, val.safetensors and test.safetensors
            (``mmcore convert`` writes them; docs/datasets.md has the format).
    """

    def __init__(self, root: str) -> None:
        base = require(Path(root).expanduser(), NAME, "features folder", expect="folder")
        self.files = {s: require(base / f"{s}.safetensors", NAME, f"{s} split file", expect="file") for s in SPLITS}
        self.sources = {s: str(path) for s, path in self.files.items()}  # named by mmcore.datacheck's messages
        headers = {s: _read_header(path) for s, path in self.files.items()}
        self.task, names = _task_and_modalities(headers["train"], self.files["train"])
        self.modalities = self._specs(headers, names)
        self.metadata: dict[str, str] = dict(headers["train"]["metadata"])  # provenance, e.g. the converter's source
        for s in ("val", "test"):
            other, other_names = _task_and_modalities(headers[s], self.files[s])
            if other != self.task or other_names != names:
                raise DataError(
                    f"{NAME}: {self.files[s]} describes task {other.kind}/{other.num_classes} with modalities "
                    f"{other_names}; {self.files['train']} has {self.task.kind}/{self.task.num_classes} with {names}"
                )
        self._ids = self._check_ids(headers)
        total = sum(h["n"] for h in headers.values())
        if self.task.kind == "classification" and int(self.task.num_classes or 0) > total:
            # metadata that sizes the output layer: 10^9 classes would be a 64 GB allocation later
            raise DataError(
                f"{NAME}: {self.files['train']}: metadata num_classes={self.task.num_classes} is implausible "
                f"for {total} samples in the three files"
            )

    def input_transform(self) -> InputTransform:
        """The files hold the model's inputs: ``mmcore predict`` takes rows in the same form."""
        return InputTransform.identity()

    @classmethod
    def describe(cls, root: str) -> tuple[list[ModalitySpec], TaskSpec]:
        """Modalities and task from the three files' headers and ids, no features (for ``validate``)."""
        dataset = cls(root)
        return dataset.modalities, dataset.task

    def _specs(self, headers: dict[str, dict[str, Any]], names: list[str]) -> list[ModalitySpec]:
        specs = []
        for m in names:
            shapes = {s: headers[s]["shapes"].get(f"x.{m}") for s in SPLITS}
            ref = shapes["train"]
            for s, shape in shapes.items():
                problem = _shape_problem(m, shape, ref, self.files["train"])
                if problem:
                    raise DataError(f"{NAME}: {self.files[s]}: {problem} (see {DOCS})")
            sequence = len(ref) == 3
            specs.append(ModalitySpec(m, int(ref[-1]), sequence, max(s[1] for s in shapes.values()) if sequence else None))
        return specs

    def _check_ids(self, headers: dict[str, dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Every split's ids (from the file, or row numbers counted on across splits), unique."""
        out, offset, seen = {}, 0, set()
        for s in SPLITS:
            n = headers[s]["n"]
            if "ids" in headers[s]["shapes"]:
                with safe_open(self.files[s], framework="pt") as f:
                    ids = f.get_tensor("ids")
                if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                    raise DataError(f"{NAME}: {self.files[s]}: 'ids' has dtype {ids.dtype}; expected integers (int64)")
                ids = ids.to(torch.int64)
            else:
                ids = torch.arange(offset, offset + n, dtype=torch.int64)
            offset += n
            values = ids.tolist()
            clash = seen.intersection(values)
            if clash or len(set(values)) != len(values):
                example = next(iter(clash)) if clash else next(v for v in values if values.count(v) > 1)
                raise DataError(f"{NAME}: sample id {example} of {self.files[s]} is not unique across the splits")
            seen.update(values)
            out[s] = ids
        return out

    def split(self, name: str) -> SplitData:
        check_split(NAME, name)
        path = self.files[name]
        with safe_open(path, framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        features, lengths = {}, {}
        for spec in self.modalities:
            x = tensors[f"x.{spec.name}"].to(torch.float32)
            if spec.sequence:
                t = x.shape[1]
                if t < spec.max_len:  # a split padded shorter than another: pad it to the common T
                    x = torch.cat([x, x.new_zeros(x.shape[0], spec.max_len - t, x.shape[2])], dim=1)
                raw = tensors.get(f"len.{spec.name}")
                n_len = torch.full((x.shape[0],), t, dtype=torch.int64) if raw is None else raw.to(torch.int64)
                if n_len.numel() and (int(n_len.min()) < 0 or int(n_len.max()) > t):
                    raise DataError(f"{NAME}: {path}: 'len.{spec.name}' holds values outside 0..{t}")
                lengths[spec.name] = n_len.clamp(min=1)  # an empty sequence is one zero frame, see mmcore.data
            features[spec.name] = x
        target = tensors["target"]
        if self.task.kind == "classification":
            if target.is_floating_point() and not torch.equal(target, target.round()):
                raise DataError(f"{NAME}: {path}: 'target' holds non-integer class indices")
            target = target.to(torch.int64)
            if target.numel() and (int(target.min()) < 0 or int(target.max()) >= int(self.task.num_classes or 0)):
                raise DataError(f"{NAME}: {path}: 'target' holds classes outside 0..{int(self.task.num_classes or 0) - 1}")
        else:
            target = target.to(torch.float32)
        return SplitData(features=features, lengths=lengths, target=target, ids=self._ids[name])


def _shape_problem(m: str, shape: list[int] | None, ref: list[int], train: Path) -> str | None:
    """What is wrong with one split's ``x.<m>`` shape, judged against train's; None when fine.

    Train's own rank is checked first, so a 1-D or 4-D train tensor is named as such rather
    than used as the yardstick for the other files."""
    if len(ref) not in (2, 3):
        return (f"'x.{m}' has shape {ref} ({len(ref)}-D); expected [N, D] (one vector per sample) "
                "or [N, T, D] (a zero-padded sequence per sample)")
    if shape is None:
        return f"holds no 'x.{m}', which {train} has; every split needs every modality"
    if len(shape) != len(ref) or shape[-1] != ref[-1]:
        like = f"[N, {ref[-1]}]" if len(ref) == 2 else f"[N, T, {ref[-1]}]"
        return f"'x.{m}' has shape {shape}; expected {like} like {train}"
    return None


def _read_header(path: Path) -> dict[str, Any]:
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
            dtypes = {k: str(f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as exc:
        raise DataError(f"{NAME}: {path}: not a readable safetensors file ({exc})") from None
    if "target" not in shapes or len(shapes["target"]) != 1:
        raise DataError(f"{NAME}: {path}: needs a 'target' tensor of shape [N] (found {shapes.get('target')})")
    n = shapes["target"][0]
    if n == 0:
        raise DataError(f"{NAME}: {path}: 'target' has 0 rows; expected at least one sample in every split")
    for key, shape in shapes.items():
        prefix, _, m = key.partition(".")
        if key in ("target", "ids") or prefix == "len":
            if list(shape) != [n]:
                raise DataError(f"{NAME}: {path}: '{key}' has shape {shape}; expected [{n}]")
            if prefix == "len" and len(shapes.get(f"x.{m}", [])) != 3:
                raise DataError(f"{NAME}: {path}: '{key}' given but 'x.{m}' is not a [N, T, D] sequence")
        elif prefix == "x" and m:
            if not shape or shape[0] != n:
                raise DataError(f"{NAME}: {path}: '{key}' has shape {shape}; expected {n} rows like 'target'")
            if 0 in shape[1:]:  # a sequence of no frames or a vector of no features: nothing to learn from
                raise DataError(f"{NAME}: {path}: '{key}' has shape {shape}; expected at least 1 frame and 1 feature per row")
        else:
            raise DataError(f"{NAME}: {path}: unexpected tensor '{key}'; expected x.<modality>, len.<modality>, target, ids")
        problem = _dtype_problem(key, dtypes[key])
        if problem:
            raise DataError(f"{NAME}: {path}: '{key}' has dtype {dtypes[key]}; expected {problem}")
    return {"metadata": metadata, "shapes": shapes, "n": n}


def _dtype_problem(key: str, dtype: str) -> str | None:
    """What ``key`` should hold when its header dtype (safetensors' names: F32, I64, BOOL, ...)
    is wrong, else None. Read from the header, so ``validate`` sees it without loading tensors;
    a float length or a boolean target would otherwise be cast in silence (2.7 frames -> 2)."""
    floating, integer = dtype.startswith(("F", "BF")), dtype.startswith(("I", "U"))
    if key.startswith("x."):
        return None if floating else "floating-point features (float32, float16, ...)"
    if key.startswith("len."):
        return None if integer else "integers (int64)"
    if key == "ids":
        return None  # checked with their values, for uniqueness (``Features._check_ids``)
    return None if floating or integer else "integer class indices or float regression targets"  # target


def _task_and_modalities(header: dict[str, Any], path: Path) -> tuple[TaskSpec, list[str]]:
    meta, shapes = header["metadata"], header["shapes"]
    if meta.get("format", FORMAT) != FORMAT:
        raise DataError(f"{NAME}: {path}: metadata format '{meta['format']}' is not '{FORMAT}'")
    kind = meta.get("task")
    if kind == "regression":
        task = TaskSpec("regression")
    elif kind == "classification":
        try:
            num_classes = int(meta.get("num_classes", ""))
            raw = json.loads(meta["class_names"]) if "class_names" in meta else None
        except ValueError:
            raise DataError(f"{NAME}: {path}: metadata 'num_classes' must be an integer and 'class_names' a JSON list") from None
        if raw is not None and (not isinstance(raw, list) or not all(isinstance(c, (str, int)) for c in raw)):
            # a JSON object would otherwise be taken silently as its keys, in an order nobody chose
            got = type(raw).__name__ if not isinstance(raw, list) else "a list with non-string entries"
            raise DataError(f"{NAME}: {path}: metadata 'class_names' must be a JSON list of names, got {got}")
        names = tuple(raw) if raw is not None else None
        if num_classes < 2 or (names is not None and len(names) != num_classes):
            raise DataError(f"{NAME}: {path}: metadata gives {num_classes} classes and class names {names}")
        task = TaskSpec("classification", num_classes, tuple(str(c) for c in names) if names else None)
    else:
        raise DataError(f"{NAME}: {path}: metadata 'task' is {kind!r}; expected 'classification' or 'regression' (see {DOCS})")
    found = sorted(k[2:] for k in shapes if k.startswith("x."))
    order = [m.strip() for m in meta["modalities"].split(",")] if "modalities" in meta else found
    if not found or sorted(order) != found:
        raise DataError(f"{NAME}: {path}: metadata 'modalities' lists {order} but the file holds x.{{{','.join(found)}}}")
    return task, order


def check_existing(out: Path, force: bool) -> None:
    """Refuse to replace split files in ``out`` without ``force`` (``convert`` asks before reading)."""
    existing = [str(p) for p in (out / f"{s}.safetensors" for s in SPLITS) if os.path.lexists(p)]
    if existing and not force:
        raise MMCoreError(f"{existing[0]} already exists; pass --force to replace it")


def write_features(dataset: Dataset, out: Path | str, *, metadata: dict[str, str] | None = None, force: bool = False) -> list[Path]:
    """Write any dataset's three splits in this format; returns the files written.

    All three splits are read and checked (``mmcore.datacheck``: empty splits, shapes, targets)
    before anything is written, and the files are renamed into place only once all three are
    written, so a failure leaves ``out`` as it was: no new folder, no half-written or mixed set
    of splits. Non-finite features are kept, with a warning: a run refuses them unless its recipe
    sets ``data.nonfinite: absent``. Existing files are replaced only with ``force``.
    """
    out = Path(out)  # the docs call it with a plain folder name
    check_existing(out, force)
    splits = _checked_splits(dataset)
    targets = [out / f"{s}.safetensors" for s in SPLITS]
    task = dataset.task
    meta = {"format": FORMAT, "task": task.kind, "modalities": ",".join(m.name for m in dataset.modalities)}
    if task.kind == "classification":
        meta["num_classes"] = str(task.num_classes)
        if task.class_names:
            meta["class_names"] = json.dumps(list(task.class_names))
    meta.update(metadata or {})
    created = _first_missing(out)
    temps = [path.with_name(f".{path.name}.tmp-{os.getpid()}") for path in targets]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for split, tmp in zip(SPLITS, temps):
            data = splits[split]
            tensors = {f"x.{m}": x.contiguous() for m, x in data.features.items()}
            tensors.update({f"len.{m}": n.to(torch.int64).contiguous() for m, n in data.lengths.items()})
            tensors["target"] = data.target.contiguous()
            tensors["ids"] = data.ids.to(torch.int64).contiguous()
            save_file(tensors, str(tmp), metadata=meta)
    except BaseException as exc:  # disk full, Ctrl-C: take back what this call made
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        _remove_empty_dirs(out, created)
        if isinstance(exc, (OSError, SafetensorError)):
            raise MMCoreError(f"{out}: cannot write the converted splits ({exc}); nothing was changed there") from None
        raise
    for tmp, path in zip(temps, targets):
        os.replace(tmp, path)
    return targets


def _checked_splits(dataset: Dataset) -> dict[str, SplitData]:
    """The three splits as the dataset returns them, after ``check_splits`` (features are
    written as read: non-finite rows are counted and kept, for the run's own policy)."""
    from mmcore.datacheck import check_splits

    splits = {s: dataset.split(s) for s in SPLITS}
    name = str(getattr(dataset, "name", type(dataset).__name__))
    checked = check_splits(name, splits, list(dataset.modalities), dataset.task, nonfinite="absent",
                           sources=getattr(dataset, "sources", None))
    names = [m.name for m in dataset.modalities]
    kept = {
        f"{s}/{m}": int(part.unusable[:, j].sum())
        for s, part in checked.items() if part.unusable is not None for j, m in enumerate(names)
    }
    if any(kept.values()):
        detail = ", ".join(f"{k}: {v}" for k, v in kept.items() if v)
        log.warning("%s: kept rows with NaN or inf features (%s); a run refuses them unless its recipe sets "
                    "data.nonfinite: absent (those rows' modality is then treated as missing)", name, detail)
    return splits


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None when ``path`` exists)."""
    path, first = Path(os.path.abspath(path)), None
    while not os.path.lexists(path):
        first, path = path, path.parent
    return first


def _remove_empty_dirs(out: Path, created: Path | None) -> None:
    """Remove ``out`` and its parents up to ``created`` (the folders a failed write made); only
    empty folders go, so nothing another process put there meanwhile is lost."""
    if created is None:
        return
    folder = Path(os.path.abspath(out))
    while True:
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == created:
            return
        folder = folder.parent
