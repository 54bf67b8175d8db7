"""Contract check across ranks: a balancer's state is identical on every rank after every step.

Under data parallelism each rank sees its own shard of the batch, and the engine pools the
statistics it hands to balancers (``mmcore.engine.losses.pool_stats``). A balancer keeps identical state on
every rank exactly when it depends on nothing but those pooled statistics (and the seeded global
RNG); this check runs it in ``world_size`` gloo processes on the CPU, each fed different local
statistics, and compares the ranks' ``state_dict`` and weights after every step.
"""

from __future__ import annotations

import json
import tempfile
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmcore.testing._common import BATCH, MISSING_RATES, SPECS, _as_component, _Ctx, option_sets
from mmcore.testing.balancers import _modulated_grads, step_stats


def check_balancers_across_ranks(names: list[str], *, world_size: int = 2, steps: int = 6) -> None:
    """Check registered balancers ``names`` in one group of processes (one start-up for all).

    Raises ``AssertionError`` naming each balancer, its options and the step where ranks disagree.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank_main, args=(world_size, list(names), steps, tmp), nprocs=world_size, join=True)
        report = json.loads((Path(tmp) / "report.json").read_text())
    if report["errors"]:
        raise AssertionError("; ".join(report["errors"]))


def _rank_main(rank: int, world_size: int, names: list[str], steps: int, tmp: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world_size, timeout=timedelta(seconds=120)
    )
    errors = []
    for name in names:
        error = _check_one(rank, world_size, name, steps)
        every: list[str | None] = [None] * world_size
        dist.all_gather_object(every, error)
        first = next((e for e in every if e), None)
        if first:
            errors.append(f"balancer {name}: {first}")
    if rank == 0:
        (Path(tmp) / "report.json").write_text(json.dumps({"errors": errors}))
    dist.destroy_process_group()


def _check_one(rank: int, world_size: int, name: str, steps: int) -> str | None:
    from mmcore.engine.losses import pool_stats
    from mmcore.engine.runtime import Runtime
    from mmcore.plugins import get_registry

    error = None
    try:
        runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world_size)
        component = _as_component(get_registry().get("balancer", name), "balancer")
        names = [s.name for s in SPECS]
        for opts in option_sets(component):
            ctx = _Ctx(component, f"options {opts}")
            torch.manual_seed(0)  # the engine seeds every rank alike
            balancer = ctx.build({"modalities": names, "missing_rates": dict(MISSING_RATES)}, opts, seed=0)
            local = torch.Generator().manual_seed(1000 + rank)  # each rank's own shard statistics
            for step in range(steps):
                stats = step_stats(step, balancer.target, len(names), local)
                stats.batch_size = BATCH
                pooled = pool_stats(stats, runtime)
                balancer.weights()
                _modulated_grads(balancer, names, pooled)
                balancer.observe(pooled)
                mine = json.dumps({"state": balancer.state_dict(), "weights": balancer.weights().tolist()})
                every: list[str | None] = [None] * world_size
                dist.all_gather_object(every, mine)
                if any(other != every[0] for other in every):
                    error = f"options {opts}: ranks disagree after step {step}: {every[0][:200]} vs {every[1][:200]}"
                    break
            if error:
                break
    except Exception as exc:  # reported through rank 0, so the parent shows the message
        error = f"{type(exc).__name__}: {exc}"
    return error
