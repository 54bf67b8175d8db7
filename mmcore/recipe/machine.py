"""Checks of a resolved recipe against the machine a command runs on: the dataset's files and the
devices.

``validate_recipe`` alone judges what a recipe says, and must answer the same everywhere: a sweep
plans on one machine and runs on another, and ``mmcore eval`` moves a GPU run to a CPU. The
commands that are about to run a recipe here (``mmcore validate``, ``run``, ``resume``) ask for
these checks too (``validate_recipe(..., machine=True)``), so a missing ``dataset.root`` or
``device: cuda`` on a machine without CUDA is a validation error naming what is there, reported
with the recipe's other problems, instead of a crash after the data is loaded.

Data-aware checks stay cheap: whether the dataset's ``root`` exists, and what the dataset's
``describe`` (options and file headers, never tensors) says is wrong with the files. A fold out
of range is a range in the dataset's signature (``Annotated[int, Between(1, 10)]``), checked with
every other option.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from mmcore.errors import MMCoreError
from mmcore.registry import Registry


def machine_problems(resolved: dict[str, Any], registry: Registry, nproc: int = 1, found: Sequence[str] = ()) -> list[str]:
    """The dataset's files and the devices, for values that passed their own checks (``found``)."""
    from mmcore.recipe.crosschecks import sound

    node = resolved.get("dataset")
    problems = []
    if isinstance(node, dict) and sound(found, "dataset.type", "dataset.root"):
        problems += dataset_file_problems(node, registry, strict=sound(found, "dataset"))
    if sound(found, "device"):
        problems += device_problems(resolved["device"], nproc)
    return problems


def dataset_file_problems(node: dict[str, Any], registry: Registry, strict: bool = True) -> list[str]:
    """A ``root`` option that names nothing on disk; otherwise what ``describe`` finds wrong.

    ``root`` is the option name every dataset that reads files uses for them, so it is checked
    here for all of them; a ``describe`` that raises ``MMCoreError`` (``DataError``) reports a
    problem with the files or options, one that raises anything else cannot describe itself now
    and the run checks the loaded data instead. ``strict=False`` (other options have errors,
    already reported): the root only."""
    root = node.get("root")
    if isinstance(root, str) and not Path(root).expanduser().exists():
        return [
            f"dataset.root: not found: {root}; expected the {node['type']} data files or folder "
            f"(`mmcore components {node['type']}` says which)"
        ]
    component = registry.find("dataset", node.get("type", ""))
    describe = getattr(component.factory, "describe", None) if component is not None else None
    if not strict or not callable(describe):
        return []
    try:
        describe(**{k: v for k, v in node.items() if k != "type"})
    except MMCoreError as error:
        return [f"dataset: {error}"]
    except (Exception, SystemExit):  # cannot describe itself here (sys.exit too): the run checks the loaded data
        return []
    return []


def cuda_names() -> list[str]:
    """``cuda:0`` ... of this machine (none without CUDA)."""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def device_problems(device: str, nproc: int = 1) -> list[str]:
    """``device`` against the devices here, and ``nproc`` processes against the GPUs they take
    (one per process, the local rank's, as ``mmcore.engine.runtime.resolve_device`` picks)."""
    gpus = cuda_names()
    available = ", ".join([*gpus, "cpu"])
    if device.startswith("cuda") and not gpus:
        return [f"device: '{device}' requested but this machine has no CUDA device; available: cpu (or device=auto)"]
    if device.startswith("cuda:") and device not in gpus:
        return [f"device: '{device}' does not exist on this machine; available: {available}"]
    per_rank = device == "cuda" or (device == "auto" and gpus)
    if per_rank and nproc > len(gpus):
        return [
            f"device: '{device}' with --nproc {nproc} needs {nproc} CUDA devices, one per process; this machine "
            f"has {len(gpus)} ({', '.join(gpus)}); expected --nproc at most {len(gpus)}, or device=cpu (gloo processes)"
        ]
    cores = cpu_cores()
    if (device == "cpu" or (device == "auto" and not gpus)) and nproc > PROCESSES_PER_CORE * cores:
        return [
            f"device: '{device}' with --nproc {nproc} starts {nproc} CPU processes (gloo); this process may use "
            f"{cores} CPU core{'s' if cores != 1 else ''}; expected --nproc at most {PROCESSES_PER_CORE * cores} "
            f"({PROCESSES_PER_CORE} a core)"
        ]
    return []


# Each gloo rank is a whole process (torch, the data, the model) that waits for the slowest at every
# step. A few a core is how a multi-GPU run's process layout (and its numbers) is reproduced or
# resumed on a small machine; far beyond that the processes only wait and multiply the memory.
PROCESSES_PER_CORE = 4


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity call
        return os.cpu_count() or 1
