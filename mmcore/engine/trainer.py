"""One training run, top to bottom: build, train with per-sample masks, select on validation,
test once with the selected weights.

Speed rules followed here: whole splits live on the device, a batch is an index selection,
masks are looked up by row, and nothing reads a value back to the host inside a step — losses
accumulate on the device and are read only at logging steps and epoch ends.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mmcore.engine import losses
from mmcore.engine.build import (
    build_balancer,
    build_dataset,
    build_model,
    eval_conditions,
    train_missing_spec,
)
from mmcore.engine.checkpoint import (
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from mmcore.engine.evaluate import AVERAGE, condition_mask_table, evaluate, write_eval
from mmcore.engine.optim import build_optimizer, lr_factor, set_lr
from mmcore.engine.progress import Reporter
from mmcore.engine.rundir import new_run_dir, split_checksum, write_manifest
from mmcore.errors import MMCoreError
from mmcore.metrics import TASK_METRICS, better
from mmcore.missing import mask_hash, train_masks
from mmcore.plugins import Plugins, get_plugins
from mmcore.registry import did_you_mean
from mmcore.types import StepStats, TaskSpec

SPLITS = ("train", "val", "test")


@dataclass
class RunResult:
    run_dir: Path
    step: int
    stopped_early: bool  # True when ``stop_after_steps`` ended the run before its last epoch
    best_epoch: int | None
    results: dict[str, dict[str, dict[str, float]]] | None  # split -> condition -> metric


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MMCoreError(f"device: '{name}' requested but CUDA is not available; use device=auto or cpu")
    return device


def parse_select(select: str, conditions: list[str], task: TaskSpec) -> tuple[str, str]:
    """``val.macro_f1`` → (average, macro_f1); ``val.<condition>.<metric>`` → (condition, metric).

    Checked before training, so that a typo never surfaces after the first epoch.
    """
    parts = select.split(".")
    if parts[0] != "val" or len(parts) not in (2, 3):
        raise MMCoreError(f"train.select: '{select}' must be 'val.<metric>' or 'val.<condition>.<metric>'")
    if len(parts) == 3 and parts[1] not in conditions:
        raise MMCoreError(f"train.select: unknown condition '{parts[1]}'; available: {', '.join(conditions)}")
    metric = parts[-1]
    allowed = TASK_METRICS[task.kind]
    if metric not in allowed:
        raise MMCoreError(
            f"train.select: '{metric}' is not a {task.kind} metric;{did_you_mean(metric, list(allowed))}"
            f" available: {', '.join(allowed)}"
        )
    return (parts[1], metric) if len(parts) == 3 else (AVERAGE, metric)


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
    """Train and evaluate a resolved recipe. ``resume`` continues ``run_dir`` from ``checkpoints/last``."""
    plugins = plugins or get_plugins()
    registry = plugins.registry
    console = console or Console()
    seed, cfg = int(recipe["seed"]), recipe["train"]
    device = resolve_device(recipe["device"])
    use_bf16 = recipe["precision"] == "bf16" and device.type == "cuda"
    if recipe["precision"] == "bf16" and not use_bf16:
        console.print("[yellow]precision: bf16 needs a CUDA device; running in fp32[/]")

    def autocast() -> contextlib.AbstractContextManager[Any]:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    # --- data, masks and model -------------------------------------------------------------
    torch.manual_seed(seed)
    dataset = build_dataset(recipe, registry)
    specs, task = list(dataset.modalities), dataset.task
    names = [s.name for s in specs]
    splits = {name: dataset.split(name).to(device) for name in SPLITS}
    spec = train_missing_spec(recipe, names)
    conditions = eval_conditions(recipe, names)
    eval_masks = {s: condition_mask_table(conditions, splits[s], len(names)) for s in ("val", "test")}
    select_condition, select_metric = parse_select(cfg["select"], [c.name for c in conditions], task)

    torch.manual_seed(seed)  # model initialisation does not depend on how the data was made
    model = build_model(recipe, specs, task, registry).to(device)
    forward = torch.compile(model) if recipe["compile"] else model
    optimizer = build_optimizer(cfg["optimizer"], model)
    balancer = build_balancer(recipe, names, spec, registry).to(device)
    loss_kind = losses.task_loss_kind(task, cfg["task_loss"])
    heads = recipe["model"]["unimodal_heads"]
    unimodal_weight = float(heads["weight"]) if heads else 0.0

    train = splits["train"]
    n, batch_size, epochs = len(train), int(cfg["batch_size"]), int(cfg["epochs"])
    steps_per_epoch = math.ceil(n / batch_size)
    base_lr, factor = float(cfg["optimizer"]["lr"]), lr_factor(cfg["schedule"], steps_per_epoch, epochs)
    fixed_masks = train_masks(spec, names, train.ids, seed) if spec.policy == "fixed" else None

    # --- run directory and state -------------------------------------------------------------
    state: dict[str, Any] = {"step": 0, "best_value": None, "best_epoch": None}
    if resume:
        if run_dir is None:
            raise MMCoreError("resume needs a run directory")
        state = load_checkpoint(run_dir / "checkpoints" / "last", model, optimizer)
        balancer.load_state_dict(state["balancer"])
    else:
        run_dir = run_dir or new_run_dir(recipe)
        write_manifest(
            run_dir,
            plugins=[{"name": i.name, "version": i.version, "origin": i.origin, "error": i.error} for i in plugins.infos],
            device=device,
            checksums={s: split_checksum(splits[s]) for s in SPLITS},
            mask_hash=mask_hash(fixed_masks) if fixed_masks is not None else None,
            extra={"train_mask_policy": spec.policy, "seed": seed},
        )
    ckpt_dir = run_dir / "checkpoints"
    step = int(state["step"])
    log_sums: dict[str, torch.Tensor] = {}
    log_count = int(state.get("log_count", 0))
    for key, value in state.get("log_sums", {}).items():
        log_sums[key] = torch.tensor(value, device=device, dtype=torch.float32)

    def checkpoint_state(epoch: int) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": epoch,
            "best_value": state["best_value"],
            "best_epoch": state["best_epoch"],
            "balancer": balancer.state_dict(),
            "log_count": log_count,
            "log_sums": {k: v.tolist() for k, v in log_sums.items()},
        }

    metrics_file = open(run_dir / "metrics.jsonl", "a")
    reporter = Reporter(console, total=steps_per_epoch * epochs, done=step, enabled=show_progress)
    start_epoch = step // steps_per_epoch
    try:
        with reporter:
            for epoch in range(start_epoch, epochs):
                model.train()
                order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
                order = order.to(device)
                masks = fixed_masks if fixed_masks is not None else train_masks(spec, names, train.ids, seed, epoch)
                for position in range(step - epoch * steps_per_epoch, steps_per_epoch):
                    index = order[position * batch_size : (position + 1) * batch_size]
                    batch, present = train.select(index), masks.index_select(0, index)
                    set_lr(optimizer, base_lr, factor(step))
                    with autocast():
                        out = forward(batch, present)
                    weights = balancer.weights()
                    loss, task_loss, groups = losses.combine(
                        out, batch.target, loss_kind, unimodal_weight, balancer.target, weights
                    )
                    stats = StepStats(
                        step=step,
                        losses={g: t.detach().float() for g, t in groups.items()},
                        present_counts=present.sum(0),
                        unimodal_confidence=(
                            losses.unimodal_confidence(out.unimodal.detach(), batch.target)
                            if out.unimodal is not None and task.kind == "classification"
                            else None
                        ),
                    )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    balancer.modulate_gradients(model, stats)
                    if cfg["grad_clip"]:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["grad_clip"]))
                    optimizer.step()
                    balancer.observe(stats)
                    step += 1

                    _accumulate(log_sums, {"loss": loss.detach(), "task_loss": task_loss.detach(), **stats.losses})
                    log_count += 1
                    if step % int(cfg["log_every"]) == 0:
                        line = _log_line(log_sums, log_count, names, step, epoch, optimizer, balancer)
                        metrics_file.write(json.dumps(line) + "\n")
                        metrics_file.flush()
                        log_sums, log_count = {}, 0
                        reporter.loss(line["loss"])
                    reporter.advance(epoch + 1, epochs)
                    last_of_epoch = position == steps_per_epoch - 1
                    if stop_after_steps is not None and step >= stop_after_steps and not last_of_epoch:
                        save_checkpoint(ckpt_dir / "last", model, optimizer, checkpoint_state(epoch))
                        return RunResult(run_dir, step, True, state["best_epoch"], None)

                val = evaluate(model, splits["val"], eval_masks["val"], task, int(cfg["eval_batch_size"]), autocast)
                value = val[select_condition][select_metric]
                epoch_line = {"epoch": epoch + 1, "step": step, "val": val[AVERAGE], cfg["select"]: value}
                metrics_file.write(json.dumps(epoch_line) + "\n")
                metrics_file.flush()
                reporter.validation(select_metric, value)
                if state["best_value"] is None or better(select_metric, value, state["best_value"]):
                    state["best_value"], state["best_epoch"] = value, epoch + 1
                    save_checkpoint(ckpt_dir / "best", model, optimizer, checkpoint_state(epoch + 1))
                save_checkpoint(ckpt_dir / "last", model, optimizer, checkpoint_state(epoch + 1))
                if stop_after_steps is not None and step >= stop_after_steps and epoch + 1 < epochs:
                    return RunResult(run_dir, step, True, state["best_epoch"], None)
    finally:
        metrics_file.close()

    # --- the selected weights, evaluated once on test --------------------------------------------
    load_model_weights(ckpt_dir / "best", model)
    results = {
        s: evaluate(model, splits[s], eval_masks[s], task, int(cfg["eval_batch_size"]), autocast)
        for s in ("val", "test")
    }
    write_eval(run_dir, results, {"best_epoch": state["best_epoch"], "select": cfg["select"]})
    return RunResult(run_dir, step, False, state["best_epoch"], results)


def _accumulate(sums: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    for key, value in values.items():
        value = value.float()
        sums[key] = sums[key] + value if key in sums else value.clone()


def _log_line(
    sums: dict[str, torch.Tensor], count: int, names: list[str], step: int, epoch: int, optimizer: Any, balancer: Any
) -> dict[str, Any]:
    """One metrics.jsonl line: mean losses since the last line, per-modality terms, balancer values."""
    line: dict[str, Any] = {"step": step, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
    host = {k: (v / count).tolist() for k, v in sums.items()}  # the one host sync of a log interval
    for key, value in host.items():
        if isinstance(value, list):
            line.update({f"{key}.{m}": x for m, x in zip(names, value)})
        else:
            line[key] = value
    for key, value in balancer.log_values().items():
        value = value.tolist() if isinstance(value, torch.Tensor) else value
        if isinstance(value, list):
            line.update({f"{key}.{m}": x for m, x in zip(names, value)})
        else:
            line[key] = value
    if not math.isfinite(line["loss"]):
        raise MMCoreError(f"training diverged: loss is {line['loss']} at step {step}; lower train.optimizer.lr?")
    return line
