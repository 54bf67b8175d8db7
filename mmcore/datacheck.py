"""Checking a dataset's loaded splits against its own description, once, before training.

A dataset plugin returns ``modalities``, a ``task`` and tensors per split; nothing forces the
tensors to agree with the description. When they do not, a run either crashes deep inside the
model (a shape error, ``torch.cat`` of nothing, a division by zero on an empty split), asks for
absurd memory (``num_classes: 1000000000``) or, worst, finishes and reports metrics computed on
NaN features. ``check_splits`` turns each of these into one line naming the dataset, the split,
the modality and how many rows are affected, raised as ``DataError`` (exit code 1).

It runs on the CPU tensors the dataset returned, before they are moved to the device, so its
cost (one pass over every tensor) is paid once per run and never inside the training loop.

Non-finite features have two policies, chosen by the recipe key ``data.nonfinite``:

- ``error`` (default): any NaN or ±inf in a split's features is a ``DataError``.
- ``absent``: a row whose features of modality ``m`` hold any non-finite value is treated as a
  row where ``m`` is missing. The returned split has those rows' features of ``m`` set to zero
  and ``SplitData.unusable`` set, a ``[N, M]`` bool in modality order (True = unusable); the
  engine ANDs ``~unusable`` into the present mask of every batch, for training and evaluation
  alike, and the drawn masks (training, random conditions) treat those modalities as absent
  before the draw, so ``min_present`` holds among a row's usable ones (``mmcore.missing``). A
  row with no usable modality at all is still an error: nothing could be predicted from it,
  and dropping it silently would change the evaluation set.

Targets are never repaired: a non-finite regression target or a class index outside
``0..num_classes-1`` is an error under both policies.
"""

from __future__ import annotations

from typing import Literal, Mapping

import torch
from torch import Tensor

from mmcore.errors import DataError
from mmcore.types import ModalitySpec, SplitData, TaskSpec

NonFinite = Literal["error", "absent"]
NONFINITE_POLICIES: tuple[str, ...] = ("error", "absent")


def check_splits(
    dataset_type: str,
    splits: dict[str, SplitData],
    specs: list[ModalitySpec],
    task: TaskSpec,
    *,
    nonfinite: NonFinite = "error",
    sources: Mapping[str, object] | None = None,
) -> dict[str, SplitData]:
    """The splits, checked (and under ``nonfinite="absent"`` with unusable rows recorded).

    ``sources`` optionally maps a split name to the file it was read from (a dataset's
    ``files`` attribute, when it has one), so that the message names the file too.
    Raises ``DataError`` with one line for the first problem found.
    """
    if nonfinite not in NONFINITE_POLICIES:
        raise DataError(f"data.nonfinite: expected one of {', '.join(NONFINITE_POLICIES)}, got {nonfinite!r}")
    _check_description(dataset_type, specs, task)
    out: dict[str, SplitData] = {}
    seen_ids: dict[str, Tensor] = {}
    for name, split in splits.items():
        where = _where(dataset_type, name, sources)
        if not isinstance(split, SplitData):
            raise DataError(f"{where}: split() returned {type(split).__name__}; expected mmcore.SplitData")
        n = _check_rows(where, split)
        for spec in specs:
            _check_features(where, split, spec, n)
        _check_target(where, split.target, task, n)
        _check_unusable(where, split.unusable, specs, n)
        out[name] = _nonfinite(where, split, specs, n, nonfinite)
        seen_ids[name] = split.ids
    _check_unique_ids(dataset_type, seen_ids)
    _check_num_classes(dataset_type, task, out)
    return out


# ---------------------------------------------------------------- the description itself


def _check_description(dataset: str, specs: list[ModalitySpec], task: TaskSpec) -> None:
    if not specs:
        raise DataError(f"dataset {dataset}: declares no modalities")
    for s in specs:  # a (name, dim) tuple or a dict would fail later as an AttributeError
        if not isinstance(s, ModalitySpec):
            raise DataError(f"dataset {dataset}: modalities must be mmcore.ModalitySpec objects, got {type(s).__name__} {s!r}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise DataError(f"dataset {dataset}: modality names must be unique, got {names}")
    for s in specs:
        if not isinstance(s.dim, int) or isinstance(s.dim, bool) or s.dim < 1:
            raise DataError(f"dataset {dataset}, modality '{s.name}': dim must be an integer >= 1, got {s.dim!r}")
        if s.sequence and (not isinstance(s.max_len, int) or isinstance(s.max_len, bool) or s.max_len < 1):
            raise DataError(
                f"dataset {dataset}, modality '{s.name}': a sequence needs max_len, an integer >= 1, got {s.max_len!r}"
            )
    if task.kind == "classification":
        k = task.num_classes
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise DataError(f"dataset {dataset}: classification needs num_classes, an integer >= 2, got {k!r}")
        if task.class_names is not None and len(task.class_names) != k:
            raise DataError(f"dataset {dataset}: {len(task.class_names)} class names for {k} classes")
    elif task.kind != "regression":
        raise DataError(f"dataset {dataset}: task kind {task.kind!r}; expected 'classification' or 'regression'")


def described_mismatch(
    dataset: str, described: tuple[list[str], TaskSpec | None, list[ModalitySpec] | None], specs: list[ModalitySpec], task: TaskSpec
) -> str | None:
    """How the factory's ``describe`` (``mmcore.recipe.crosschecks.describe_dataset``'s result)
    disagrees with the dataset that was built, or None. ``mmcore validate`` checks a recipe's
    modality names, rates and ``train.select`` against ``describe`` alone, so a disagreement
    means the recipe was validated against facts the data does not have. The run itself uses the
    loaded description throughout, so a caller warns rather than refuses: such datasets ran before."""
    names, described_task, described_specs = described
    loaded = [s.name for s in specs]
    said = f"dataset {dataset}: describe() says"
    if list(names) != loaded:
        return f"{said} modalities {', '.join(names)}, the loaded dataset has {', '.join(loaded)}"
    if described_specs is not None and list(described_specs) != list(specs):
        diff = next(f"{a} vs {b}" for a, b in zip(described_specs, specs) if a != b)
        return f"{said} other modality specs than the loaded dataset has: {diff}"
    if described_task is not None and (described_task.kind, described_task.num_classes) != (task.kind, task.num_classes):
        return f"{said} the task is {_task(described_task)}, the loaded dataset's is {_task(task)}"
    return None


def _task(task: TaskSpec) -> str:
    return f"classification with {task.num_classes} classes" if task.kind == "classification" else str(task.kind)


# ---------------------------------------------------------------- one split


def _where(dataset: str, split: str, sources: Mapping[str, object] | None) -> str:
    source = (sources or {}).get(split)
    return f"dataset {dataset}, split '{split}'" + (f" ({source})" if source is not None else "")


def _check_rows(where: str, split: SplitData) -> int:
    ids = split.ids
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype != torch.int64:
        raise DataError(f"{where}: ids must be a [N] int64 tensor, got {_describe(ids)}")
    _check_storage(where, "ids", ids)
    n = int(ids.shape[0])
    if n == 0:
        raise DataError(f"{where}: the split is empty (0 rows); every split needs at least one sample")
    if int(torch.unique(ids).numel()) != n:
        raise DataError(f"{where}: {n - int(torch.unique(ids).numel())} of {n} sample ids are repeated; ids must be unique")
    return n


def _check_features(where: str, split: SplitData, spec: ModalitySpec, n: int) -> None:
    here = f"{where}, modality '{spec.name}'"
    x = split.features.get(spec.name)
    if x is None:
        extra = sorted(set(split.features) - {spec.name})
        raise DataError(f"{here}: no features (the split holds {', '.join(extra) or 'none'})")
    if not isinstance(x, Tensor):
        raise DataError(f"{here}: features must be a tensor, got {type(x).__name__}")
    _check_storage(here, "features", x)
    if x.dtype != torch.float32:
        raise DataError(f"{here}: features have dtype {x.dtype}; expected torch.float32 (convert them in the loader)")
    expected = f"[{n}, {spec.max_len}, {spec.dim}] (a sequence)" if spec.sequence else f"[{n}, {spec.dim}] (a vector)"
    shape = list(x.shape)
    want = [n, spec.max_len, spec.dim] if spec.sequence else [n, spec.dim]
    if shape != want:
        raise DataError(f"{here}: features have shape {shape}; the dataset declares {expected}")
    if not spec.sequence:
        return
    lengths = split.lengths.get(spec.name)
    if not isinstance(lengths, Tensor) or lengths.dtype != torch.int64 or list(lengths.shape) != [n]:
        raise DataError(f"{here}: lengths must be a [{n}] int64 tensor, got {_describe(lengths)}")
    _check_storage(here, "lengths", lengths)
    bad = int(((lengths < 0) | (lengths > int(spec.max_len))).sum())  # type: ignore[arg-type]
    if bad:
        raise DataError(
            f"{here}: {bad} of {n} rows have lengths outside 0..{spec.max_len} "
            f"(found {int(lengths.min())}..{int(lengths.max())})"
        )


def _check_target(where: str, target: object, task: TaskSpec, n: int) -> None:
    if not isinstance(target, Tensor) or list(target.shape) != [n]:
        raise DataError(f"{where}: target must be a [{n}] tensor, got {_describe(target)}")
    _check_storage(where, "target", target)
    if task.kind == "regression":
        if target.dtype != torch.float32:
            raise DataError(f"{where}: regression targets have dtype {target.dtype}; expected torch.float32")
        bad = int((~torch.isfinite(target)).sum())
        if bad:
            raise DataError(f"{where}: {bad} of {n} regression targets are NaN or inf")
        return
    if target.dtype != torch.int64:
        raise DataError(f"{where}: class targets have dtype {target.dtype}; expected torch.int64 class indices")
    k = int(task.num_classes or 0)
    bad = int(((target < 0) | (target >= k)).sum())
    if bad:
        raise DataError(
            f"{where}: {bad} of {n} targets are outside 0..{k - 1} for num_classes={k} "
            f"(found {int(target.min())}..{int(target.max())})"
        )


def _check_unusable(where: str, unusable: object, specs: list[ModalitySpec], n: int) -> None:
    """``SplitData.unusable`` set by the dataset itself: the engine ANDs its negation into every
    present mask, so it must be ``[N, M]`` bool, and a row with no usable modality is refused as
    under ``data.nonfinite: absent`` (nothing could be predicted from it)."""
    if unusable is None:
        return
    m = len(specs)
    if not isinstance(unusable, Tensor) or unusable.dtype != torch.bool or list(unusable.shape) != [n, m]:
        raise DataError(f"{where}: unusable must be None or a [{n}, {m}] bool tensor (one column per modality), got {_describe(unusable)}")
    _check_storage(where, "unusable", unusable)
    hopeless = int(unusable.all(dim=1).sum())
    if hopeless:
        raise DataError(f"{where}: unusable marks every modality of {hopeless} of {n} rows; no prediction can be made from them")


def storage_problem(x: Tensor) -> str | None:
    """Why ``x`` cannot be checked or trained on although its shape and dtype are right, or None:
    a sparse tensor (most reductions and index selections fail on it) or one on the ``meta``
    device (it has a shape but no values). Shared with the contract suite (``mmcore.testing``)."""
    if x.layout != torch.strided:
        return f"a {x.layout} tensor; expected a dense one (convert with .to_dense())"
    if x.is_meta:
        return "a tensor on the meta device, which holds no values; expected one with data (on the CPU)"
    return None


def _check_storage(where: str, what: str, x: Tensor) -> None:
    problem = storage_problem(x)
    if problem is not None:
        raise DataError(f"{where}: {what}: {problem}")


def _nonfinite(where: str, split: SplitData, specs: list[ModalitySpec], n: int, policy: str) -> SplitData:
    """The split unchanged, or with rows of non-finite features zeroed and marked unusable."""
    unusable = torch.zeros(n, len(specs), dtype=torch.bool)
    features = dict(split.features)
    for j, spec in enumerate(specs):
        x = features[spec.name]
        if x.numel() == 0 or _all_finite(x):  # the common case, without a mask as large as the data
            continue
        bad_rows = ~torch.isfinite(x).reshape(n, -1).all(dim=1)
        count = int(bad_rows.sum())
        if not count:
            continue
        if policy == "error":
            raise DataError(
                f"{where}, modality '{spec.name}': {count} of {n} rows hold NaN or inf features; fix the data "
                f"or set data.nonfinite: absent to treat those rows' modality as missing"
            )
        shape = (n,) + (1,) * (x.dim() - 1)
        features[spec.name] = torch.where(bad_rows.reshape(shape), torch.zeros((), dtype=x.dtype), x)
        unusable[:, j] = bad_rows
    if not bool(unusable.any()):
        return split
    if split.unusable is not None:
        unusable |= split.unusable.to(torch.bool)
    hopeless = int(unusable.all(dim=1).sum())
    if hopeless:
        raise DataError(
            f"{where}: {hopeless} of {n} rows hold NaN or inf in every modality; no prediction can be made "
            f"from them, so fix or remove them"
        )
    return SplitData(features=features, lengths=dict(split.lengths), target=split.target, ids=split.ids, unusable=unusable)


# ---------------------------------------------------------------- across splits


def _check_unique_ids(dataset: str, ids: dict[str, Tensor]) -> None:
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = int(torch.isin(ids[a], ids[b]).sum())
            if shared:
                raise DataError(
                    f"dataset {dataset}: {shared} sample ids appear in both split '{a}' and split '{b}'; "
                    f"ids must be unique across splits (training masks are drawn from them)"
                )


def _check_num_classes(dataset: str, task: TaskSpec, splits: dict[str, SplitData]) -> None:
    """More classes than samples cannot be learnt or evaluated; it is a metadata mistake that
    would otherwise size the output layer and the confusion matrices (e.g. 10^9 classes)."""
    if task.kind != "classification":
        return
    total = sum(len(s) for s in splits.values())
    k = int(task.num_classes or 0)
    if k > total:
        seen = max(int(s.target.max()) for s in splits.values()) + 1
        raise DataError(
            f"dataset {dataset}: num_classes={k} is implausible for {total} samples "
            f"(the targets use {seen} classes); check the dataset's metadata"
        )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return "nothing" if x is None else type(x).__name__


def _all_finite(x: Tensor) -> bool:
    """Whether every element is finite, from the minimum and maximum alone: NaN propagates
    through both reductions and ±inf is an extreme, so one pass with no [N, ...] bool mask."""
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low) & torch.isfinite(high))
