"""What the trainer calls besides the step itself: whole-split passes for balancers, the
divergence check, checkpoint writes every rank agrees on, one logging step's line, and the files
a finished run writes.

Kept apart from ``trainer.py`` so that the trainer reads as its lifecycle on a few screens.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmcore import missbench
from mmcore.engine import losses
from mmcore.engine.checkpoint import save_checkpoint
from mmcore.engine.ddp import rank_rng
from mmcore.engine.evaluate import usable, write_eval
from mmcore.engine.outputs import check_log_values
from mmcore.engine.runtime import Runtime
from mmcore.engine.state import TrainState
from mmcore.errors import MMCoreError
from mmcore.frames import ceiling_split
from mmcore.oracle import oracle_entry, write_oracle
from mmcore.types import EVAL_SPLITS

if TYPE_CHECKING:
    from mmcore.engine.session import Session


LOG_POINTS = 20  # metric lines a run logs when train.log_every is not set (fewer make no readable curve)
LOG_EVERY_MAX = 50  # ... but never fewer than one line per this many steps


def log_interval(configured: int | None, steps: int) -> int:
    """``train.log_every`` when set; otherwise about :data:`LOG_POINTS` lines over the run's
    ``steps``, at most :data:`LOG_EVERY_MAX` steps apart (a fixed 50 logged nothing in a 33-step run)."""
    if configured is not None:
        return configured
    return max(1, min(LOG_EVERY_MAX, steps // LOG_POINTS))


def train_latents(session: "Session", masks: torch.Tensor, size: int, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Completed latents of the whole train split under this epoch's masks, in eval mode, no grad
    (every rank computes the same, so what a balancer derives from them agrees across ranks)."""
    model, data = session.model, session.splits["train"]
    model.eval()
    chunks = []
    try:
        with torch.no_grad(), rt.autocast():
            for start in range(0, len(data), size):
                index = torch.arange(start, min(start + size, len(data)), device=rt.device)
                chunks.append(model(data.select(index), masks.index_select(0, index)).z.float())
    finally:
        model.train()
    return torch.cat(chunks), data.target, masks


def split_losses(session: "Session", split: str, masks: torch.Tensor, kind: str, size: int, rt: Runtime) -> dict[str, torch.Tensor]:
    """Mean task loss of the fusion head and of each unimodal head over a whole split, in eval mode
    (G-Blending's train and validation losses); the same on every rank."""
    model, data = session.model, session.splits[split]
    if split != "train":  # validation: every modality the data has
        masks = usable(torch.ones(len(data), len(session.names), dtype=torch.bool, device=rt.device), data)
    model.eval()
    task, uni = torch.zeros((), device=rt.device), None
    try:
        with torch.no_grad(), rt.autocast():
            for start in range(0, len(data), size):
                index = torch.arange(start, min(start + size, len(data)), device=rt.device)
                out, target = model(data.select(index), masks.index_select(0, index)), data.target.index_select(0, index)
                task = task + losses.elementwise_task_loss(out.prediction, target, kind).sum()
                if out.unimodal is not None:
                    part = losses.unimodal_terms(out.unimodal, target, kind) * len(index)
                    uni = part if uni is None else uni + part
    finally:
        model.train()
    result = {"task": task / len(data)}
    if uni is not None:
        result["unimodal"] = uni / len(data)
    return result


def barrier(rt: Runtime) -> None:
    rt.all_agree(True)


class Diverged(MMCoreError):
    """The loss became non-finite. ``what`` says when; the message adds the usual remedy, which the
    trainer replaces by a component's name when it can find one (``mmcore.engine.guards``)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; lower train.optimizer.lr or set train.grad_clip")
        self.what = what


def check_finite(rt: Runtime, epoch_loss: torch.Tensor, step: int) -> None:
    """Divergence, checked at epoch ends (one host sync), before anything is saved."""
    if not rt.all_agree(bool(torch.isfinite(epoch_loss))):
        raise Diverged(f"training diverged: the loss became {float(epoch_loss)} before step {step} (checkpoints keep the last finite epoch)")


def save(rt: Runtime, path: Path, model: torch.nn.Module, optimizer: Any, state: TrainState) -> None:
    """Rank 0 writes; every rank learns whether it worked, so all stop together on failure."""
    error: MMCoreError | None = None
    ranks = rank_rng(rt)  # every rank's random state (a gather): each resumes with its own
    if rt.is_main:
        try:
            save_checkpoint(path, model, optimizer, state, ranks)
        except MMCoreError as exc:
            error = exc
    if not rt.all_agree(error is None):
        raise error or MMCoreError(f"{path}: rank 0 could not write the checkpoint")


def log_line(
    rt: Runtime,
    means: dict[str, torch.Tensor],
    names: list[str],
    epoch: int,
    optimizer: Any,
    balancer: Any,
    grad_norms: torch.Tensor | None,
) -> dict[str, Any]:
    """One logging step: mean losses since the last one (over ranks), per-modality terms, balancer values."""
    line: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
    logged = balancer.log_values()
    check_log_values(logged, len(names))  # a [M+2] tensor would be zipped onto the names, cut short in silence
    values: dict[str, Any] = dict(means) | dict(logged)
    if grad_norms is not None:
        values["grad_norm"] = grad_norms
    for key, value in values.items():  # the one host sync of a log interval
        value = value.tolist() if isinstance(value, torch.Tensor) else value
        if isinstance(value, list):
            line.update({f"{key}.{m}": x for m, x in zip(names, value)})
        else:
            line[key] = value
    if not math.isfinite(line["loss"]):
        raise Diverged(f"training diverged: loss is {line['loss']} at epoch {epoch + 1}")
    return line


def write_results(
    session: "Session", run_dir: Path, results: dict[str, Any], trained_on: torch.Tensor, extra: dict[str, Any]
) -> None:
    """``eval.json`` (``extra``, then the missingness diagnostics of the masks the model was
    ``trained_on``), the Bayes ceilings of ``oracle.json`` and ``MODEL_CARD.md``; rank 0 only."""
    diagnostics = missbench.diagnostics(results["test"], session.names, trained_on, run_dir / "metrics.jsonl")
    write_eval(run_dir, results, {**extra, "diagnostics": diagnostics})
    ceiling = {split: ceiling_split(session, split) for split in EVAL_SPLITS}  # given the kept frames, if any are dropped
    write_oracle(run_dir, oracle_entry(session.dataset, ceiling, {split: session.eval_masks[split] for split in EVAL_SPLITS}))
    from mmcore.after.card import write_model_card  # after-training code, imported when a run ends

    write_model_card(run_dir)
