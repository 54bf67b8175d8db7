"""The run directory (DESIGN §6) and the manifest that makes a run reproducible.

``runs/<name>/<timestamp>/`` holds the resolved recipe, a manifest (versions, git revision,
device, data checksums, mask hash), ``metrics.jsonl``, ``eval.json``/``eval.csv`` and the
``last``/``best`` checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.types import SplitData


def new_run_dir(recipe: dict[str, Any]) -> Path:
    """A fresh, unique directory ``<output>/<name>/<YYYYmmdd-HHMMSS>[-k]``."""
    base = Path(recipe["output"]) / recipe["name"]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / stamp
    k = 1
    while path.exists():
        path = base / f"{stamp}-{k}"
        k += 1
    try:
        path.mkdir(parents=True)
        (path / "recipe.yaml").write_text(dump_yaml(recipe))
    except OSError as exc:
        raise MMCoreError(f"output: cannot create the run directory {path}: {exc.strerror or exc}") from exc
    return path


def split_checksum(split: SplitData) -> str:
    """sha256 over every tensor of a split, in a fixed order (features, lengths, target, ids)."""
    digest = hashlib.sha256()
    parts = [*sorted(split.features.items()), *sorted(("len." + k, v) for k, v in split.lengths.items())]
    parts += [("target", split.target), ("ids", split.ids)]
    for name, tensor in parts:
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        # hashed through the buffer protocol: no bytes copy of the split (a CPU tensor that is
        # already contiguous is not copied at all); the digest is the same as over tobytes()
        digest.update(tensor.detach().cpu().contiguous().numpy())
    return digest.hexdigest()


def git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_manifest(
    path: Path,
    *,
    plugins: list[dict[str, Any]],
    device: torch.device,
    checksums: dict[str, str],
    mask_hash: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    from mmcore import __version__

    manifest = {
        "mmcore": __version__,
        "plugins": plugins,
        "git": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "data_sha256": checksums,
        "train_mask_sha256": mask_hash,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))
