"""Starting a multi-process run on one machine, and what a resume may change.

``mmcore run recipe.yaml --nproc N`` re-executes the same command under
``python -m torch.distributed.run --standalone --nproc-per-node N -m mmcore ...``: exactly what a
user would type with torchrun, so there is one distributed code path (the runtime reads
torchrun's environment). Each process takes the GPU of its local rank when CUDA is available,
and the CPU with gloo otherwise. torchrun's agent runs through ``agent`` below (``python -m
mmcore.engine.launch``), which reports a failed worker in one line where torchrun prints its own
traceback: the workers have printed their errors by then.
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
    command = [sys.executable, "-m", "mmcore.engine.launch", "--standalone", f"--nproc-per-node={nproc}",
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


def agent(torchrun_args: list[str]) -> int:
    """torch.distributed.run's agent with ``torchrun_args``; its exit code, and one line on failure.

    A worker that fails has printed its own error; torchrun would add its ChildFailedError
    traceback and failure table, so here the first failure is summarised instead."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as failed:
        rank, first = failed.get_first_failure()
        how = f"exit code {first.exitcode}" if first.exitcode >= 0 else f"signal {-first.exitcode}"
        print(f"error: rank {rank} of the run failed first ({how}) and the others were stopped; "
              "its own message, if it printed one, is above", file=sys.stderr)
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as stopped:  # Ctrl-C or a kill reached the agent: the workers are ended
        print(f"error: stopped by signal {int(stopped.sigval)}", file=sys.stderr)
        return 128 + int(stopped.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(agent(sys.argv[1:]))
