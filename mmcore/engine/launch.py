"""Starting a multi-process run on one machine, and what a resume may change.

``mmcore run recipe.yaml --nproc N`` re-executes the same command under
``python -m torch.distributed.run --standalone --nproc-per-node N -m mmcore ...``: exactly what a
user would type with torchrun, so there is one distributed code path (the runtime reads
torchrun's environment). Each process takes the GPU of its local rank when CUDA is available,
and the CPU with gloo otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mmcore.errors import RecipeError

# Keys a resumed run may change: they alter where and how long it runs, never what a step computes.
RESUMABLE_KEYS = ("train.max_steps", "logging", "device", "compile")


def under_torchrun() -> bool:
    """True inside a process that torchrun started (it sets WORLD_SIZE for every rank)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def launch_local(nproc: int, argv: list[str]) -> int:
    """Run ``mmcore <argv>`` in ``nproc`` processes through torch.distributed.run; its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "mmcore", *argv]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:  # torchrun forwards the signal to its workers and reports their exit
        return 130


def check_resume_overrides(overrides: list[str]) -> None:
    """Only ``RESUMABLE_KEYS`` (or keys below them) may be overridden when resuming."""
    bad = []
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            bad.append(f"resume: '{key}' cannot change when resuming (it would change what the steps compute); "
                       f"allowed: {', '.join(RESUMABLE_KEYS)}")
    if bad:
        raise RecipeError(bad)
