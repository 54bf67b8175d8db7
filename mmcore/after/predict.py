"""``mmcore predict RUN --input FILE --out preds.csv``: a saved model on new inputs.

The input is one split in the ``corpora.features`` safetensors layout — ``x.<modality>`` ([N, D]
or [N, T, D]), optional ``len.<modality>`` and ``ids`` (``target`` and metadata are ignored) —
or a features folder, whose ``<split>.safetensors`` is read. Any subset of the run's modalities
may be given. A modality is absent for a row when the file lacks it, when ``--absent`` names it,
or when its row is entirely NaN; a row with some NaN values is an error (absent, with a note, for
a run with ``data.nonfinite: absent``, as its own splits counted such rows), as is a row with no
modality present. Frames past a sequence's ``len.<modality>`` are padding: never read, NaN allowed
(a row NaN up to its length is absent).
Shapes and dtypes are checked against the run's modality specs.

The output CSV has one row per sample: ``id``, the prediction (class index and, when the
dataset names its classes, the class name; or the regression value), the class probabilities
(softmax of the fusion head's logits) and ``present.<modality>`` (1/0). The model runs exactly
as the engine evaluates a condition: encode, zero absent rows, impute, fuse.

Input form: by default (``--input-form raw``) rows are the dataset's raw features and the run's
stored input transform (``mmcore.transform``, e.g. standardisation with the training split's
statistics) is applied first, exactly as the dataset prepared its splits; ``--input-form model``
takes rows already in the model's input space. A run whose dataset declares no transform takes
its inputs as given, and the command says so.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmcore.after.runs import open_run
from mmcore.errors import DataError, MMCoreError
from mmcore.types import ModalitySpec, SplitData

INPUT_CONDITION = "input"  # the one "condition" of a prediction: the availability the input gives


def read_input(path: Path, specs: list[ModalitySpec], absent: list[str], split: str = "test", nonfinite: str = "error",
               notes: list[str] | None = None) -> tuple[SplitData, Tensor]:
    """The input as a split on the CPU (absent modalities zero) and its presence mask [N, M].

    ``nonfinite``: the run's ``data.nonfinite``. Under ``absent`` a row with some NaN or inf is
    absent, as the run's own evaluation counted such rows (``notes`` says how many); under
    ``error`` it is refused."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.is_dir():
        path = path / f"{split}.safetensors"
    if not path.is_file():
        raise MMCoreError(f"--input: {path}: no such file (expected a .safetensors file or a features folder)")
    names = [s.name for s in specs]
    unknown = [m for m in absent if m not in names]
    if unknown:
        raise MMCoreError(f"--absent: '{unknown[0]}' is not a modality of this run; modalities: {', '.join(names)}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"--input: {path}: not a readable safetensors file ({type(exc).__name__})") from None
    given = [k[2:] for k in tensors if k.startswith("x.")]
    for m in given:
        if m not in names:
            raise DataError(f"{path}: 'x.{m}' is not a modality of this run; modalities: {', '.join(names)}")
    if not given:
        raise DataError(f"{path}: no x.<modality> tensors; the run's modalities: {', '.join(names)}")
    for spec in specs:  # ranks first: the row count is read off the first tensor's shape
        _check_rank(path, tensors, spec)
    n = int(tensors[f"x.{given[0]}"].shape[0])
    if n == 0:
        raise DataError(f"{path}: 'x.{given[0]}' has no rows")
    features: dict[str, Tensor] = {}
    lengths: dict[str, Tensor] = {}
    present = torch.zeros(n, len(specs), dtype=torch.bool)
    for i, spec in enumerate(specs):
        x, length = _modality(path, tensors, spec, n, nonfinite, notes)
        features[spec.name] = x
        if spec.sequence:
            lengths[spec.name] = length
        if spec.name in given and spec.name not in absent:
            present[:, i] = ~_all_nan_rows(x)
        features[spec.name] = torch.nan_to_num(x, nan=0.0) * present[:, i].reshape(-1, *[1] * (x.dim() - 1))
    ids = _ids(path, tensors, n)
    empty = (~present.any(1)).nonzero().flatten()
    if len(empty):
        raise DataError(f"{path}: sample id {int(ids[empty[0]])} has no modality present ({len(empty)} such rows)")
    return SplitData(features, lengths, torch.zeros(n, dtype=torch.int64), ids), present


def _check_rank(path: Path, tensors: dict[str, Tensor], spec: ModalitySpec) -> None:
    """A one-line error for an ``x.<modality>`` of the wrong rank (a 0-d scalar, a vector for a
    sequence), before anything reads its rows."""
    key = f"x.{spec.name}"
    if key not in tensors:
        return
    rank = 3 if spec.sequence else 2
    x = tensors[key]
    if x.dim() != rank:
        want = f"[N, T<={int(spec.max_len or 1)}, {spec.dim}]" if spec.sequence else f"[N, {spec.dim}]"
        raise DataError(f"{path}: '{key}' has shape {list(x.shape)} ({x.dim()}-dimensional); "
                        f"this run's '{spec.name}' expects {want}")


def _modality(path: Path, tensors: dict[str, Tensor], spec: ModalitySpec, n: int, nonfinite: str = "error",
              notes: list[str] | None = None) -> tuple[Tensor, Tensor]:
    """The modality's features as float32 in the spec's shape (all NaN when absent) and lengths."""
    key = f"x.{spec.name}"
    t = int(spec.max_len or 1)
    shape = (n, t, spec.dim) if spec.sequence else (n, spec.dim)
    want = f"[{n}, T<={t}, {spec.dim}]" if spec.sequence else f"[{n}, {spec.dim}]"
    if key not in tensors:
        return torch.full(shape, float("nan")), torch.ones(n, dtype=torch.int64)
    x = tensors[key]
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise DataError(f"{path}: '{key}' has dtype {x.dtype}; expected floating-point features")
    ok = x.dim() == len(shape) and x.shape[0] == n and x.shape[-1] == spec.dim and (not spec.sequence or x.shape[1] <= t)
    if not ok:
        raise DataError(f"{path}: '{key}' has shape {list(x.shape)}; this run's '{spec.name}' expects {want}")
    x = x.to(torch.float32)
    length = torch.ones(n, dtype=torch.int64)
    if spec.sequence:
        length = tensors.get(f"len.{spec.name}", torch.full((n,), x.shape[1], dtype=torch.int64))
        if length.shape != (n,) or length.is_floating_point():
            raise DataError(f"{path}: 'len.{spec.name}' must be [{n}] integers, got {list(length.shape)} {length.dtype}")
        length = length.to(torch.int64)
        if int(length.min()) < 0 or int(length.max()) > x.shape[1]:
            raise DataError(f"{path}: 'len.{spec.name}' holds values outside 0..{x.shape[1]}")
        if x.shape[1] < t:
            x = torch.cat([x, x.new_zeros(n, t - x.shape[1], spec.dim)], dim=1)
        x = _zero_padding(x, length)  # kept as given (0 too) until to_model_inputs has applied the transform
    nan = torch.isnan(x).reshape(n, -1)
    if nonfinite == "absent":
        return _unusable_absent(x, nan, key, notes), length
    partial = (nan.any(1) & ~nan.all(1)).nonzero().flatten()
    if len(partial):
        raise DataError(f"{path}: '{key}' row {int(partial[0])} is partly NaN; a row is either all NaN (absent) or finite")
    if torch.isinf(x).any():
        raise DataError(f"{path}: '{key}' holds infinite values")
    return x, length


def _unusable_absent(x: Tensor, nan: Tensor, key: str, notes: list[str] | None) -> Tensor:
    """Under ``data.nonfinite: absent``: a row holding NaN or inf made all NaN (absent), as
    ``mmcore.datacheck`` marks such rows unusable in the run's splits."""
    bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(1) & ~nan.all(1)
    if bool(bad.any()) and notes is not None:
        notes.append(f"'{key}': {int(bad.sum())} rows with NaN or inf taken as absent (the run's data.nonfinite: absent)")
    return x.masked_fill(bad.reshape(-1, *[1] * (x.dim() - 1)), float("nan"))


def _zero_padding(x: Tensor, length: Tensor) -> Tensor:
    """Frames past a row's length as zeros, as the datasets pad: the frame 0 of an empty row would
    otherwise be read as data (its length becomes 1), and NaN padding would make a present row
    "partly NaN". A row whose frames are all NaN up to its length (absent; zero padding after
    them is not read either) is made all NaN."""
    padding = torch.arange(x.shape[1]).unsqueeze(0) >= length.unsqueeze(1)
    nan_frames = torch.isnan(x).all(-1) | padding
    absent = _all_nan_rows(x) | (nan_frames.all(1) & (length > 0))
    x = x.masked_fill((padding & ~absent.unsqueeze(1)).unsqueeze(-1), 0.0)
    return x.masked_fill(absent.reshape(-1, 1, 1), float("nan"))


def _all_nan_rows(x: Tensor) -> Tensor:
    return torch.isnan(x).reshape(x.shape[0], -1).all(1)


def _ids(path: Path, tensors: dict[str, Tensor], n: int) -> Tensor:
    if "ids" not in tensors:
        return torch.arange(n, dtype=torch.int64)
    ids = tensors["ids"]
    if ids.shape != (n,) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise DataError(f"{path}: 'ids' must be [{n}] integers, got {list(ids.shape)} {ids.dtype}")
    if len(torch.unique(ids)) != n:
        raise DataError(f"{path}: 'ids' are not unique")
    return ids.to(torch.int64)


INPUT_FORMS = ("raw", "model")


def to_model_inputs(data: SplitData, present: Tensor, stored: Any, input_form: str, source: Path | str,
                    notes: list[str]) -> SplitData:
    """``data`` as the model's inputs: the run's stored input transform applied to present rows
    (``raw``), or nothing (``model``). Refuses rows the transform cannot take (non-finite results).
    Then an empty sequence becomes one zero frame, as the datasets load it: after the transform,
    which keeps every frame of a row of length 0 at zero (with length 1 it would map frame 0)."""
    out = _transformed(data, present, stored, input_form, source, notes)
    lengths = {m: length.clamp(min=1) for m, length in out.lengths.items()}
    return SplitData(out.features, lengths, out.target, out.ids, out.unusable)


def _transformed(data: SplitData, present: Tensor, stored: Any, input_form: str, source: Path | str,
                 notes: list[str]) -> SplitData:
    """``to_model_inputs`` before the lengths are made at least 1."""
    if input_form not in INPUT_FORMS:
        raise MMCoreError(f"--input-form: '{input_form}' is not one of: {', '.join(INPUT_FORMS)}")
    if input_form == "model":
        return data
    if stored is None or not stored.present:
        notes.append("this run predates stored input transforms: inputs are fed to the model as given "
                     "(prepare them as the dataset prepared its splits, and say --input-form model)")
        return data
    if stored.transform is None:
        notes.append("the run's dataset declares no input transform: inputs are fed to the model as given")
        return data
    out = stored.transform.apply_split(data)
    for i, (m, x) in enumerate(out.features.items()):  # read_input keeps the modality order of present's columns
        rows = present[:, i].to(x.device)
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(1) & rows
        if bool(bad.any()):
            raise DataError(f"{source}: 'x.{m}' row {int(bad.nonzero()[0])}: the run's input transform gives "
                            "non-finite values (values out of range for the stored statistics?)")
        out.features[m] = x * rows.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)  # absent rows stay zero
    return out


def predict_file(run_dir: Path, input_path: Path, out: Path, *, absent: list[str] | None = None,
                 checkpoint: str = "best", device: str | None = None, split: str = "test",
                 input_form: str = "raw", notes: list[str] | None = None) -> int:
    """Write predictions for ``input_path`` to ``out`` (CSV); returns the number of rows.

    ``input_form``: ``raw`` (default) applies the run's stored input transform to the rows,
    ``model`` takes them as the model's inputs. ``notes`` receives what the user should know.
    """
    from mmcore.engine.evaluate import predict

    if Path(out).suffix.lower() != ".csv":
        raise MMCoreError(f"--out {out}: expected a .csv file name")
    if input_form not in INPUT_FORMS:
        raise MMCoreError(f"--input-form: '{input_form}' is not one of: {', '.join(INPUT_FORMS)}")
    notes = notes if notes is not None else []
    with open_run(run_dir, [], checkpoint, device) as run:
        s = run.session
        notes.extend(run.warnings)
        data, present = read_input(input_path, s.specs, list(absent or []), split, run.recipe["data"]["nonfinite"], notes)
        data = to_model_inputs(data, present, run.transform, input_form, input_path, notes)
        batch = s.plan.train.eval_batch_size
        outputs = predict(s.model, data.to(s.runtime.device), {INPUT_CONDITION: present.to(s.runtime.device)},
                          batch, s.runtime.autocast)[INPUT_CONDITION].float().cpu()
        task = s.task
    _write_csv(out, data, present, outputs, task, s.specs)
    return len(data)


def _write_csv(out: Path, data: SplitData, present: Tensor, outputs: Tensor, task: Any, specs: list[ModalitySpec]) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        present_cols = [f"present.{spec.name}" for spec in specs]
        if task.kind == "classification":
            classes = list(task.class_names or [str(c) for c in range(int(task.num_classes or 0))])
            writer.writerow(["id", "prediction", "class", *[f"prob.{c}" for c in classes], *present_cols])
            probs = torch.softmax(outputs, dim=-1)
            for i, row in enumerate(probs.tolist()):
                k = int(outputs[i].argmax())
                writer.writerow([int(data.ids[i]), k, classes[k], *[repr(p) for p in row], *present[i].int().tolist()])
        else:
            writer.writerow(["id", "prediction", *present_cols])
            for i, value in enumerate(outputs.squeeze(-1).tolist()):
                writer.writerow([int(data.ids[i]), repr(value), *present[i].int().tolist()])
