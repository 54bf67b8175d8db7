"""Contract check of loggers: the engine's call sequence, a resume, and nothing raised."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mmcore.components import Logger
from mmcore.registry import Component
from mmcore.testing._common import Factory, _as_component, _Ctx, option_sets

# Scalars as the engine hands them over: plain floats, dotted names, per-modality entries.
_STEP = {"loss": 1.25, "loss.task": 1.0, "loss.recon.a": 0.125, "lr": 1e-3, "balancer.weight.a": 1.0}
_EPOCH = {"val.macro_f1": 0.5, "val.accuracy": 0.625, "select": 0.5}


def check_logger(component: Component | Factory, *, options: dict[str, Any] | None = None) -> None:
    """An ``mmcore.Logger`` that takes the engine's calls in a temporary run directory without
    raising: ``open``, ``progress`` and ``log_step`` a few times, ``log_epoch``, ``close``; then a fresh logger
    reopened in the same directory with ``resume_step`` (as ``mmcore resume`` does), more steps
    past it, and ``close``. What a logger writes is its own business; that it survives the
    sequence, including a resume into its own earlier output, is the contract."""
    c = _as_component(component, "logger")
    for opts in option_sets(c, options):
        with tempfile.TemporaryDirectory(prefix="mmcore-logger-") as tmp:
            _check_logger_with(_Ctx(c, f"options {opts}"), opts, Path(tmp))


def _calls(ctx: _Ctx, logger: Logger, run_dir: Path, resume_step: int | None, steps: range) -> None:
    def call(what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except (Exception, SystemExit) as exc:  # sys.exit in a logger is a failure, not a pass
            ctx.expect(False, f"{what} raised {type(exc).__name__}: {exc}")

    call(f"open(run_dir, resume_step={resume_step})", logger.open, run_dir, resume_step)
    for step in steps:
        call(f"progress({step}, ...)", logger.progress, step, steps[-1], 1, 1)
        call(f"log_step({step}, ...)", logger.log_step, step, {k: v / (step + 1) for k, v in _STEP.items()})
    call("log_epoch(...)", logger.log_epoch, len(steps), steps[-1], dict(_EPOCH))
    call("close()", logger.close)


def _check_logger_with(ctx: _Ctx, opts: dict[str, Any], run_dir: Path) -> None:
    first = ctx.build({}, opts, seed=0)
    ctx.expect(isinstance(first, Logger), f"factory returned {type(first).__name__}, not an mmcore.Logger")
    _calls(ctx, first, run_dir, None, range(1, 5))
    ctx.where = f"resumed at step 2, options {opts}"
    _calls(ctx, ctx.build({}, opts, seed=1), run_dir, 2, range(3, 7))
