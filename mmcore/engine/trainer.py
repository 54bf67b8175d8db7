"""One training run, top to bottom: a session, then the loop, then the selected weights on test.

``run`` builds what a recipe asks for (runtime, session) and calls ``train``; ``train`` is the
loop, written to be read in one sitting (torchtune's style): per step, select the batch, look up
its masks, forward, combine the losses, backward, let the balancer modulate and observe, step.

Speed rules: whole splits live on the device, a batch is an index selection, masks are looked
up by row, and nothing reads a value back to the host inside a step — losses accumulate on the
device and are read at logging steps and at epoch ends (where divergence is checked).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mmcore.components import EpochView, StepView, requested_stats
from mmcore.conditions import AVERAGE
from mmcore import missbench
from mmcore.engine import losses
from mmcore.engine.batching import length_order, trim_padding
from mmcore.engine.blame import blame_forward, component_labels
from mmcore.engine.build import build_balancer, build_loggers
from mmcore.engine.checkpoint import (
    describe_resumable,
    load_last,
    load_model_weights,
    recover,
    save_checkpoint,
)
from mmcore.engine.dropout import apply_dropout, dropout_uniforms
from mmcore.engine.evaluate import evaluate, usable, write_eval
from mmcore.engine.optim import build_optimizer, lr_factor, set_lr
from mmcore.engine.rundir import cost_figures, new_run_dir, write_session_manifest
from mmcore.engine.runtime import Runtime, runtime_for
from mmcore.engine.session import Session, build_session
from mmcore.engine.state import TrainState
from mmcore.errors import MMCoreError
from mmcore.fastdropout import use_fast_dropout
from mmcore.lossgroups import check_target
from mmcore.metrics import better
from mmcore.missing import train_masks
from mmcore.oracle import oracle_entry, write_oracle
from mmcore.plugins import Plugins
from mmcore.types import EVAL_SPLITS, StepStats


class RunInterrupted(MMCoreError):
    """Ctrl-C or SIGTERM during training; the message says what can be resumed."""

    exit_code = 130


@dataclass
class RunResult:
    """What a training call returns (also the documented test-level API)."""

    run_dir: Path
    step: int  # optimisation steps done in total
    stopped_early: bool  # True when ``train.max_steps`` ended the run before its last epoch
    best_epoch: int | None
    results: dict[str, dict[str, dict[str, float]]] | None  # split -> condition -> metric; None if stopped early


def run(
    recipe: dict[str, Any],
    *,
    plugins: Plugins | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Train and evaluate a resolved recipe. ``resume`` continues ``run_dir`` from ``checkpoints/last``.

    ``stop_after_steps`` is deprecated: set ``train.max_steps`` in the recipe instead.
    """
    if stop_after_steps is not None:
        warnings.warn(
            "run(stop_after_steps=N) is deprecated; set recipe['train']['max_steps'] = N (train.max_steps=N)",
            DeprecationWarning,
            stacklevel=2,
        )
        recipe = {**recipe, "train": {**recipe["train"], "max_steps": int(stop_after_steps)}}
    with runtime_for(recipe) as runtime:
        session = build_session(recipe, runtime, plugins)
        return train(session, run_dir=run_dir, resume=resume, console=console, show_progress=show_progress)


def train(
    session: Session,
    *,
    run_dir: Path | None = None,
    resume: bool = False,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunResult:
    """The training loop over a built session; see the module docstring."""
    recipe, rt, model, task = session.recipe, session.runtime, session.model, session.task
    names, seed, cfg = session.names, int(recipe["seed"]), recipe["train"]
    if cfg.get("dropout_masks") == "fast":
        use_fast_dropout(model)  # before wrapping and compiling, which see the swapped modules
    forward = rt.wrap(model)
    if recipe["compile"]:
        forward = torch.compile(forward)
    optimizer = build_optimizer(cfg["optimizer"], model)
    blamed = component_labels(model, recipe, session.plugins.registry)
    balancer = build_balancer(recipe, names, session.train_spec, session.plugins.registry).to(rt.device)
    needs = requested_stats(balancer)  # optional StepStats fields, computed only when asked
    loss_kind = losses.task_loss_kind(task, cfg["task_loss"])
    heads = recipe["model"]["unimodal_heads"]
    unimodal_weight = float(heads["weight"]) if heads else 0.0
    drop_rate = float(cfg.get("modality_dropout") or 0.0)

    data = session.splits["train"]
    n, batch_size, epochs = len(data), int(cfg["batch_size"]), int(cfg["epochs"])
    steps_per_epoch, log_every = math.ceil(n / batch_size), int(cfg["log_every"])
    total_steps = steps_per_epoch * epochs
    max_steps = int(cfg.get("max_steps") or total_steps)
    base_lr, factor = float(cfg["optimizer"]["lr"]), lr_factor(cfg["schedule"], steps_per_epoch, epochs)
    spec = session.train_spec
    fixed_masks = usable(train_masks(spec, names, data.ids, seed), data) if spec.policy == "fixed" else None

    # --- run directory and state -------------------------------------------------------------
    state = TrainState()
    if resume:
        if run_dir is None:
            raise MMCoreError("resume needs a run directory")
        if rt.is_main:
            recover(run_dir / "checkpoints")
        _barrier(rt)
        last = run_dir / "checkpoints" / "last"
        if not last.exists():
            raise MMCoreError(f"{run_dir}: nothing to resume ({describe_resumable(run_dir / 'checkpoints')})")
        state = load_last(run_dir / "checkpoints", model, optimizer)
        balancer.load_state_dict(state.balancer)
    else:
        run_dir = Path(rt.broadcast_object(str(run_dir or new_run_dir(recipe)) if rt.is_main else None))
        if rt.is_main:
            write_session_manifest(session, run_dir, fixed_masks)
    ckpt_dir = run_dir / "checkpoints"
    step = state.step
    own_sums = state.log_sums
    if state.rank_log_sums is not None and len(state.rank_log_sums) == rt.world_size:
        own_sums = state.rank_log_sums[rt.rank]
    log_sums = {k: torch.tensor(v, device=rt.device, dtype=torch.float32) for k, v in own_sums.items()}
    log_count = state.log_count
    epoch_loss = torch.tensor(state.epoch_loss_sum, device=rt.device)
    grad_norms: torch.Tensor | None = None

    def snapshot(epoch: int) -> TrainState:
        # Each rank's partial log sums are kept (rank_log_sums), so a resume with the same number
        # of processes continues every rank's sums exactly; log_sums holds their mean over ranks.
        sums = {k: v.tolist() for k, v in log_sums.items()}
        return TrainState(
            step, epoch, state.best_value, state.best_epoch, log_count,
            {k: rt.all_reduce_mean(v).tolist() for k, v in log_sums.items()},
            float(rt.all_reduce_mean(epoch_loss)), balancer.state_dict(),
            rank_log_sums=rt.all_gather_object(sums) if rt.distributed else None,
        )

    loggers = build_loggers(recipe, session.plugins.registry, show_progress, console) if rt.is_main else []
    for logger in loggers:
        logger.open(run_dir, state.step if resume else None)
    started, trained, target_checked = time.perf_counter(), 0, False
    try:
        for epoch in range(step // steps_per_epoch, epochs):
            model.train()
            shuffle = torch.Generator().manual_seed((seed * 100_003 + epoch) % 2**63)  # any valid seed fits
            order = torch.randperm(n, generator=shuffle).to(rt.device)
            if cfg.get("batch_order") == "length":  # an option: it changes which rows share a step
                order = length_order(order, data.lengths, batch_size)
            masks = fixed_masks if fixed_masks is not None else usable(train_masks(spec, names, data.ids, seed, epoch), data)
            hide_u = dropout_uniforms(seed, data.ids, len(names), epoch) if drop_rate > 0 else None
            for position in range(step - epoch * steps_per_epoch, steps_per_epoch):
                if step >= max_steps:
                    _check_finite(rt, epoch_loss, step)
                    _save(rt, ckpt_dir / "last", model, optimizer, snapshot(epoch))
                    return RunResult(run_dir, step, True, state.best_epoch, None)
                index = rt.shard(order[position * batch_size : (position + 1) * batch_size])
                batch, present = trim_padding(data.select(index)), masks.index_select(0, index)
                if hide_u is not None:  # modality dropout, before the imputer (mmcore.engine.dropout)
                    present = apply_dropout(present, hide_u.index_select(0, index), drop_rate)
                set_lr(optimizer, base_lr, factor(step))
                with rt.autocast(), blame_forward(blamed, f"training step {step}"):
                    out = forward(batch, present)
                weights = balancer.weights()
                loss, task_loss, groups = losses.combine(
                    out, batch.target, loss_kind, unimodal_weight, balancer.target, weights
                )
                if not target_checked:  # once per process: the groups this model really returns
                    check_target(balancer, groups, recipe["model"]["imputer"]["type"], bool(heads), recipe["balancer"]["type"])
                    target_checked = True
                extra = balancer.extra_loss(_step_view(model, out, batch.target, present, step, rt, loss_kind))
                if extra is not None:  # the balancer's own term (PMR's prototype loss)
                    loss = loss + extra
                stats = rt.pool_stats(
                    StepStats(
                        step=step,
                        losses={g: t.detach().float() for g, t in groups.items()},
                        present_counts=present.sum(0),
                        unimodal_confidence=(
                            losses.unimodal_confidence(out.unimodal.detach(), batch.target)
                            if "unimodal_confidence" in needs and out.unimodal is not None and task.kind == "classification"
                            else None
                        ),
                        batch_size=len(index),
                    )
                )
                optimizer.zero_grad(set_to_none=True)
                if "group_grads" in needs:  # per-group encoder gradients, before the total's backward
                    stats.group_grads = losses.group_gradients(
                        model, names, balancer.gradient_groups, groups, task_loss, balancer.target, weights, rt
                    )
                loss.backward()
                logging_step = (step + 1) % log_every == 0
                if logging_step:  # the field's imbalance signal, before any balancer touches it
                    grad_norms = losses.encoder_grad_norms(model, names)
                balancer.modulate_gradients(model, stats)
                if cfg["grad_clip"]:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
                optimizer.step()
                balancer.observe(stats)
                step += 1
                trained += len(index)

                epoch_loss = epoch_loss + loss.detach().float()
                _accumulate(log_sums, {"loss": loss.detach(), "task_loss": task_loss.detach(), **stats.losses})
                if extra is not None:
                    _accumulate(log_sums, {"balancer_loss": extra.detach()})
                log_count += 1
                if logging_step:
                    line = _log_line(rt, log_sums, log_count, names, epoch, optimizer, balancer, grad_norms)
                    for logger in loggers:
                        logger.log_step(step, line)
                    log_sums, log_count = {}, 0
                for logger in loggers:
                    logger.progress(step, total_steps, epoch + 1, epochs)

            _check_finite(rt, epoch_loss, step)
            epoch_loss = torch.zeros((), device=rt.device)
            val = evaluate(model, session.splits["val"], session.eval_masks["val"], task, int(cfg["eval_batch_size"]), rt.autocast, rt)
            value = val[session.select[0]][session.select[1]]
            scalars = {f"val.{k}": v for k, v in val[AVERAGE].items()} | {f"select.{cfg['select']}": value}
            for logger in loggers:
                logger.log_epoch(epoch + 1, step, scalars)
            balancer.end_epoch(
                EpochView(
                    epoch + 1, step, val, lambda: _train_latents(session, masks, rt),
                    lambda split: _split_losses(session, split, masks, loss_kind, rt),
                )
            )
            if state.best_value is None or better(session.select[1], value, state.best_value):
                state.best_value, state.best_epoch = value, epoch + 1
                _save(rt, ckpt_dir / "best", model, optimizer, snapshot(epoch + 1))
            _save(rt, ckpt_dir / "last", model, optimizer, snapshot(epoch + 1))
    except KeyboardInterrupt:
        raise RunInterrupted(
            f"interrupted at step {step}: {describe_resumable(ckpt_dir)}; "
            + (f"continue with: mmcore resume {run_dir}" if (ckpt_dir / "last").exists() else "nothing to resume")
        ) from None
    finally:
        for logger in loggers:
            logger.close()
    seconds = time.perf_counter() - started

    # --- the selected weights, evaluated once on test ----------------------------------------
    _barrier(rt)
    load_model_weights(ckpt_dir / "best", model)
    started = time.perf_counter()
    results = {
        s: evaluate(model, session.splits[s], session.eval_masks[s], task, int(cfg["eval_batch_size"]), rt.autocast, rt)
        for s in EVAL_SPLITS
    }
    eval_seconds = time.perf_counter() - started
    if rt.is_main:
        items = sum(len(session.splits[s]) * len(session.eval_masks[s]) for s in EVAL_SPLITS)
        cost = cost_figures(session, trained * rt.world_size / max(seconds, 1e-9), items / max(eval_seconds, 1e-9))
        trained_on = fixed_masks if fixed_masks is not None else usable(train_masks(spec, names, data.ids, seed, epochs - 1), data)
        diagnostics = missbench.diagnostics(results["test"], names, trained_on, run_dir / "metrics.jsonl")
        write_eval(run_dir, results, {"best_epoch": state.best_epoch, "select": cfg["select"], "cost": cost, "diagnostics": diagnostics})
        write_oracle(run_dir, oracle_entry(session.dataset, session.splits, {s: session.eval_masks[s] for s in EVAL_SPLITS}))
        from mmcore.after.card import write_model_card  # after-training code, imported when a run ends

        write_model_card(run_dir)
    return RunResult(run_dir, step, False, state.best_epoch, results)


# --- helpers the loop calls -------------------------------------------------------------------
def _step_view(model: Any, out: Any, target: torch.Tensor, present: torch.Tensor, step: int, rt: Runtime, kind: str) -> StepView:
    return StepView(
        step, out.prediction, out.unimodal, out.z, out.h, target, present,
        lambda mask: model.probe(out.h, mask), rt.all_reduce_mean,
        losses.elementwise_task_loss(out.prediction, target, kind),
    )


def _train_latents(session: Session, masks: torch.Tensor, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Completed latents of the whole train split under this epoch's masks, in eval mode, no grad
    (every rank computes the same, so what a balancer derives from them agrees across ranks)."""
    model, data, size = session.model, session.splits["train"], int(session.recipe["train"]["eval_batch_size"])
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


def _split_losses(session: Session, split: str, masks: torch.Tensor, kind: str, rt: Runtime) -> dict[str, torch.Tensor]:
    """Mean task loss of the fusion head and of each unimodal head over a whole split, in eval mode
    (G-Blending's train and validation losses); the same on every rank."""
    model, data, size = session.model, session.splits[split], int(session.recipe["train"]["eval_batch_size"])
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


def _barrier(rt: Runtime) -> None:
    rt.all_agree(True)


def _check_finite(rt: Runtime, epoch_loss: torch.Tensor, step: int) -> None:
    """Divergence, checked at epoch ends (one host sync), before anything is saved."""
    if not rt.all_agree(bool(torch.isfinite(epoch_loss))):
        raise MMCoreError(
            f"training diverged: the loss became {float(epoch_loss)} before step {step} "
            "(checkpoints keep the last finite epoch); lower train.optimizer.lr or set train.grad_clip"
        )


def _save(rt: Runtime, path: Path, model: torch.nn.Module, optimizer: Any, state: TrainState) -> None:
    """Rank 0 writes; every rank learns whether it worked, so all stop together on failure."""
    error: MMCoreError | None = None
    if rt.is_main:
        try:
            save_checkpoint(path, model, optimizer, state)
        except MMCoreError as exc:
            error = exc
    if not rt.all_agree(error is None):
        raise error or MMCoreError(f"{path}: rank 0 could not write the checkpoint")


def _accumulate(sums: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    for key, value in values.items():
        value = value.float()
        sums[key] = sums[key] + value if key in sums else value.clone()


def _log_line(
    rt: Runtime,
    sums: dict[str, torch.Tensor],
    count: int,
    names: list[str],
    epoch: int,
    optimizer: Any,
    balancer: Any,
    grad_norms: torch.Tensor | None,
) -> dict[str, Any]:
    """One logging step: mean losses since the last one (over ranks), per-modality terms, balancer values."""
    line: dict[str, Any] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
    values: dict[str, Any] = {k: rt.all_reduce_mean(v) / count for k, v in sums.items()}
    values |= dict(balancer.log_values())
    if grad_norms is not None:
        values["grad_norm"] = grad_norms
    for key, value in values.items():  # the one host sync of a log interval
        value = value.tolist() if isinstance(value, torch.Tensor) else value
        if isinstance(value, list):
            line.update({f"{key}.{m}": x for m, x in zip(names, value)})
        else:
            line[key] = value
    if not math.isfinite(line["loss"]):
        raise MMCoreError(
            f"training diverged: loss is {line['loss']} at epoch {epoch + 1}; lower train.optimizer.lr or set train.grad_clip"
        )
    return line
