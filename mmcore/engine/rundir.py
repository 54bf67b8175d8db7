"""The run directory (DESIGN §6) and the manifest that makes a run reproducible.

``runs/<name>/<timestamp>/`` holds the resolved recipe, a manifest (versions, git revision,
device, data checksums, mask hash), ``metrics.jsonl``, ``eval.json``/``eval.csv`` and the
``last``/``best`` checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import platform
import resource
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.missing import mask_hash
from mmcore.types import SPLITS, SplitData

if TYPE_CHECKING:
    from mmcore.engine.session import Session


def new_run_dir(output: str, name: str, recipe: dict[str, Any]) -> Path:
    """A fresh, unique directory ``<output>/<name>/<YYYYmmdd-HHMMSS>[-k]`` holding the resolved
    ``recipe`` (the plan's ``output`` and ``name`` place it)."""
    base = Path(output) / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, k = base / stamp, 0
    try:
        base.mkdir(parents=True, exist_ok=True)
        # mkdir claims a name atomically, so two runs started in the same second each get their own
        # (an exists() check before mkdir let the second of two racing runs fail with "File exists")
        while True:
            try:
                path.mkdir()
                break
            except FileExistsError:
                k += 1
                path = base / f"{stamp}-{k}"
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


def device_name(device: torch.device) -> str:
    """The GPU's name, or the processor's on the CPU (``cpu`` when the platform does not say)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


NUMERICS = 1
"""How a recipe's numbers are computed, recorded in ``manifest.json`` (``numerics``). Raise it with
every change that makes the same recipe train to other numbers (the vector hash of
``benchmarks/tiny_equivalence.py`` or a sequence run changes): resuming a run across such a
change would mix two computations in one run. 1: recorded from 2026-12-08; runs written before
carry no record (``check_same_numerics``)."""


def write_manifest(
    path: Path,
    *,
    plugins: list[dict[str, Any]],
    device: str,
    device_name: str,
    checksums: dict[str, str],
    mask_hash: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    """``manifest.json`` from plain values (the caller reads them off its session and runtime)."""
    from mmcore._version import __version__

    manifest = {
        "mmcore": __version__,
        "plugins": plugins,
        "git": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "device_name": device_name,
        "data_sha256": checksums,
        "train_mask_sha256": mask_hash,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "numerics": NUMERICS,
        **(extra or {}),
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=1))


def check_same_data(session: "Session", run_dir: Path) -> None:
    """A resumed run continues on the data it started with: ``manifest.json``'s ``data_sha256``
    against the splits loaded now. The recipe is checked unedited, but a dataset's files can
    change under the same recipe, and the steps would go on with other rows in silence. Runs
    without recorded checksums are not checked (``mmcore eval`` warns instead: it only reads)."""
    from mmcore.engine.record import RunRecord

    recorded = RunRecord(run_dir).manifest.get("data_sha256")
    for split in SPLITS if isinstance(recorded, dict) else ():
        if isinstance(recorded.get(split), str) and recorded[split] != split_checksum(session.clean_split(split)):
            raise MMCoreError(f"{run_dir / 'manifest.json'}: 'data_sha256.{split}' differs from the {split} split loaded "
                              "now; expected the data the run started with: restore the dataset's files, or start a "
                              "new run with `mmcore run`")


def check_same_numerics(session: "Session", run_dir: Path) -> None:
    """A resumed run continues with the computation it started with (``NUMERICS``): another
    recorded version is refused; a run from before the record warns when it has sequence
    modalities, whose training batches ``frames: auto`` packs since 2026-12-07 (d33cd12), so such
    a run made earlier and resumed now ends with numbers no straight run gives (vector runs did
    not change)."""
    from mmcore.engine.record import RunRecord

    recorded = RunRecord(run_dir).manifest.get("numerics")
    if recorded is None:
        if any(spec.sequence for spec in session.specs):
            warnings.warn(f"{run_dir / 'manifest.json'}: no 'numerics' record (written before 2026-12-08); a run with "
                          "sequence modalities made before 2026-12-07 trains its remaining steps with frames packed "
                          "that it trained padded, so its numbers will differ from a straight run's; start it again "
                          "with `mmcore run` for exact numbers", stacklevel=2)
        return
    if recorded != NUMERICS:
        raise MMCoreError(f"{run_dir / 'manifest.json'}: 'numerics' is {recorded!r}, expected {NUMERICS} (this mmcore "
                          "computes the recipe's numbers differently from the one that started the run); start a new "
                          "run with `mmcore run`, or resume with the mmcore that wrote it")


def check_same_masks(run_dir: Path, fixed_masks: torch.Tensor | None) -> None:
    """A resumed run with fixed training masks continues on the masks it started with
    (``manifest.json``'s ``train_mask_sha256``): the same recipe and data can draw other masks
    under another mmcore (rows whose ``mar`` driver is unusable draw as under ``mcar`` since
    2026-12-08), and the remaining steps would train on other rows in silence. Runs without the
    record, or whose masks are redrawn every epoch, are not checked."""
    from mmcore.engine.record import RunRecord

    recorded = RunRecord(run_dir).manifest.get("train_mask_sha256")
    if fixed_masks is not None and isinstance(recorded, str) and recorded != mask_hash(fixed_masks):
        raise MMCoreError(f"{run_dir / 'manifest.json'}: 'train_mask_sha256' differs from the training masks drawn now; "
                          "expected the masks the run started with (this mmcore draws the recipe's missingness "
                          "differently); start a new run with `mmcore run`, or resume with the mmcore that wrote it")


def check_same_threads(session: "Session", run_dir: Path) -> None:
    """Warn when a CPU run resumes under another CPU thread count than it started with
    (``manifest.json``'s ``threads``): PyTorch's CPU kernels split some sums (LayerNorm's weight
    gradient, for one) by thread, so the remaining steps round differently and the run ends with
    numbers no straight run gives. Only a warning: the run is valid, just not bit-reproducible."""
    from mmcore.engine.record import RunRecord

    recorded, now = RunRecord(run_dir).manifest.get("threads"), torch.get_num_threads()
    if session.runtime.device.type == "cpu" and isinstance(recorded, int) and recorded != now:
        warnings.warn(f"{run_dir / 'manifest.json'}: the run started with {recorded} CPU threads and resumes with {now}; "
                      "its remaining steps round differently from a straight run's; resume with "
                      f"OMP_NUM_THREADS={recorded} for exact numbers", stacklevel=2)


def write_session_manifest(session: "Session", run_dir: Path, fixed_masks: torch.Tensor | None) -> None:
    """The manifest of a run built from ``session`` (plugins, device, data and mask hashes), and
    the dataset's input transform beside it (``mmcore.transform``), before any checkpoint records it."""
    from mmcore.transform import declared_transform, save_transform

    dataset = str(session.plan.dataset["type"])
    transform = declared_transform(session.dataset, session.specs, f"dataset '{dataset}'")
    save_transform(run_dir, transform, dataset)
    write_manifest(
        run_dir,
        plugins=[{"name": i.name, "version": i.version, "origin": i.origin, "error": i.error} for i in session.plugins.infos],
        device=str(session.runtime.device),
        device_name=device_name(session.runtime.device),
        checksums={s: split_checksum(session.clean_split(s)) for s in SPLITS},
        mask_hash=mask_hash(fixed_masks) if fixed_masks is not None else None,
        extra={
            "train_mask_policy": session.train_spec.policy,
            "seed": session.plan.seed,
            "world_size": session.runtime.world_size,
            "threads": torch.get_num_threads(),  # CPU numbers depend on it (check_same_threads)
            "precision": session.runtime.precision,
            "input_transform": transform.describe() if transform is not None else None,
            "recipe": session.recipe,  # as the run started: `mmcore resume` refuses an edited recipe.yaml
        },
    )
    from mmcore.after.card import write_model_card

    write_model_card(run_dir)  # without results yet; the end of training rewrites it


def cost_figures(session: "Session", train_rate: float, eval_rate: float) -> dict[str, Any]:
    """Cost figures for ``eval.json``: parameters per component, throughput, peak memory."""
    model = session.model
    parts = {"encoders": model.encoders, "imputer": model.imputer, "fusion": model.fusion}
    if model.unimodal_heads is not None:
        parts["unimodal_heads"] = model.unimodal_heads
    if getattr(model, "calibration", None) is not None:
        parts["calibration"] = model.calibration
    cost: dict[str, Any] = {
        "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()},
        "train_samples_per_s": round(train_rate, 2),
        "eval_items_per_s": round(eval_rate, 2),
        "peak_host_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "world_size": session.runtime.world_size,
    }
    if session.runtime.device.type == "cuda":
        cost["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(session.runtime.device) / 2**20, 1)
    return cost
