"""Opening a saved run for evaluation or prediction: its recipe, a session, verified weights.

The recipe is the run's own ``recipe.yaml`` with the caller's overrides on top (an evaluation
protocol, a device); ``build_session`` then builds exactly what training built, and the
selected checkpoint's weights are loaded after their sha256 is checked. Weights saved on a GPU
load on the CPU. A checkpoint written before checksums were recorded loads unverified, and the
caller is told so; a damaged or foreign checkpoint is a one-line error. So is a ``manifest.json``
that exists but cannot be read: it holds the data checksums the evaluation splits are checked
against, and that check is never skipped in silence (a run without a manifest has nothing to check).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from mmcore.data import sha256_file
from mmcore.errors import MMCoreError

CHECKPOINTS = ("best", "last")


@dataclass
class OpenRun:
    run_dir: Path
    recipe: dict[str, Any]  # resolved, overrides applied
    session: Any  # mmcore.engine.session.Session, weights loaded, model in eval mode
    checkpoint: Path
    model_sha256: str  # of model.safetensors, recorded in every evaluation's manifest
    verified: bool  # False for a checkpoint that predates recorded checksums
    warnings: list[str]
    transform: Any = None  # mmcore.transform.StoredTransform: the dataset's transform, as training stored it


def check_run_dir(run_dir: Path, checkpoint: str) -> Path:
    """The checkpoint directory of a run, or a one-line error saying what is wrong."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MMCoreError(f"{run_dir}: no such directory; expected a run directory (runs/<name>/<timestamp>)")
    if not (run_dir / "recipe.yaml").is_file():
        raise MMCoreError(f"{run_dir}: not a run directory (no recipe.yaml)")
    if checkpoint not in CHECKPOINTS:
        raise MMCoreError(f"--checkpoint: '{checkpoint}' is not one of: {', '.join(CHECKPOINTS)}")
    path = run_dir / "checkpoints" / checkpoint
    if not (path / "model.safetensors").is_file():
        present = [c for c in CHECKPOINTS if (run_dir / "checkpoints" / c / "model.safetensors").is_file()]
        hint = f"; available: {', '.join(present)} (--checkpoint)" if present else "; the run saved no checkpoint yet"
        raise MMCoreError(f"{run_dir}: no checkpoints/{checkpoint}{hint}")
    return path


def recorded_checksums(run_dir: Path) -> dict[str, str]:
    """``manifest.json``'s ``data_sha256`` (split -> sha256 of the clean split); ``{}`` for a run
    without a manifest. A manifest that is there but unreadable, not a JSON object, or with
    checksums of the wrong form is a one-line error naming the file, as for recipe.yaml and
    eval.json (``mmcore.engine.record``), read before the session is built."""
    from mmcore.engine.record import MANIFEST_FILE, read_json
    from mmcore.paths import require_file

    path = Path(run_dir) / MANIFEST_FILE
    if not os.path.lexists(path):
        return {}
    hint = "restore it, or remove it to go on without the check of the data against its data_sha256"
    try:
        require_file(path, str(path.name))  # never opens a FIFO
        data = read_json(path)
    except MMCoreError as exc:
        raise MMCoreError(f"{exc}; {hint}") from None
    if not isinstance(data, dict):
        raise MMCoreError(f"{path}: expected a JSON object (the run's manifest), got {type(data).__name__}; {hint}")
    sums = data.get("data_sha256")
    if sums is None:
        return {}
    if not isinstance(sums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in sums.items()):
        raise MMCoreError(f"{path}: 'data_sha256': expected a mapping of split names to sha256 strings; {hint}")
    return sums


def load_run_recipe(run_dir: Path, overrides: list[str], registry: Any = None) -> dict[str, Any]:
    from mmcore.plugins import get_registry
    from mmcore.recipe import load_recipe

    return load_recipe(run_dir / "recipe.yaml", list(overrides), registry or get_registry())


def recipe_device(run_dir: Path) -> str:
    from mmcore.recipe import load_yaml

    return str(load_yaml(run_dir / "recipe.yaml").get("device", "auto"))


def _load_weights(path: Path, model: Any) -> bool:
    """Verify and load; True when verified, False for a checkpoint without recorded checksums."""
    from mmcore.engine.checkpoint import load_model_weights

    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, ValueError):
        state = None
    if isinstance(state, dict) and "files" not in state:  # written before checksums were recorded
        load_model_weights(path, model, verified=True)
        return False
    load_model_weights(path, model)  # verifies every file's sha256 first; one-line CheckpointError otherwise
    return True


@contextmanager
def open_run(run_dir: Path, overrides: list[str] | None = None, checkpoint: str = "best",
             device: str | None = None) -> Iterator[OpenRun]:
    """A session of a saved run with the checkpoint's weights, for the duration of the block."""
    from mmcore.engine.calling import callers_random_state
    from mmcore.engine.rundir import split_checksum
    from mmcore.engine.runtime import runtime_for
    from mmcore.engine.session import build_session

    run_dir = Path(run_dir)
    path = check_run_dir(run_dir, checkpoint)
    recorded = recorded_checksums(run_dir)
    extra = [f"device={device}"] if device else []
    recipe = load_run_recipe(run_dir, [*(overrides or []), *extra])
    warnings: list[str] = []
    if device is None and str(recipe["device"]).startswith("cuda") and not torch.cuda.is_available():
        # a run trained on a GPU, evaluated where there is none: its weights load on the CPU
        recipe = load_run_recipe(run_dir, [*(overrides or []), "device=cpu"])
        warnings.append(f"the run was trained with device={recipe_device(run_dir)}; no CUDA here, evaluating on the CPU")
    with runtime_for(recipe) as runtime, callers_random_state(runtime.device):  # build_session seeds torch
        session = build_session(recipe, runtime)
        verified = _load_weights(path, session.model)
        if not verified:
            warnings.append(f"{path}: written before checkpoints recorded checksums; loaded without verification")
        session.model.eval()
        for split, digest in recorded.items():
            if split in session.splits and split in ("val", "test") and split_checksum(session.clean_split(split)) != digest:
                warnings.append(f"the {split} split differs from the one the run was trained with (manifest.json data_sha256)")
        stored = _stored_transform(run_dir, session, warnings)
        yield OpenRun(run_dir, recipe, session, path, sha256_file(path / "model.safetensors"), verified, warnings, stored)


def _stored_transform(run_dir: Path, session: Any, warnings: list[str]) -> Any:
    """The run's stored input transform; when the dataset now declares a different one (its
    training data changed), the evaluation splits are mapped back to raw features and through
    the stored transform, so the model sees inputs as training prepared them."""
    from mmcore.transform import declared_transform, load_transform

    stored = load_transform(run_dir)
    if stored.transform is None:
        return stored
    where = f"dataset '{session.recipe['dataset']['type']}'"
    current = declared_transform(session.dataset, session.specs, where)
    if current is None or current.same_as(stored.transform):
        return stored
    for split in ("val", "test"):  # the clean copies too (frames not dropped): frame curves read them
        for splits in (session.splits, session.clean):
            if split in splits:
                splits[split] = stored.transform.apply_split(current.apply_split(splits[split], inverse=True))
    warnings.append("the dataset's input transform differs from the one stored with the run; "
                    "evaluation applies the stored one (transform.json)")
    return stored
