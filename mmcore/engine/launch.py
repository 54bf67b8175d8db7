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

import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from mmcore.errors import RecipeError

# Keys a resumed run may change: they alter where and how long it runs, never what a step computes.
RESUMABLE_KEYS = ("train.max_steps", "logging", "device", "compile", "rank_timeout")
RANK_ERRORS_ENV = "MMCORE_RANK_ERRORS"  # the folder where ranks leave their one-line errors


def under_torchrun() -> bool:
    """True inside a process that torchrun started (it sets WORLD_SIZE for every rank)."""
    return "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def quiet_other_ranks() -> None:
    """In a rank other than 0 started by ``mmcore run --nproc``: ignore Python warnings and
    torch's C++ warnings, which every rank would otherwise print once each (N copies of the same
    deprecation notice). Rank 0 still shows them, and errors travel as before (the rank files
    ``launch_local`` collects). Runs at ``import mmcore``, before torch is imported, because
    torch reads ``TORCH_CPP_LOG_LEVEL`` once at import."""
    if os.environ.get(RANK_ERRORS_ENV) and not is_main_process():
        warnings.simplefilter("ignore")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")


def launch_local(nproc: int, argv: list[str]) -> int:
    """Run ``mmcore <argv>`` in ``nproc`` processes through torch.distributed.run; its exit code.

    The agent dies with this process and its ranks with the agent (``mmcore.engine.lifeline``);
    the ranks leave their errors in a temporary folder for the agent to print the first one."""
    from mmcore.engine.lifeline import child_env

    # ``import mmcore`` imports this module (``quiet_other_ranks``) before ``-m`` runs it as
    # __main__, and runpy warned about that on every launch; running it twice is harmless here
    runpy_notice = "ignore:'mmcore.engine.launch' found in sys.modules:RuntimeWarning"
    command = [sys.executable, "-W", runpy_notice, "-m", "mmcore.engine.launch", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "mmcore", *argv]
    with tempfile.TemporaryDirectory(prefix="mmcore-ranks-") as errors:
        agent_process = subprocess.Popen(command, env=child_env({RANK_ERRORS_ENV: errors}))
        try:
            return _agent_code(agent_process.wait(), interrupted=False)
        except KeyboardInterrupt:  # Ctrl-C reached the agent too; a SIGTERM here did not: pass it on
            if agent_process.poll() is None:
                agent_process.send_signal(signal.SIGTERM)
            try:
                agent_process.wait(timeout=120)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                agent_process.kill()
            _agent_code(agent_process.wait(), interrupted=True)
            return 130


def _agent_code(code: int, interrupted: bool) -> int:
    """The exit code for the agent's ``code``, and one line when a signal ended it unannounced.

    An agent signalled before its handlers were in place (in its first seconds, while importing)
    dies silently: ``mmcore run`` then ended with no word and exit 241 (-15 as a status byte)."""
    if code >= 0:
        return code
    what = "interrupted" if interrupted else f"the launcher (torch.distributed.run) was ended by signal {-code}"
    print(f"error: {what} before the processes could report; a run directory made by then continues with "
          "mmcore resume RUN", file=sys.stderr)
    return 128 - code


def report_to_agent(lines: list[str]) -> bool:
    """Inside a rank started by ``launch_local``: leave the error for the agent; False elsewhere.

    Every rank meets the same bad data root; printed by each, the user would read the error
    N times, interleaved with the stopped ranks' "interrupted"."""
    folder = os.environ.get(RANK_ERRORS_ENV)
    if not folder or not under_torchrun():
        return False
    try:
        with open(os.path.join(folder, f"rank{int(os.environ.get('RANK', '0'))}.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines))
    except OSError:
        return False
    return True


def _rank_error(rank: int) -> list[str]:
    folder = os.environ.get(RANK_ERRORS_ENV)
    if not folder:
        return []
    try:
        with open(os.path.join(folder, f"rank{rank}.txt"), encoding="utf-8") as fh:
            return [line for line in fh.read().splitlines() if line.strip()]
    except OSError:
        return []


def check_resume_overrides(overrides: list[str]) -> None:
    """Only ``RESUMABLE_KEYS`` (or keys below them) may be overridden when resuming."""
    bad = []
    for item in overrides:
        if "=" not in item and not item.startswith("~"):
            bad.append(f"resume: '{item}' is not an override; expected KEY=VALUE, e.g. train.max_steps=100")
            continue
        key = item.lstrip("+~").split("=", 1)[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            bad.append(f"resume: '{key}' cannot change when resuming (it would change what the steps compute); "
                       f"allowed: {', '.join(RESUMABLE_KEYS)}")
    if bad:
        raise RecipeError(bad)


def edited_keys(started: Any, now: Any, path: str = "") -> list[str]:
    """Dotted keys whose values differ between two recipes, ``RESUMABLE_KEYS`` left out."""
    if any(path == k or path.startswith(k + ".") for k in RESUMABLE_KEYS):
        return []
    if isinstance(started, dict) and isinstance(now, dict):
        out: list[str] = []
        for key in [*started, *(k for k in now if k not in started)]:
            out += edited_keys(started.get(key, _ABSENT), now.get(key, _ABSENT), f"{path}.{key}" if path else str(key))
        return out
    return [] if started == now else [path or "(the whole recipe)"]


_ABSENT = object()


def check_unedited(run_dir: Path, started: dict[str, Any] | None) -> None:
    """``recipe.yaml`` as the run started (``started``, from ``manifest.json``), but for the keys a
    resume may change: an edited recipe would continue the steps with other settings than the
    checkpoint's, which is not the run it claims to be. Runs from before the manifest held the
    recipe (``started`` None) are not checked."""
    from mmcore.recipe import load_yaml

    if started is None:
        return
    keys = edited_keys(started, load_yaml(run_dir / "recipe.yaml"))
    if keys:
        raise RecipeError([
            f"{run_dir / 'recipe.yaml'}: edited after the run started ({', '.join(keys)} differ from manifest.json's "
            f"recipe); expected the recipe the run started with (a resume may change only {', '.join(RESUMABLE_KEYS)}): "
            "restore it, or start a new run with `mmcore run`"
        ])


def agent(torchrun_args: list[str]) -> int:
    """torch.distributed.run's agent with ``torchrun_args``; its exit code, and one line on failure.

    A worker that fails has printed its own error; torchrun would add its ChildFailedError
    traceback and failure table, so here the first failure is summarised instead."""
    from torch.distributed import DistError
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.run import parse_args, run

    from mmcore.engine.lifeline import PARENT_ENV, bind_to_parent

    bind_to_parent()  # SIGTERM when `mmcore run --nproc` dies: this agent then stops its ranks
    os.environ[PARENT_ENV] = str(os.getpid())  # and the ranks die with this agent
    # its own lines; the summary below replaces them. Each of torch's elastic modules sets its own
    # logger's level at import (``elastic.utils.logging.get_logger``), which overrides a parent's,
    # so "Received 15 death signal, shutting down workers" still printed on every stop: set them all.
    silenced = ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher")
    for name in [*silenced, *logging.root.manager.loggerDict]:
        if name.startswith(silenced):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as failed:
        rank, first = failed.get_first_failure()
        for line in _rank_error(rank):
            print(f"error: {line}", file=sys.stderr)
        how = f"exit code {first.exitcode}" if first.exitcode >= 0 else f"signal {-first.exitcode}"
        print(f"error: rank {rank} failed ({how}); the other ranks were stopped", file=sys.stderr)
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException as stopped:  # Ctrl-C or a kill reached the agent: the workers are ended
        lines = _rank_error(0) or [f"stopped by signal {int(stopped.sigval)}"]
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        return 128 + int(stopped.sigval)
    except (DistError, RendezvousError) as failed:  # a busy --master-port, an unreachable endpoint
        reason = next((line.strip() for line in str(failed).splitlines() if line.strip()), type(failed).__name__)
        print(f"error: the processes could not be started ({type(failed).__name__}: {reason})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(agent(sys.argv[1:]))
