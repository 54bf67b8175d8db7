"""Checkpoints without pickle that survive any crash.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the optimiser's
per-parameter tensors flattened to ``state.<param index>.<key>``), ``rng.safetensors`` (the RNG
states; under data parallelism every rank's too, ``mmcore.engine.ddp``) and ``state.json``: the
``TrainState``, the optimiser's hyper-parameters, and the sha256 and size of each tensor file,
which loading verifies.

Writing: every file goes into a sibling ``.<name>.tmp-<pid>`` directory and is fsynced; the old
checkpoint is renamed aside to ``.<name>.old-<pid>``, the new one into place, and the old one is
removed. A crash therefore leaves at least one complete checkpoint, possibly under a temporary
name; ``recover`` (run before every resume and load) puts the newest complete one back in place
and removes the leftovers.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mmcore.data import sha256_file
from mmcore.engine.optimizer_state import changed_setting, dtype_name, state_problem
from mmcore.engine.state import TrainState
from mmcore.errors import MMCoreError
from mmcore.transform import FILES as TRANSFORM_FILES

STATE_FILE = "state.json"
TENSOR_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
# files of the run directory (two levels up) that a checkpoint's weights depend on: the dataset's
# input transform. Recorded in state.json under "run_files" when present, verified like the rest.
RUN_FILES = TRANSFORM_FILES
NAMES = ("last", "best")


class CheckpointError(MMCoreError):
    """A checkpoint file is missing, damaged or does not match the model."""


# --- optimiser and RNG as tensors + JSON ---------------------------------------------------------
def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict[str, torch.Tensor]:
    """The global RNG states that dropout and sampling draw from."""
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    return out


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(states["torch"])
    cuda = [states[k] for k in sorted(k for k in states if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --- writing ------------------------------------------------------------------------------------
def _digest(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
                    rank_rng: dict[str, torch.Tensor] | None = None) -> None:
    """Write a complete checkpoint at ``path``: aside, fsynced, then renamed into place.
    ``rank_rng``: every rank's random state under data parallelism (``mmcore.engine.ddp.rank_rng``).

    Any OS error (disk full, read-only folder) leaves the previous checkpoint as it was, removes
    the partial one and becomes a one-line ``CheckpointError``.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors = {
            "model.safetensors": {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()},
            "optimizer.safetensors": opt_tensors,
            "rng.safetensors": {k: v.contiguous() for k, v in {**rng_state(), **(rank_rng or {})}.items()},
        }
        files = {}
        for name, content in tensors.items():
            save_file(content, str(tmp / name))
            _fsync(tmp / name)
            files[name] = _digest(tmp / name)
        run_files = {name: _digest(path.parent.parent / name) for name in RUN_FILES if (path.parent.parent / name).is_file()}
        payload = {**state.to_json(), "optimizer": opt_meta, "files": files, "run_files": run_files}
        with open(tmp / STATE_FILE, "w") as fh:
            fh.write(json.dumps(payload, indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            old.rename(path)  # put the previous checkpoint back
        raise CheckpointError(write_failure(path, exc)) from exc


def write_failure(path: Path, exc: BaseException) -> str:
    """One line for a failed checkpoint write: the folder, the cause and the free space left there."""
    text = str(exc).strip()
    cause = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
    free = free_space(path.parent)
    room = f"; {free} free in {path.parent}" if free else ""
    return f"{path.parent}: could not write the checkpoint {path.name} ({cause}){room}; the previous checkpoints are intact"


def free_space(folder: Path) -> str:
    """Free space of the file system holding ``folder``, human-readable ('' when unknown)."""
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return ""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return ""


# --- recovery and verification ------------------------------------------------------------------
def _read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: a file, expected a checkpoint folder (state.json and the tensor files)")
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (not a complete checkpoint)")
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable or not JSON ({type(exc).__name__})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or not isinstance(data.get("optimizer"), dict):
        raise CheckpointError(f"{file}: not a checkpoint state (expected an object with 'files' and 'optimizer')")
    if data.get("run_files") is not None and not isinstance(data["run_files"], dict):
        raise CheckpointError(f"{file}: 'run_files' is a {type(data['run_files']).__name__}, expected an object")
    return data


def verify(path: Path) -> dict[str, Any]:
    """The checkpoint's state after checking every tensor file's size and sha256."""
    path = Path(path)
    data = _read_state(path)
    for name in TENSOR_FILES:
        file = path / name
        expected = data["files"].get(name)
        if not file.is_file():
            raise CheckpointError(f"{file}: missing")
        if not isinstance(expected, dict) or "sha256" not in expected or "size" not in expected:
            raise CheckpointError(f"{path / STATE_FILE}: no checksum recorded for {name}")
        actual = _digest(file)
        if actual["size"] != expected["size"]:
            raise CheckpointError(f"{file}: {actual['size']} bytes, the checkpoint recorded {expected['size']} (truncated or damaged)")
        if actual["sha256"] != expected["sha256"]:
            raise CheckpointError(f"{file}: sha256 does not match the checkpoint's record (damaged)")
    _verify_run_files(path, data.get("run_files") or {})
    return data


def _verify_run_files(path: Path, recorded: dict[str, Any]) -> None:
    """The run-level files this checkpoint recorded (the input transform) are the ones it was saved with."""
    for name, expected in recorded.items():
        file = path.parent.parent / name
        if name not in RUN_FILES or not isinstance(expected, dict):
            raise CheckpointError(f"{path / STATE_FILE}: unexpected run file record '{name}'")
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (the checkpoint {path.name} recorded it)")
        if _digest(file) != {"sha256": expected.get("sha256"), "size": expected.get("size")}:
            raise CheckpointError(f"{file}: sha256 does not match checkpoint {path.name}'s record (changed or damaged)")


def _is_complete(path: Path) -> bool:
    try:
        verify(path)
        return True
    except CheckpointError:
        return False


def recover(ckpt_dir: Path) -> list[str]:
    """Put the newest complete checkpoint of each name in place; remove temporary leftovers.

    A crash between the two renames of ``save_checkpoint`` leaves ``.<name>.old-PID`` (the
    previous checkpoint) and ``.<name>.tmp-PID`` (the new one, complete when its files verify)
    and no ``<name>``. Returns one line per action, for the log.
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    actions = []
    for name in NAMES:
        target = ckpt_dir / name
        leftovers = sorted(ckpt_dir.glob(f".{name}.tmp-*")) + sorted(ckpt_dir.glob(f".{name}.old-*"))
        if not target.exists():
            complete = [p for p in leftovers if _is_complete(p)]
            # the newest complete one: a finished tmp is newer than any old
            if complete:
                newest = max(complete, key=lambda p: (int(_read_state(p).get("step", -1)), ".tmp-" in p.name))
                newest.rename(target)
                actions.append(f"recovered checkpoints/{name} from {newest.name}")
        for leftover in leftovers:
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
                actions.append(f"removed leftover {leftover.name}")
    return actions


# --- loading ------------------------------------------------------------------------------------
def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def load_model_weights(path: Path, model: nn.Module, *, verified: bool = False) -> None:
    """Load ``model.safetensors`` strictly (every key and shape must match the model).

    The checkpoint is verified first unless the caller just did; weights saved on a GPU load
    on the CPU (safetensors files hold plain tensors, ``load_state_dict`` copies to the model's device).
    """
    path = Path(path)
    if not verified:
        verify(path)
    file = path / "model.safetensors"
    tensors = _load_tensors(file)
    _check_shapes(model, tensors, file)
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{file}: does not match the model (missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )


def _check_shapes(model: nn.Module, tensors: dict[str, torch.Tensor], file: Path) -> None:
    """Shapes and dtypes as the model's: ``load_state_dict`` would cast a float64 or float16
    tensor into the float32 weight in silence, which is not the checkpoint that was written."""
    own = model.state_dict()
    for key, value in tensors.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{file}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
        if key in own and own[key].dtype != value.dtype:
            raise CheckpointError(f"{file}: '{key}' has dtype {dtype_name(value)}, the model expects {dtype_name(own[key])}")


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """Restore model, optimiser and RNG from a verified checkpoint; return its ``TrainState``."""
    path = Path(path)
    data = verify(path)
    state = TrainState.from_json({k: v for k, v in data.items() if k not in ("optimizer", "files")}, str(path / STATE_FILE))
    load_model_weights(path, model, verified=True)
    # Loaded on the CPU: the optimiser moves its state to each parameter's device itself, and
    # Adam wants its ``step`` counters to stay on the CPU unless it is capturable.
    opt_file = path / "optimizer.safetensors"
    opt_tensors = _load_tensors(opt_file)
    for file, problem in ((opt_file, state_problem(optimizer, opt_tensors, state.step)),
                          (path / STATE_FILE, changed_setting(optimizer, data["optimizer"]))):
        if problem is not None:
            raise CheckpointError(f"{file}: {problem}")
    try:
        optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, data["optimizer"]))
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise CheckpointError(f"{opt_file}: does not match this run's optimiser ({type(exc).__name__}: {exc})") from exc
    rng_file = path / "rng.safetensors"
    rng = _load_tensors(rng_file)
    if "torch" not in rng or rng["torch"].dtype != torch.uint8:
        raise CheckpointError(f"{rng_file}: no CPU RNG state in it")
    try:
        set_rng_state(rng)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{rng_file}: not a valid RNG state ({exc})") from exc
    return state


def load_last(ckpt_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """``load_checkpoint`` of ``last``; when it is damaged and ``best`` is intact, the error says so."""
    try:
        return load_checkpoint(Path(ckpt_dir) / "last", model, optimizer)
    except CheckpointError as exc:
        best = Path(ckpt_dir) / "best"
        if best.exists() and _is_complete(best):
            step = int(_read_state(best).get("step", 0))
            raise CheckpointError(
                f"{exc}; checkpoints/best (step {step}) is intact: `mmcore eval` can still evaluate it, "
                "but training cannot resume from a damaged last"
            ) from exc
        raise


def describe_resumable(ckpt_dir: Path) -> str:
    """What can be resumed, stated truthfully (for interrupt messages and refusals)."""
    last, best = Path(ckpt_dir) / "last", Path(ckpt_dir) / "best"
    parts = []
    for ckpt in (last, best):
        if ckpt.exists():
            try:
                parts.append(f"checkpoints/{ckpt.name} holds step {int(verify(ckpt).get('step', 0))}")
            except CheckpointError as exc:
                parts.append(f"checkpoints/{ckpt.name} is damaged ({exc})")
    return "; ".join(parts) if parts else "no checkpoint was written yet"
