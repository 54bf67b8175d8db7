"""What data parallelism needs beside the runtime's collectives: DistributedDataParallel's
wrapper, a bounded wait for the other processes, and the ranks' random states.

Facts of a multi-process run that no single process sees:

- **Unused parameters.** A component may leave parameters out of a step's graph, and which ones
  can depend on the batch (a plugin's imputer that skips a sub-network when no row misses a
  modality). mmcore cannot know that in advance, so DDP searches every step's graph
  (``find_unused_parameters=True``); a wrong ``False`` would stop the run at the first such step.
  torch then advised, once per run, to turn the search off whenever a step used every
  parameter: advice about a setting the user does not have. ``wrap`` puts one parameter that no
  forward uses beside the model, so the search is never empty and the advice never printed.
- **A process that hangs.** gloo waits 30 minutes at a collective by default (NCCL 10), so one
  hung rank held every other rank, and the run, that long. ``init_group`` bounds the wait by
  the recipe's ``rank_timeout`` (seconds), and ``collective_error`` turns a collective that gave up
  (or lost a rank that ended) into one line.
- **Random state.** Every rank draws dropout masks and hiding uniforms from its own generator,
  and the ranks' generators drift apart when their shares differ by a row (a batch that does not
  divide by the number of processes) or on GPUs (each rank draws on its own device). A
  checkpoint held rank 0's state alone, so a resumed rank 1 drew rank 0's numbers and the resumed
  run left the straight one (weights 9e-3 apart after 10 steps of the tiny recipe at batch 65).
  ``rank_rng`` adds every rank's state to ``rng.safetensors`` and ``restore_rank_rng`` gives each
  rank its own back when the number of processes is the same. What must be equal on every rank
  (a balancer's gradient noise) draws from ``same_draws_on_every_rank``'s generator instead.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import Tensor, nn

from mmcore.errors import MMCoreError

if TYPE_CHECKING:
    from mmcore.engine.runtime import Runtime

RANK_TIMEOUT_KEY = "rank_timeout"  # the recipe key (seconds), resumable: it changes no step's numbers


class _WithUnused(nn.Module):
    """The model, and one parameter that no forward uses (see the module docstring). It is not the
    model's: the optimiser, the checkpoints and gradient clipping read ``model.parameters()``."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        # unused on every rank, so DDP leaves its gradient None; one float in a bucket's all-reduce
        self.never_used = nn.Parameter(torch.zeros(1, device=device))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel, searching each step for unused parameters, quietly.

    The sum over ranks is elementwise, so which bucket a gradient shares with the extra
    parameter changes no number: the tiny recipe's 2-process run gave bit-identical weights (last
    and best) and ``eval.json`` with and without it (2026-12-08)."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_WithUnused(model, device), device_ids=ids, find_unused_parameters=True)


def init_group(backend: str, rank_timeout: float | None) -> None:
    """``init_process_group`` with the bounded wait (None: torch's default), which also bounds the
    wait for every rank to join; a rank that never did is one line here too."""
    options = {} if rank_timeout is None else {"timeout": datetime.timedelta(seconds=rank_timeout)}
    try:
        dist.init_process_group(backend=backend, **options)
    except RuntimeError as exc:
        if rank_timeout is None or _collective_failure(exc) != "timeout":
            raise
        rank = os.environ.get("RANK", "?")
        raise MMCoreError(f"{RANK_TIMEOUT_KEY}: rank {rank} waited {rank_timeout:g} s for the other processes to start "
                          f"and stopped the run: one of them is stuck before training; {RANK_TIMEOUT_KEY}=SECONDS "
                          "waits longer") from None


# what gloo and the store say, lower-cased, when a collective ends without the other ranks
# gloo's "Timed out waiting Nms for recv operation"; the store's "Timed out after N seconds", "wait timeout after Nms"
GAVE_UP = ("timed out", "wait timeout")
LOST = ("connection closed by peer", "connection reset by peer")  # gloo, when another rank's process ended
LOST_GRACE_SECONDS = 10.0  # how long a rank that lost the others waits before it reports (see collective_errors)


def _collective_failure(exc: BaseException) -> str | None:
    """``"timeout"`` or ``"lost"`` for a collective that ended without the other ranks, also as the
    cause of another error (the trainer names a component for what fails inside the forward). Only
    causes count, not contexts: a Ctrl-C or SIGTERM that ends a rank mid-collective is an
    interrupt (``RunInterrupted``, raised while the collective's error was handled)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        text = str(seen).lower()
        if isinstance(seen, RuntimeError) and any(s in text for s in GAVE_UP):
            return "timeout"
        if isinstance(seen, RuntimeError) and any(s in text for s in LOST):
            return "lost"
        seen = seen.__cause__
    return None


@contextlib.contextmanager
def collective_errors(runtime: "Runtime") -> Iterator[None]:
    """``collective_error``'s line for a collective of the block that ended without the others (the
    final barrier too: a rank 0 still writing after ``rank_timeout`` seconds); other errors pass.

    A rank that lost the others waits ``LOST_GRACE_SECONDS`` first: the rank whose process ended
    is the cause, and the agent reports the first failure in time and stops the other ranks (this
    one too, during the wait). Reported at once, this line came first and hid that rank's error."""
    try:
        yield
    except Exception as exc:
        line = collective_error(exc, runtime)
        if line is None:
            raise
        if _collective_failure(exc) == "lost":
            time.sleep(LOST_GRACE_SECONDS)
        raise line from None


def collective_error(exc: BaseException, runtime: "Runtime") -> MMCoreError | None:
    """One line for a collective that gave up waiting or lost another rank; None for any other error
    (it keeps its traceback)."""
    kind = _collective_failure(exc) if runtime.distributed else None
    if kind == "lost":
        return MMCoreError(f"rank {runtime.rank} lost the other processes at a collective: one of them ended (its own "
                           "error, if any, is above); a run directory made by then continues with mmcore resume RUN")
    if kind != "timeout" or runtime.rank_timeout is None:
        return None
    return MMCoreError(
        f"{RANK_TIMEOUT_KEY}: rank {runtime.rank} waited {runtime.rank_timeout:g} s for the other processes at a "
        "collective and stopped the run: another process hung or is that much slower (its own error, if any, is "
        f"above); a run directory made by then continues with mmcore resume RUN, with {RANK_TIMEOUT_KEY}=SECONDS "
        "to wait longer"
    )


# --- each rank's random state --------------------------------------------------------------------
def _own_state(runtime: "Runtime") -> dict[str, Tensor]:
    """This rank's generators: the CPU's, and on a GPU its own device's."""
    state = {"torch": torch.get_rng_state()}
    if runtime.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(runtime.device)
    return state


def rank_rng(runtime: "Runtime") -> dict[str, Tensor] | None:
    """Every rank's random state as ``rank<R>.torch`` (and ``rank<R>.cuda``), for rank 0's
    ``rng.safetensors``; None on one process. Every rank calls it (a gather, at checkpoints only)."""
    if not runtime.distributed:
        return None
    own = {k: v.numpy().tobytes() for k, v in _own_state(runtime).items()}
    out: dict[str, Tensor] = {}
    for rank, state in enumerate(runtime.all_gather_object(own)):
        for key, raw in state.items():
            out[f"rank{rank}.{key}"] = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return out


def restore_rank_rng(runtime: "Runtime", checkpoint: Path) -> None:
    """After ``load_checkpoint`` set rank 0's state everywhere: this rank's own, when the checkpoint
    was written by as many processes as run now (with another number every rank keeps rank 0's,
    as before; the run then continues, not exactly). The file was verified by that load."""
    if not runtime.distributed:
        return
    states = load_file(str(checkpoint / "rng.safetensors"))
    written = sum(1 for key in states if key.endswith(".torch") and key.startswith("rank"))
    own = f"rank{runtime.rank}."
    if written != runtime.world_size or own + "torch" not in states:
        return
    torch.set_rng_state(states[own + "torch"])
    if runtime.device.type == "cuda" and own + "cuda" in states:
        torch.cuda.set_rng_state(states[own + "cuda"], runtime.device)


@contextlib.contextmanager
def same_draws_on_every_rank(runtime: "Runtime", seed: int, step: int) -> Iterator[None]:
    """Under data parallelism: the block draws from a generator seeded by ``(seed, step)`` alone,
    the same on every rank, and the ranks' own generators are left as they were.

    Why: DDP keeps the replicas equal only through the averaged gradients. A balancer that adds
    noise to them (``baselines.ogm_ge``, ``baselines.balm``) drew it from each rank's own
    generator, and those drift apart (shares differing by a row, present rows of a sequence
    modality skipped): each rank then trained another model in silence (``baselines.ogm_ge`` on
    the tiny recipe at batch 65: rank 1's weights 4e-2 from rank 0's after 10 steps), and the
    sharded evaluation scored a mix of them. One process draws from its own generator, as before."""
    if not runtime.distributed:
        yield
        return
    digest = hashlib.sha256(f"mmcore.balancer-draws:{seed}:{step}".encode()).digest()
    devices = [runtime.device] if runtime.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        yield
