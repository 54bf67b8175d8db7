"""Checks a run makes once, or only when it has already failed, so they cost no step anything.

- ``check_parameters``: after the first forward, the model's trainable parameters are the ones
  the optimiser was built with. A component that made a layer inside its first ``forward`` trained
  that layer never (the optimiser had been built before it existed) and lost it on resume (a
  fresh build has no such key), while the run looked normal.
- ``claim_session``/``refuse_retraining``: a session trains once. A second fresh ``train(session)``
  started from the first run's trained weights and called the result a new run.
- ``divergence_named``: when the loss turns non-finite, the evidence of which component made it
  is gone (after one more step every weight is NaN), so on that path only, one forward and
  backward pass from the last finite weights looks for a component whose output or gradients are
  non-finite and names it -- every part of the model with parameters: encoders, a balancer's
  calibration module, the imputer, the fusion and the unimodal heads; an ordinary divergence (too
  high a learning rate) finds none and keeps its message.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import nn

from mmcore.engine.batching import trim_padding
from mmcore.engine.blame import ComponentFault, nonfinite_output
from mmcore.engine.build import build_model
from mmcore.engine.checkpoint import load_model_weights
from mmcore.engine.losses import combine
from mmcore.engine.outputs import first_nonfinite
from mmcore.engine.steps import Diverged
from mmcore.errors import MMCoreError

if TYPE_CHECKING:
    from mmcore.engine.session import Session

PROBE_BATCHES = 8  # training batches the divergence probe tries: a component's NaN shows on the first


def check_parameters(model: nn.Module, optimizer: torch.optim.Optimizer, labels: dict[int, str], doing: str) -> None:
    """Every trainable parameter of ``model`` is one ``optimizer`` updates (ids, read once, no sync)."""
    known = {id(p) for group in optimizer.param_groups for p in group["params"]}
    new = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in known]
    if not new:
        return
    owner, prefix = _owner(model, new[0], labels)
    own = [name[len(prefix):] for name in new if name.startswith(prefix)]
    raise ComponentFault(
        f"{doing}: {owner}: parameters {own[:3]}{' ...' if len(own) > 3 else ''} appeared during forward, after the optimizer "
        "was built: they would never be trained, and a checkpoint would not restore them; create every layer in __init__"
    )


def _owner(model: nn.Module, name: str, labels: dict[int, str]) -> tuple[str, str]:
    """The label of the component holding parameter ``name`` and its prefix (``encoders.m1.``)."""
    owners = [(prefix + ".", labels[id(m)]) for prefix, m in model.named_modules() if prefix and id(m) in labels]
    held = [(prefix, label) for prefix, label in owners if name.startswith(prefix)]
    if not held:
        return "the model (no single component identified)", ""
    prefix, label = max(held, key=lambda item: len(item[0]))
    return label, prefix


def refuse_retraining(session: "Session", resume: bool) -> None:
    """Before a fresh run's directory is made: its session's model must not have trained already.
    A resume is let through (it loads the weights, optimiser and step of that run's checkpoint)."""
    if session.trained_in is not None and not resume:
        raise MMCoreError(
            f"train: this session already trained (run {session.trained_in}), so its model holds trained weights; a "
            "session trains once: build a new one (mmcore.engine.session.build_session, or run(recipe)) for a fresh run, "
            f"or continue that run with run_dir={str(session.trained_in)!r}, resume=True"
        )


def claim_session(trainer: Any) -> None:
    """At the start of ``fit``: a trainer fits once; the session records the run it trains in."""
    if trainer.fitted:
        raise MMCoreError(
            f"Trainer.fit: this trainer has already run (run {trainer.run_dir}); a session trains once: build a new session "
            f"and Trainer for another run, or continue that run with Trainer(session, run_dir={str(trainer.run_dir)!r}, resume=True)"
        )
    trainer.fitted = True
    trainer.session.trained_in = trainer.run_dir


@contextlib.contextmanager
def divergence_named(trainer: Any) -> Iterator[None]:
    """A ``Diverged`` raised inside becomes a ``ComponentFault`` naming the component when the
    probe finds one (``_probe``); otherwise it passes as it is. Nothing runs unless it is raised."""
    try:
        yield
    except Diverged as exc:
        found = _probe(trainer)
        if found is None:
            raise
        source, culprit = found
        raise ComponentFault(f"{exc.what}: {culprit} (one forward and backward pass from {source}, without a step, shows it); "
                             "a lower learning rate will not help: fix the component") from exc


def _probe(trainer: Any) -> tuple[str, str] | None:
    """``(weights used, "<component>: <what>")`` for the first component with non-finite values
    on the first training batches, from the last finite weights; None when none has any, or when
    the probe itself fails (it only adds a name to an error already on its way)."""
    try:
        source = _finite_weights(trainer)
        model, data, masks, size = trainer.model, trainer.data, trainer.masks, trainer.batch_size
        model.train()
        for start in range(0, min(len(data), PROBE_BATCHES * size), size):
            index = torch.arange(start, min(start + size, len(data)), device=trainer.rt.device)
            present = masks.index_select(0, index) if masks is not None else None
            culprit = _probe_batch(trainer, trim_padding(data.select(index), trainer.compiled), present)
            if culprit is not None:
                return source, culprit
    except Exception:  # noqa: BLE001 - a failed diagnosis must not hide the divergence itself
        return None
    return None


def _finite_weights(trainer: Any) -> str:
    """Load the weights the run last had finite into ``trainer.model``: ``checkpoints/last`` when
    it exists (only finite epochs are saved), else the recipe's initial weights (seeded build)."""
    last = trainer.ckpt_dir / "last"
    if last.exists():
        load_model_weights(last, trainer.model)
        return "checkpoints/last"
    session, plan = trainer.session, trainer.plan
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(plan.seed)
        fresh = build_model(plan, session.specs, session.task, session.plugins.registry)
    trainer.model.load_state_dict(fresh.state_dict())
    return "the initial weights"


def _probe_batch(trainer: Any, batch: Any, present: torch.Tensor | None) -> str | None:
    """One forward and backward pass (no step) and what in it is non-finite, first in the data's
    order for outputs, then in the gradients' order (fusion back to the encoders)."""
    model, names = trainer.model, trainer.names
    if present is None:
        present = torch.ones(len(batch.target), len(names), dtype=torch.bool, device=trainer.rt.device)
    model.zero_grad(set_to_none=True)
    with trainer.rt.autocast():
        h = model.encode(batch, present)
        h.retain_grad()  # the gradient that reaches each encoder's output
        out = model.complete(h, present)
        culprit = nonfinite_output(model, names, out, trainer.blamed, present)
    if culprit is not None:
        return culprit
    weights = torch.ones(len(names), device=trainer.rt.device)
    loss = combine(out, batch.target, trainer.loss_kind, trainer.unimodal_weight, trainer.balancer.target, weights)[0]
    if not bool(torch.isfinite(loss)):
        return None  # finite outputs, non-finite loss: the engine's loss, not a component
    loss.backward()
    return _nonfinite_gradients(model, names, h.grad, trainer.blamed)


def _nonfinite_gradients(model: Any, names: list[str], arriving: torch.Tensor | None, labels: dict[int, str]) -> str | None:
    """The component whose parameters' gradients are non-finite, walking against the data's flow
    (fusion and unimodal heads, imputer, calibration, encoders): the first found is where the
    backward pass made them (a head's NaN also reaches the imputer and encoders through ``z``)."""
    heads = list((getattr(model, "unimodal_heads", None) or {}).values())
    downstream = [model.fusion, *heads, model.imputer, getattr(model, "calibration", None)]
    parts = [(m, "its gradients", p.grad) for m in downstream if m is not None for p in m.parameters()]
    found = first_nonfinite(parts)
    if found is not None:
        return f"{labels.get(id(found[0]), 'a component of the model')}: its gradients are non-finite (NaN or infinity)"
    for i, m in enumerate(names):
        encoder = model.encoders[m]
        if first_nonfinite([(encoder, "its gradients", p.grad) for p in encoder.parameters()]) is not None:
            clean = arriving is None or bool(torch.isfinite(arriving[:, i]).all())
            why = " although the gradient reaching its output is finite, so its own backward pass makes them" if clean else ""
            return f"{labels.get(id(encoder), 'a component of the model')}: its gradients are non-finite (NaN or infinity){why}"
    return None
