"""Device, precision and distribution behind one small object the training loop calls.

In the spirit of Lightning Fabric (written here, not copied): the loop asks the runtime for an
autocast context, for its shard of a batch, to wrap the model, to pool statistics across ranks
and whether it is the process that writes. A single process is the same object with identity
collectives, so the loop has no ``if distributed`` branches.

Distribution follows torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``): NCCL on CUDA, gloo on the CPU. ``train.batch_size`` is the
global batch; each rank takes an equal contiguous share of the same global index order, so a
2-process run sees exactly the samples a 1-process run sees at every step.
"""

from __future__ import annotations

import contextlib
import gc
import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmcore.engine.ddp import collective_errors, init_group
from mmcore.engine.ddp import wrap as wrap_ddp
from mmcore.errors import MMCoreError
from mmcore.recipe.plan import plan_of
from mmcore.types import StepStats


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` is the local rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MMCoreError(f"device: '{name}' requested but CUDA is not available; use device=auto or cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = 64  # primitives; oneDNN's default is 1024


def bound_onednn_cache() -> None:
    """Cap oneDNN's primitive cache for bf16 training on a CPU, unless the user set the cap.

    Why: on a CPU, bf16 matrix products run through oneDNN, which compiles a kernel (a
    "primitive") for every new shape and keeps up to 1024 of them. Packed frames give a new row
    count almost every batch, so the cache kept growing: the IEMOCAP recipe's resident memory
    rose from 1.5 to 2.3 GB over 60 steps, where fp32 (MKL's products, no cache) stays flat. At
    64 primitives the same run peaked at 1.76 GB at the same speed; with no cache it ran 32%
    slower (``benchmarks/README.md``, issue 25's fourteenth session). oneDNN reads the variable
    when it first builds a primitive, so this works when no bf16 product ran earlier in the
    process, as in ``mmcore run``; otherwise it changes nothing."""
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(ONEDNN_CACHE_CAPACITY))


@dataclass
class Runtime:
    """Where and how the loop runs. Build it with ``Runtime.create``."""

    device: torch.device
    precision: str = "fp32"  # "fp32" or "bf16" (autocast on CUDA and on the CPU)
    rank: int = 0
    world_size: int = 1
    owns_process_group: bool = False  # True when ``create`` initialised torch.distributed
    rank_timeout: float | None = None  # seconds a collective waits for the other ranks (None: torch's default)

    @classmethod
    def create(cls, device: str = "auto", precision: str = "fp32", rank_timeout: float | None = None) -> "Runtime":
        """One process, or one rank of a torchrun job when ``WORLD_SIZE`` > 1 is set (the recipe's
        ``rank_timeout`` bounds every wait for the other ranks: ``mmcore.engine.ddp``)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0
        target = resolve_device(device, local_rank)
        if precision == "bf16" and target.type == "cpu":
            bound_onednn_cache()
        if world <= 1:
            return cls(target, precision)
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if target.type == "cuda" else "gloo"
            if target.type == "cuda":
                torch.cuda.set_device(target)
            init_group(backend, rank_timeout)
            owns = True
        return cls(target, precision, dist.get_rank(), dist.get_world_size(), owns, rank_timeout)

    # --- who does what -------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        """The rank that creates the run directory and writes every file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast when asked for (CUDA or CPU); a no-op context otherwise."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def shard(self, index: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch's row indices.

        Shares differ by at most one row. The mean of the per-rank losses then weights every
        sample equally when the global batch divides by the world size (the equivalence test
        uses such a batch); otherwise the samples of smaller shares weigh slightly more.
        """
        if not self.distributed:
            return index
        return index.tensor_split(self.world_size)[self.rank]

    def check_shares(self, rows: int, batch_size: int) -> None:
        """Refuse, before the first step, a split whose batches leave some rank without a row.

        A rank with an empty share has no loss to take the gradient of: its forward failed with a
        reshape error in the middle of an epoch (a traceback from that rank, the others stopped).
        The smallest batch is the epoch's last one when ``batch_size`` does not divide ``rows``."""
        smallest = min(batch_size, rows % batch_size or batch_size)
        if not self.distributed or smallest >= self.world_size:
            return
        where = "every batch" if smallest == batch_size else f"the last batch of each epoch ({rows} training rows)"
        raise MMCoreError(
            f"train.batch_size: {batch_size} with {self.world_size} processes leaves {where} only {smallest} "
            f"row{'s' if smallest != 1 else ''}, so a process would get none; expected every batch to have at least "
            f"{self.world_size} rows: choose another train.batch_size or run fewer processes"
        )

    def rows(self, n: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's share of ``n`` rows (sharded evaluation)."""
        bounds = torch.arange(n).tensor_split(self.world_size)[self.rank]
        if len(bounds) == 0:
            return n, n
        return int(bounds[0]), int(bounds[-1]) + 1

    # --- the model -----------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around the model under torchrun; the model itself otherwise.

        ``find_unused_parameters`` is on because a component may leave parameters out of a
        step's graph (a modality absent from the whole local batch, a head that is skipped);
        ``mmcore.engine.ddp.wrap`` keeps torch's advice to turn it off from printing.
        """
        if not self.distributed:
            return model
        return wrap_ddp(model, self.device)

    # --- collectives (identity on one process) -------------------------------------------------
    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        if not self.distributed:
            return tensor
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    def all_reduce_mean(self, tensor: Tensor) -> Tensor:
        return self.all_reduce_sum(tensor) / self.world_size if self.distributed else tensor

    def all_gather_rows(self, tensor: Tensor, n: int) -> Tensor:
        """Concatenate every rank's ``rows(n)`` share of a ``[rows, ...]`` tensor, in rank order."""
        if not self.distributed:
            return tensor
        sizes = [len(t) for t in torch.arange(n).tensor_split(self.world_size)]
        width = max(sizes)
        padded = torch.zeros((width, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's value on every rank (a run directory's path, say)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every rank's (JSON-able) value, in rank order; a host sync, for checkpoints only."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def all_agree(self, ok: bool) -> bool:
        """True on every rank iff ``ok`` is True on every rank (so all ranks stop together)."""
        if not self.distributed:
            return ok
        flag = torch.tensor([0.0 if ok else 1.0], device=self.device)
        dist.all_reduce(flag)
        return bool(flag.item() == 0.0)

    def pool_stats(self, stats: StepStats) -> StepStats:
        """Deprecated: ``mmcore.engine.losses.pool_stats(stats, runtime)`` (see ``mmcore.deprecated``)."""
        from mmcore.deprecated import runtime_pool_stats

        return runtime_pool_stats(self, stats)

    def close(self, wait_for_all: bool = False) -> None:
        """Tear down the process group this runtime created (never one a caller made).

        ``wait_for_all`` (a run that ended normally on every rank): every rank reaches the teardown
        before any tears down. A rank that destroyed the group and exited while rank 0 was still
        writing the run's files aborted now and then in gloo ("terminate called without an active
        exception": 2-3 runs in 20 of the tests' 2-process run; 0 in 30 with the barrier). After
        an error the other ranks may never arrive, so there is no barrier then.

        A collection comes first, to free the DDP wrapper the loop made (no name holds it once
        the loop has returned, but it sits in reference cycles): its reducer holds the process
        group, and a wrapper still alive when the interpreter shut down aborted the process in
        gloo's teardown ("terminate called without an active exception"). A 5-step DDP script,
        two launches at a time on 2 cores: 14 and 16 aborts in 50 runs with the wrapper alive at
        exit, 11 in 50 with its names deleted, 0 in 50 with it deleted and collected."""
        if self.owns_process_group and dist.is_initialized():
            if wait_for_all:
                dist.barrier()
            gc.collect()
            dist.destroy_process_group()
            self.owns_process_group = False


@contextlib.contextmanager
def runtime_for(recipe: dict[str, Any]) -> Iterator[Runtime]:
    """The runtime a resolved recipe asks for, closed on exit."""
    plan = plan_of(recipe)
    runtime = Runtime.create(plan.device, plan.precision, plan.rank_timeout)
    with collective_errors(runtime):  # a collective that waited rank_timeout, or lost a rank: one line
        try:
            yield runtime
        except BaseException:
            runtime.close()
            raise
        runtime.close(wait_for_all=True)
