"""Contract check of datasets: split shapes, unique ids, padding, determinism."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch

from mmcore.datacheck import storage_problem
from mmcore.registry import Component
from mmcore.testing._common import (
    Factory,
    _as_component,
    _Ctx,
    _finite,
    option_sets,
)
from mmcore.types import (
    Dataset,
    ModalitySpec,
    SplitData,
    TaskSpec,
)

# ---------------------------------------------------------------------------------------- dataset


def check_dataset(component: Component | Factory, *, options: dict[str, Any] | None = None) -> None:
    """Modality and task specs, every split's tensors (shapes, dtypes, zero padding, valid
    targets), ids unique across splits, and the same tensors when built twice."""
    c = _as_component(component, "dataset")
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            _check_dataset_with(_Ctx(c, f"options {opts}"), opts)


def _check_dataset_with(ctx: _Ctx, opts: dict[str, Any]) -> None:
    ds = ctx.build({}, opts, seed=0)
    ctx.expect(isinstance(ds, Dataset), "result lacks modalities, task or split()")
    specs = ds.modalities
    ok = bool(specs) and all(isinstance(s, ModalitySpec) for s in specs)
    ctx.expect(ok, "modalities must be a non-empty list of ModalitySpec")
    names = [s.name for s in specs]
    ctx.expect(len(set(names)) == len(names), f"modality names are not unique: {names}")
    plain = all(n and "." not in n and not any(ch.isspace() for ch in n) for n in names)
    ctx.expect(plain, f"modality names must be plain words without dots (recipes use them as keys): {names}")
    for s in specs:
        ok = s.dim >= 1 and (not s.sequence or (s.max_len or 0) >= 1)
        ctx.expect(ok, f"modality '{s.name}' needs dim >= 1 (and max_len >= 1 if a sequence)")
    task = ds.task
    ctx.expect(isinstance(task, TaskSpec), f"task is {type(task).__name__}, not TaskSpec")
    ctx.expect(task.kind in ("classification", "regression"), f"task kind {task.kind!r}; expected 'classification' or 'regression'")
    if task.kind == "classification":
        classes = task.num_classes or 0
        ctx.expect(classes >= 2, f"a classification task needs num_classes >= 2, got {task.num_classes}")
        names_ok = task.class_names is None or len(task.class_names) == classes
        ctx.expect(names_ok, "class_names must have num_classes entries")
    splits = {name: _check_split(ctx, ds, name) for name in ("train", "val", "test")}
    ids = torch.cat([s.ids for s in splits.values()])
    unique = int(torch.unique(ids).numel()) == int(ids.numel())
    ctx.expect(unique, "sample ids are not unique across train, val and test")
    again, train = ctx.build({}, opts, seed=1).split("train"), splits["train"]
    same = torch.equal(again.ids, train.ids) and torch.equal(again.target, train.target)
    same = same and all(torch.equal(again.features[k], v) for k, v in train.features.items())
    ctx.expect(same, "building twice gives different train tensors (masks follow ids: data must be stable)")
    _check_as_a_run_does(ctx, ds, splits, opts)
    if getattr(ds, "input_transform", None) is not None:
        _check_transform(ctx, ds, splits)
    if callable(getattr(ds, "oracle", None)):
        _check_oracle(ctx, ds, splits["test"])


def _check_as_a_run_does(ctx: _Ctx, ds: Dataset, splits: dict[str, SplitData], opts: dict[str, Any]) -> None:
    """The checks a run makes of the loaded splits (``mmcore.datacheck``: e.g. ``unusable``,
    ``num_classes`` against the sample count) and of ``describe()`` against the built dataset
    (``mmcore validate`` checks recipes by ``describe()`` alone, so the two must agree)."""
    from mmcore.datacheck import check_splits, described_mismatch
    from mmcore.errors import DataError
    from mmcore.recipe.crosschecks import described_by

    specs = list(ds.modalities)
    try:
        check_splits(ctx.c.name, splits, specs, ds.task)
    except DataError as exc:
        ctx.expect(False, str(exc))
    described = described_by(getattr(ctx.c.factory, "describe", None), opts)
    mismatch = described_mismatch(ctx.c.name, described, specs, ds.task) if described is not None else None
    if mismatch is not None:  # a run warns and goes on with the loaded data; so does a plugin's own test suite
        warnings.warn(f"{mismatch} (validate checks recipes by describe(), a run by the loaded dataset; a later "
                      "version of the contract suite will fail on it)", FutureWarning, stacklevel=2)


def _check_oracle(ctx: _Ctx, ds: Dataset, split: SplitData) -> None:
    """The optional ``oracle(split, masks)``: None, or one row per condition given, each a
    non-empty ``{metric: finite value}``, accuracy-like metrics in [0, 1] and errors >= 0, and a
    ceiling no lower with every modality present than with the first one alone (within four
    standard errors where a row gives ``<metric>_se``, a Monte Carlo estimate's)."""
    n, m = len(split), len(ds.modalities)
    full = torch.ones((n, m), dtype=torch.bool)
    first = torch.zeros((n, m), dtype=torch.bool)
    first[:, 0] = True
    table = ds.oracle(split, {"full": full, "first": first})
    if table is None:
        return
    ctx.expect(isinstance(table, dict) and set(table) == {"full", "first"},
               f"oracle() must return one row per condition given (full, first), got {table!r}")
    for condition, row in table.items():
        ok = isinstance(row, dict) and bool(row) and all(isinstance(v, float) and math.isfinite(v) for v in row.values())
        ctx.expect(ok, f"oracle() row '{condition}' must be a non-empty {{metric: finite float}}, got {row!r}")
        for metric, value in row.items():
            bounded = metric in ("mse", "mae") or 0.0 <= value <= 1.0
            ctx.expect(bounded and value >= 0.0, f"oracle() row '{condition}': {metric} = {value} is out of range")
    for metric in [k for k in table["full"] if k in table["first"] and not k.endswith("_se")]:
        sign = -1.0 if metric in ("mse", "mae") else 1.0  # errors: lower is better
        slack = 4 * (table["full"].get(f"{metric}_se", 0.0) + table["first"].get(f"{metric}_se", 0.0))  # Monte Carlo
        better = sign * (table["full"][metric] - table["first"][metric]) >= -1e-9 - slack
        ctx.expect(better, f"oracle(): the ceiling with every modality is worse than with '{ds.modalities[0].name}' alone ({metric})")


def _check_transform(ctx: _Ctx, ds: Dataset, splits: dict[str, SplitData]) -> None:
    """The declared input transform: well formed, and a round trip — model inputs mapped back to
    raw features and forward again, and through the run directory's files — changes nothing."""
    import tempfile

    from mmcore.transform import InputTransform, TransformError, declared_transform, load_transform, save_transform

    try:
        transform = declared_transform(ds, list(ds.modalities), "input_transform()")
    except TransformError as exc:
        ctx.expect(False, str(exc))
        return
    if transform is None:
        return
    for name, split in splits.items():
        back = transform.apply_split(transform.apply_split(split, inverse=True))
        for m, x in split.features.items():
            ok = torch.allclose(back.features[m], x, rtol=1e-4, atol=1e-4)
            ctx.expect(ok, f"input_transform(): split '{name}' modality '{m}' changes in a raw -> model round trip")
    with tempfile.TemporaryDirectory() as tmp:
        save_transform(Path(tmp), transform, ctx.c.name)
        stored = load_transform(Path(tmp)).transform
    ok = isinstance(stored, InputTransform) and stored.same_as(transform)
    ctx.expect(ok, "input_transform(): not the same after saving to and loading from a run directory")


def _check_split(ctx: _Ctx, ds: Dataset, name: str) -> SplitData:
    try:
        sd = ds.split(name)
    except (Exception, SystemExit) as exc:  # a run names it in one line too (sys.exit included)
        ctx.expect(False, f"split('{name}') raised {type(exc).__name__}: {exc}")
    ctx.expect(isinstance(sd, SplitData), f"split('{name}') returned {type(sd).__name__}, not SplitData")
    for what, t in [("ids", sd.ids), ("target", sd.target), *((f"lengths of '{k}'", v) for k, v in sd.lengths.items())]:
        ctx.expect(isinstance(t, torch.Tensor), f"split '{name}' {what} are {type(t).__name__}, not a tensor")
        ctx.expect(storage_problem(t) is None, f"split '{name}' {what}: {storage_problem(t)}")
    n = len(sd)
    ctx.expect(n > 0, f"split '{name}' is empty")
    names = sorted(s.name for s in ds.modalities)
    ctx.expect(sorted(sd.features) == names, f"split '{name}' features {sorted(sd.features)} != modalities {names}")
    seq = sorted(s.name for s in ds.modalities if s.sequence)
    ctx.expect(sorted(sd.lengths) == seq, f"split '{name}' lengths {sorted(sd.lengths)} != sequence modalities {seq}")
    for spec in ds.modalities:
        x, at = sd.features[spec.name], f"split '{name}' modality '{spec.name}'"
        ctx.expect(isinstance(x, torch.Tensor), f"{at}: features are {type(x).__name__}, not a tensor")
        ctx.expect(storage_problem(x) is None, f"{at}: features: {storage_problem(x)}")
        shape = (n, spec.max_len, spec.dim) if spec.sequence else (n, spec.dim)
        ok = tuple(x.shape) == shape and x.dtype == torch.float32  # the engine trains in float32 (bf16 by autocast)
        ctx.expect(ok, f"{at}: {x.dtype} {tuple(x.shape)}, expected torch.float32 {shape} (mmcore.data.to_split converts)")
        ctx.expect(_finite(x), f"{at} has non-finite features")
        if spec.sequence:
            lengths = sd.lengths[spec.name]
            ctx.expect(lengths.dtype == torch.int64 and tuple(lengths.shape) == (n,), f"{at}: lengths must be int64 [{n}]")
            in_range = bool(((lengths >= 0) & (lengths <= x.shape[1])).all())
            ctx.expect(in_range, f"{at}: lengths outside [0, {x.shape[1]}]")
            padding = torch.arange(x.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
            ctx.expect(bool((x[padding] == 0).all()), f"{at} is not zero past its lengths")
    ctx.expect(sd.ids.dtype == torch.int64 and tuple(sd.ids.shape) == (n,), f"split '{name}' ids must be int64 [{n}]")
    ctx.expect(tuple(sd.target.shape) == (n,), f"split '{name}' target shape {tuple(sd.target.shape)}, expected ({n},)")
    if ds.task.kind == "classification":
        classes = int(ds.task.num_classes or 0)
        ok = sd.target.dtype == torch.int64 and bool(((sd.target >= 0) & (sd.target < classes)).all())
        ctx.expect(ok, f"split '{name}' targets must be int64 class indices in [0, {classes})")
    else:
        ok = sd.target.is_floating_point() and _finite(sd.target)
        ctx.expect(ok, f"split '{name}' regression targets must be finite floats")
    return sd
