"""One training run, top to bottom: a session, then the loop, then the selected weights on test.

``run`` builds what a recipe asks for (runtime, session) and hands it to a ``Trainer``, whose
lifecycle follows torchtune's recipes: ``__init__`` sets everything up, ``fit`` loops over epochs,
``train_epoch`` over steps, ``step`` is one optimisation step (select the batch, look up its
masks, forward, combine the losses, backward, let the balancer modulate and observe, step),
``end_epoch`` validates and checkpoints, ``test`` evaluates the selected weights. The trainer's
attributes are the live state: ``self.state`` is the ``TrainState`` a checkpoint stores.

Speed rules: whole splits live on the device, a batch is an index selection, masks are looked
up by row, and nothing reads a value back to the host inside a step — losses accumulate on the
device and are read at logging steps and at epoch ends (where divergence is checked).
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from mmcore import deprecated
from mmcore.components import EpochView, StepView, requested_stats
from mmcore.conditions import AVERAGE
from mmcore.engine import losses, sizes, stopping
from mmcore.engine.batching import length_order, trim_padding
from mmcore.engine.balancer_calls import BalancerCalls
from mmcore.engine.blame import ComponentFault, blame_forward, check_finite_outputs, close_all, component_labels
from mmcore.engine.build import build_balancer, build_loggers
from mmcore.engine.calling import (as_path, callers_random_state, fresh_run_dir, one_run_at_a_time, resolved_copy, resume_dir,
                                   step_reader)
from mmcore.engine.checkpoint import describe_resumable, load_last, load_model_weights, recover
from mmcore.engine.ddp import restore_rank_rng, same_draws_on_every_rank
from mmcore.engine.dropout import apply_dropout, dropout_uniforms
from mmcore.engine.evaluate import evaluate, usable
from mmcore.engine.guards import check_parameters, claim_session, divergence_named, refuse_retraining
from mmcore.engine.record import VAL_LOSS
from mmcore.engine.result import RunResult
from mmcore.engine.resume_checks import check_folders, check_progress, check_result_paths
from mmcore.engine.optim import build_optimizer, lr_factor, set_lr
from mmcore.engine.ownership import own_run_dir
from mmcore.engine.compiling import compile_for_training
from mmcore.engine.rundir import (check_same_data, check_same_masks, check_same_numerics, check_same_threads, cost_figures,
                                  new_run_dir, write_session_manifest)
from mmcore.engine.runtime import runtime_for
from mmcore.engine.session import Session, build_session
from mmcore.engine.state import TrainState
from mmcore.engine.steps import barrier, check_finite, log_interval, log_line, save, split_losses, train_latents, write_results
from mmcore.errors import Interrupted, MMCoreError
from mmcore.fastdropout import apply_dropout_masks
from mmcore.lossgroups import check_target
from mmcore.metrics import better
from mmcore.missing import train_masks
from mmcore.plugins import Plugins
from mmcore.types import EVAL_SPLITS, StepStats


class RunInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during training; the message says what can be resumed."""


def run(
    recipe: dict[str, Any],
    *,
    plugins: Plugins | None = None,
    run_dir: Path | str | None = None,
    resume: bool = False,
    stop_after_steps: int | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> RunResult:
    """Train and evaluate a resolved recipe. ``resume`` continues ``run_dir`` from ``checkpoints/last``.

    ``stop_after_steps`` is deprecated (``mmcore.deprecated``): set ``train.max_steps`` instead.
    The caller's recipe and torch random state are as they were when this returns (``mmcore.engine.calling``).
    """
    recipe = resolved_copy(recipe)  # the caller's dict stays as it was
    recipe = deprecated.stop_after_steps(recipe, stop_after_steps)
    with one_run_at_a_time(), runtime_for(recipe) as runtime, callers_random_state(runtime.device):
        sizes.forget()  # an out-of-memory message names this run's figures, not an earlier run's
        session = build_session(recipe, runtime, plugins)
        trainer = Trainer(session, run_dir=run_dir, resume=resume, console=console, show_progress=show_progress)
        return trainer.fit()


def train(session: Session, **options: Any) -> RunResult:
    """The training loop over a built session (``Trainer(session, **options).fit()``)."""
    return Trainer(session, **options).fit()


class Trainer:
    """The training loop over a built session; see the module docstring."""

    def __init__(
        self,
        session: Session,
        *,
        run_dir: Path | str | None = None,
        resume: bool = False,
        console: Console | None = None,
        show_progress: bool = True,
    ) -> None:
        refuse_retraining(session, resume)  # before anything is swapped in the model or a directory made
        rt, model, plan = session.runtime, session.model, session.plan
        self.session, self.rt, self.model, self.task, self.names = session, rt, model, session.task, session.names
        self.plan, self.seed, cfg = plan, plan.seed, plan.train
        apply_dropout_masks(model, cfg.dropout_masks, rt.device)  # before wrapping and compiling, which see the swap
        self.forward = rt.wrap(model)
        self.compiled = plan.compile
        regional = False
        if self.compiled:
            self.forward, regional = compile_for_training(model, self.forward)
        # a whole compiled forward would split its graph on row counts that change every step
        model.skip_absent = cfg.skip_absent and (regional or not self.compiled)
        self.optimizer = build_optimizer(cfg.optimizer, model)
        self.blamed = component_labels(model, plan, session.plugins.registry)
        self.balancer = build_balancer(plan.balancer, self.names, session.train_spec, session.plugins.registry).to(rt.device)
        label = session.plugins.registry.get("balancer", plan.balancer["type"]).label
        self.calls = BalancerCalls(self.balancer, label, self.names, rt.device, step_reader(self))
        self.needs = requested_stats(self.balancer)  # optional StepStats fields, computed only when asked
        self.loss_kind = losses.task_loss_kind(self.task, cfg.task_loss)
        self.unimodal_weight, self.drop_rate = plan.unimodal_weight, cfg.modality_dropout
        self.batch_size, self.epochs = cfg.batch_size, cfg.epochs
        self.eval_batch_size, self.grad_clip = cfg.eval_batch_size, cfg.grad_clip
        self.select_key, self.length_batches = cfg.select, cfg.length_batches
        self.data = session.splits["train"]
        rt.check_shares(len(self.data), self.batch_size)  # before a run directory is made
        self.steps_per_epoch = math.ceil(len(self.data) / self.batch_size)
        self.total_steps = self.steps_per_epoch * self.epochs
        self.max_steps = cfg.max_steps or self.total_steps
        # from the whole run, never ``max_steps``: a stopped run then resumed logs the straight run's lines
        self.log_every = log_interval(cfg.log_every, self.total_steps)
        self.base_lr, self.lr_factor = cfg.lr, lr_factor(cfg.schedule, self.steps_per_epoch, self.epochs)
        spec = session.train_spec
        self.fixed_masks = usable(train_masks(spec, self.names, self.data.ids, self.seed, split=self.data), self.data) if spec.policy == "fixed" else None
        self.masks: torch.Tensor | None = self.fixed_masks  # this epoch's training masks
        self.trained, self.target_checked, self.grad_norms, self.fitted = 0, False, None, False
        self.values_checked = False  # the first step reads every component's output once (``_check_values``)
        # built before the run directory is made, so that a logger's bad option or missing extra leaves none behind
        self.loggers = build_loggers(plan.logging, session.plugins.registry, show_progress, console) if rt.is_main else []
        self.owner = contextlib.ExitStack()  # the run directory's lock, released by fit() or close()
        opened: list[Any] = []
        run_dir = as_path(run_dir)
        try:
            self.state, self.run_dir = self._restore(run_dir) if resume else (TrainState(), self._create(run_dir))
            self.state.bind(rt)
            self.ckpt_dir = self.run_dir / "checkpoints"
            for logger in self.loggers:
                logger.open(self.run_dir, self.state.step if resume else None)
                opened.append(logger)
        except BaseException:
            for logger in opened:  # a tracker opened before another failed: its run and files end here
                with contextlib.suppress(Exception):
                    logger.close()
            self.owner.close()
            raise

    def _own(self, run_dir: Path, action: str) -> None:
        """Hold ``run_dir`` until ``close``: a second process (a restarted sweep beside an orphan,
        ``mmcore resume`` beside the live run) is refused with one line naming this pid."""
        self.owner.enter_context(own_run_dir(run_dir, action, main_rank=self.rt.is_main))

    def close(self) -> None:
        """Give the run directory up (``fit`` does; call it for a trainer that never fits)."""
        self.owner.close()

    def _restore(self, run_dir: Path | None) -> tuple[TrainState, Path]:
        """Model, optimiser, RNG and balancer from ``checkpoints/last``."""
        run_dir = resume_dir(run_dir)
        self._own(run_dir, "resume")  # before recovery renames anything in checkpoints/
        check_folders(run_dir / "checkpoints")
        check_result_paths(run_dir)
        if self.rt.is_main:
            recover(run_dir / "checkpoints")
        barrier(self.rt)
        if not (run_dir / "checkpoints" / "last").exists():
            raise MMCoreError(f"{run_dir}: nothing to resume ({describe_resumable(run_dir / 'checkpoints')})")
        check_same_data(self.session, run_dir)  # every rank: each raises alike, none waits in a collective
        check_same_numerics(self.session, run_dir)
        check_same_masks(run_dir, self.fixed_masks)
        check_same_threads(self.session, run_dir)
        state = load_last(run_dir / "checkpoints", self.model, self.optimizer)
        restore_rank_rng(self.rt, run_dir / "checkpoints" / "last")  # each rank its own, not rank 0's
        check_progress(run_dir / "checkpoints" / "last", state, self.steps_per_epoch, self.epochs)
        self.calls.load_state_dict(state.balancer, f"checkpoints/last (step {state.step})")
        return state, run_dir

    def _create(self, run_dir: Path | None) -> Path:
        """A new run directory (rank 0 makes it and writes the manifest; every rank learns its path)."""
        rt = self.rt
        path = Path(rt.broadcast_object(str(fresh_run_dir(run_dir, self.session.recipe) if run_dir else new_run_dir(self.plan.output, self.plan.name, self.session.recipe)) if rt.is_main else None))
        self._own(path, "train")
        if rt.is_main:
            write_session_manifest(self.session, path, self.fixed_masks)
        return path

    # --- the lifecycle -----------------------------------------------------------------------
    def fit(self) -> RunResult:
        """Every remaining epoch, then the selected weights on test (or a stop at ``max_steps``).

        The run directory stays owned until the last file is written, then is given up.
        """
        started, final = time.perf_counter(), False
        stopping.reset()  # a command that trains several runs in turn: each is stoppable again
        try:
            with self.owner, one_run_at_a_time(), divergence_named(self):  # the second: also for a Trainer made without run()
                claim_session(self)
                try:
                    for epoch in range(self.state.step // self.steps_per_epoch, self.epochs):
                        with sizes.phase(f"training epoch {epoch + 1}"):
                            if not self.train_epoch(epoch):
                                return RunResult(self.run_dir, self.state.step, True, self.state.best_epoch, None)
                        self.end_epoch(epoch)
                finally:
                    close_all(self.loggers)  # every one, also after a failure; a close() error named
                final = True
                with sizes.phase("evaluating the selected weights on val and test"):
                    return self.test(time.perf_counter() - started)
        except KeyboardInterrupt:
            raise RunInterrupted(self._interrupted(final)) from None
        except ComponentFault as exc:  # the work done so far is kept: say where it continues from
            if not (self.ckpt_dir / "last").exists():
                raise
            raise ComponentFault(f"{exc}; {describe_resumable(self.ckpt_dir)}; once the plugin is fixed, "
                                 f"continue with: mmcore resume {self.run_dir}") from exc

    def _interrupted(self, final: bool) -> str:
        """What a stop left behind and the command that continues from it."""
        if final:
            return (f"interrupted during the final evaluation (training had finished, step {self.state.step}); "
                    f"mmcore resume {self.run_dir} finishes it")
        last = (self.ckpt_dir / "last").exists()
        return (f"interrupted at step {self.state.step}: {describe_resumable(self.ckpt_dir)}; "
                + (f"continue with: mmcore resume {self.run_dir}" if last else "nothing to resume"))

    def train_epoch(self, epoch: int) -> bool:
        """The epoch's remaining steps; False when ``max_steps`` stopped the run (``last`` saved)."""
        self.model.train()
        shuffle = torch.Generator().manual_seed((self.seed * 100_003 + epoch) % 2**63)  # any valid seed fits
        order = torch.randperm(len(self.data), generator=shuffle).to(self.rt.device)
        if self.length_batches:  # an option: it changes which rows share a step
            order = length_order(order, self.data.lengths, self.batch_size)
        if self.fixed_masks is None:
            self.masks = usable(train_masks(self.session.train_spec, self.names, self.data.ids, self.seed, epoch, self.data), self.data)
        hide_u = dropout_uniforms(self.seed, self.data.ids, len(self.names), epoch) if self.drop_rate > 0 else None
        for position in range(self.state.step - epoch * self.steps_per_epoch, self.steps_per_epoch):
            if self.state.step >= self.max_steps:
                check_finite(self.rt, self.state.epoch_loss, self.state.step)
                self.save("last")
                return False
            index = self.rt.shard(order[position * self.batch_size : (position + 1) * self.batch_size])
            self.step(index, hide_u, epoch)
        return True

    def step(self, index: torch.Tensor, hide_u: torch.Tensor | None, epoch: int) -> None:
        """One optimisation step on the rows ``index`` of the training split."""
        rt, state, balancer, model = self.rt, self.state, self.balancer, self.model
        batch, present = trim_padding(self.data.select(index), self.compiled), self.masks.index_select(0, index)
        if hide_u is not None:  # modality dropout, before the imputer (mmcore.engine.dropout)
            present = apply_dropout(present, hide_u.index_select(0, index), self.drop_rate)
        set_lr(self.optimizer, self.base_lr, self.lr_factor(state.step))
        with rt.autocast(), blame_forward(self.blamed, f"training step {state.step}"):
            out = self.forward(batch, present)
        first = not self.values_checked  # the first step of this process also reads values (one host read each)
        if first:  # a component whose output is NaN from the start is named, not reported later as divergence
            self.values_checked = True
            check_parameters(self.model, self.optimizer, self.blamed, f"training step {state.step}")
            check_finite_outputs(self.model, self.names, out, self.blamed, f"training step {state.step}", present)
        weights = self.calls.weights(read_values=first)
        loss, task_loss, groups = losses.combine(out, batch.target, self.loss_kind, self.unimodal_weight, balancer.target, weights)
        self._check_target(groups)
        extra = self.calls.extra_loss(self._step_view(out, batch.target, present), read_value=first)
        if extra is not None:  # the balancer's own term (PMR's prototype loss)
            loss = loss + extra
        stats = losses.pool_stats(self._step_stats(groups, present, out, batch.target, len(index)), rt)
        # logged before the balancer sees the stats: one that changes them in place changes no logged number
        state.log.add({"loss": loss.detach(), "task_loss": task_loss.detach(), **stats.losses, **out.monitors})
        self.optimizer.zero_grad(set_to_none=True)
        if "group_grads" in self.needs:  # per-group encoder gradients, before the total's backward
            stats.group_grads = losses.group_gradients(
                model, self.names, balancer.gradient_groups, groups, task_loss, balancer.target, weights, rt
            )
        loss.backward()
        logging_step = (state.step + 1) % self.log_every == 0
        if logging_step:  # the field's imbalance signal, before any balancer touches it
            self.grad_norms = losses.encoder_grad_norms(model, self.names)
        with same_draws_on_every_rank(rt, self.seed, state.step):  # a balancer's gradient noise keeps replicas equal
            self.calls.modulate_gradients(model, stats, read_values=first)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.grad_clip)
            self.optimizer.step()
            self.calls.observe(stats)
        state.step += 1
        self.trained += len(index)
        state.epoch_loss = state.epoch_loss + loss.detach().float()
        if extra is not None:
            state.log.add({"balancer_loss": extra.detach()})
        state.log.count += 1
        if logging_step:
            with self.calls.call("log_values()"):  # log_line reads and checks them
                line = log_line(rt, state.log.means(rt), self.names, epoch, self.optimizer, balancer, self.grad_norms)
            self.calls.check_weight_values(weights)  # once a line: the host is read anyway
            for logger in self.loggers:
                logger.log_step(state.step, line)
            state.log.reset()
        for logger in self.loggers:
            logger.progress(state.step, self.total_steps, epoch + 1, self.epochs)

    def end_epoch(self, epoch: int) -> None:
        """Divergence check, validation, loggers, ``balancer.end_epoch``, then best and last."""
        state = self.state
        check_finite(self.rt, state.epoch_loss, state.step)
        state.epoch_loss = torch.zeros((), device=self.rt.device)
        with sizes.phase(f"validating after epoch {epoch + 1}"):
            val = self.validate()
        condition, metric = self.session.select
        value = val[condition][metric]
        scalars = {f"val.{k}": v for k, v in val[AVERAGE].items()} | {f"select.{self.select_key}": value}
        if getattr(val, "loss", None) is not None:  # the task loss over validation, for the report's loss plot
            scalars[VAL_LOSS] = val.loss
        for logger in self.loggers:
            logger.log_epoch(epoch + 1, state.step, scalars)
        self.calls.end_epoch(EpochView(epoch + 1, state.step, val, self.train_latents, self.split_losses))
        state.epoch = epoch + 1
        if state.best_value is None or better(metric, value, state.best_value):
            state.best_value, state.best_epoch = value, epoch + 1
            self.save("best")
        self.save("last")

    def validate(self) -> dict[str, dict[str, float]]:
        s = self.session
        with blame_forward(self.blamed, f"validation after step {self.state.step}", unnamed=False):
            return evaluate(self.model, s.splits["val"], s.eval_masks["val"], self.task, self.eval_batch_size, self.rt.autocast,
                            self.rt, loss_kind=self.loss_kind)

    def save(self, name: str) -> None:
        """``checkpoints/<name>`` from the live state (every rank takes part; rank 0 writes)."""
        save(self.rt, self.ckpt_dir / name, self.model, self.optimizer, self.state.snapshot(self.rt, self.calls.state_dict()))

    def test(self, seconds: float) -> RunResult:
        """The selected (best) weights on every evaluation split; ``eval.json`` with the cost figures."""
        rt, s = self.rt, self.session
        barrier(rt)
        load_model_weights(self.ckpt_dir / "best", self.model)
        started = time.perf_counter()
        with blame_forward(self.blamed, "evaluating the selected weights", unnamed=False):
            results = {
                split: evaluate(self.model, s.splits[split], s.eval_masks[split], self.task, self.eval_batch_size, rt.autocast, rt)
                for split in EVAL_SPLITS
            }
        eval_seconds = time.perf_counter() - started
        stopping.mark_complete()  # only files left to write: a SIGTERM is ignored, they are written, exit 0
        if rt.is_main:
            items = sum(len(s.splits[split]) * len(s.eval_masks[split]) for split in EVAL_SPLITS)
            cost = cost_figures(s, self.trained * rt.world_size / max(seconds, 1e-9), items / max(eval_seconds, 1e-9))
            trained_on = self.masks
            if trained_on is None:  # resumed after the last epoch under policy: resample
                trained_on = usable(train_masks(s.train_spec, self.names, self.data.ids, self.seed, self.epochs - 1, self.data), self.data)
            write_results(s, self.run_dir, results, trained_on, {"best_epoch": self.state.best_epoch, "select": self.select_key, "cost": cost})
        return RunResult(self.run_dir, self.state.step, False, self.state.best_epoch, results)

    # --- what balancers see ------------------------------------------------------------------
    def train_latents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``EpochView.latents``: the train split's completed latents under this epoch's masks."""
        return train_latents(self.session, self.masks, self.eval_batch_size, self.rt)

    def split_losses(self, split: str) -> dict[str, torch.Tensor]:
        """``EpochView.losses``: mean task (and unimodal) losses over a whole split."""
        return split_losses(self.session, split, self.masks, self.loss_kind, self.eval_batch_size, self.rt)

    def _check_target(self, groups: dict[str, torch.Tensor]) -> None:
        """Once per process: the balancer's target against the groups this model really returns."""
        if not self.target_checked:
            plan = self.plan
            check_target(self.balancer, groups, plan.model.imputer["type"], plan.heads, plan.balancer["type"])
            self.target_checked = True

    def _step_view(self, out: Any, target: torch.Tensor, present: torch.Tensor) -> StepView:
        model = self.model
        return StepView(
            self.state.step, out.prediction, out.unimodal, out.z, out.h, target, present,
            lambda mask: model.probe(out.h, mask), self.rt.all_reduce_mean,
            losses.elementwise_task_loss(out.prediction, target, self.loss_kind),
        )

    def _step_stats(self, groups: dict[str, torch.Tensor], present: torch.Tensor, out: Any, target: torch.Tensor, rows: int) -> StepStats:
        confident = "unimodal_confidence" in self.needs and out.unimodal is not None and self.task.kind == "classification"
        return StepStats(
            step=self.state.step,
            losses={g: t.detach().float() for g, t in groups.items()},
            present_counts=present.sum(0),
            unimodal_confidence=losses.unimodal_confidence(out.unimodal.detach(), target) if confident else None,
            batch_size=rows,
        )
