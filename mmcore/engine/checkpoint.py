"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory holds ``model.safetensors``, ``optimizer.safetensors`` (the optimiser's
per-parameter tensors flattened to ``state.<param index>.<key>``), ``rng.safetensors`` (the RNG
states) and ``state.json`` (step, epoch, selection, balancer state, optimiser hyper-parameters).
It is written into a sibling temporary directory and renamed into place, so a crash leaves
either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmcore.errors import MMCoreError

STATE_FILE = "state.json"


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors (for safetensors) and JSON."""
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


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Write a complete checkpoint at ``path`` atomically (write aside, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    model_tensors = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    save_file(model_tensors, str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({k: v.contiguous() for k, v in rng_state().items()}, str(tmp / "rng.safetensors"))
    (tmp / STATE_FILE).write_text(json.dumps({**state, "optimizer": opt_meta}, indent=1))
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    if old.exists():
        shutil.rmtree(old)


def load_model_weights(path: Path, model: nn.Module) -> None:
    """Load ``model.safetensors`` strictly: every key must match the model."""
    file = Path(path) / "model.safetensors"
    if not file.exists():
        raise MMCoreError(f"{file}: no such checkpoint file")
    tensors = load_file(str(file))
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise MMCoreError(
            f"{file}: does not match the model (missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore model, optimiser and RNG; return the JSON state (without the optimiser part)."""
    path = Path(path)
    if not (path / STATE_FILE).exists():
        raise MMCoreError(f"{path}: not a checkpoint (no {STATE_FILE})")
    load_model_weights(path, model)
    state = json.loads((path / STATE_FILE).read_text())
    # Loaded on the CPU: the optimiser moves its state to each parameter's device itself, and
    # Adam wants its ``step`` counters to stay on the CPU unless it is capturable.
    opt_tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(opt_tensors, state.pop("optimizer")))
    set_rng_state(load_file(str(path / "rng.safetensors")))
    return state
