"""Contract check of balancers: weights, JSON state round trip, identical continuation, and the
optional pre-imputer ``calibration`` module a factory may declare."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from mmcore.components import Balancer, requested_stats
from mmcore.engine.outputs import BadOutput, check_log_values, usable_weights, weights_problem
from mmcore.registry import Component
from mmcore.testing._common import (
    BATCH,
    CLOSE,
    DIM,
    MISSING_RATES,
    SPECS,
    Factory,
    _as_component,
    _check_device,
    _Ctx,
    _finite,
    option_sets,
)
from mmcore.types import (
    StepStats,
)

# --------------------------------------------------------------------------------------- balancer


def step_stats(step: int, target: str, m: int, gen: torch.Generator) -> StepStats:
    """Plausible detached statistics of one step; in odd steps the last modality is absent from the batch."""
    counts = torch.randint(1, BATCH + 1, (m,), generator=gen)
    losses = {"kl": torch.rand(m, generator=gen), target: torch.rand(m, generator=gen) + 0.1}
    if step % 2 == 1:
        counts[-1] = 0
        losses[target][-1] = 0.0
    return StepStats(step=step, losses=losses, present_counts=counts, unimodal_confidence=torch.rand(m, generator=gen))


class _TinyModel(nn.Module):
    """What ``modulate_gradients`` sees: a model with ``encoders`` keyed by modality."""

    def __init__(self, names: list[str]) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict({n: nn.Linear(4, 4) for n in names})


def _modulated_grads(balancer: Balancer, names: list[str], stats: StepStats) -> list[Tensor]:
    torch.manual_seed(0)
    model = _TinyModel(names)
    sum(enc(torch.ones(2, 4)).square().sum() for enc in model.encoders.values()).backward()
    if "group_grads" in requested_stats(balancer):  # what the engine hands a balancer that asks
        stats.group_grads = {
            g: [[torch.randn_like(p) for p in model.encoders[n].parameters()] for n in names]
            for g in balancer.gradient_groups
        }
    balancer.modulate_gradients(model, stats)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def check_balancer(component: Component | Factory, *, options: dict[str, Any] | None = None, steps: int = 5) -> None:
    """A ``Balancer`` with finite non-negative ``[M]`` real weights (attached ones warn, as in the
    engine) and ``log_values`` of scalars or ``[M]`` tensors through several observed steps
    (some with a modality absent from the batch), and a JSON-serialisable ``state_dict`` that,
    loaded into a fresh balancer, gives the same weights, the same gradient modulation, and the
    same weights and state again after one more ``observe``. Warned (``FutureWarning``, new in
    this release): an ``observe`` that changes the statistics it is given."""
    c = _as_component(component, "balancer")
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            _check_balancer_with(_Ctx(c, f"options {opts}"), opts, steps)
            _check_calibration(_Ctx(c, f"calibration, options {opts}"), opts)


def _check_balancer_with(ctx: _Ctx, opts: dict[str, Any], steps: int) -> None:
    names = [s.name for s in SPECS]
    injected = {"modalities": names, "missing_rates": dict(MISSING_RATES)}
    gen = torch.Generator().manual_seed(0)
    bal = ctx.build(injected, opts, seed=0)
    ctx.expect(isinstance(bal, Balancer), f"factory returned {type(bal).__name__}, not an mmcore.Balancer")
    ctx.expect(isinstance(bal.target, str) and bool(bal.target), f"target must be a non-empty str, got {bal.target!r}")
    ctx.expect(bal.to("cpu") is bal, "to() must return the balancer itself")
    for step in range(steps):
        w = bal.weights()
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        ctx.expect(shape == (len(names),), f"weights() shape {shape}, expected ({len(names)},)")
        problem = weights_problem(w, len(names), torch.device("cpu"))
        ctx.expect(problem is None, f"{problem} (the engine refuses it)")
        w = usable_weights(w)  # attached weights: the engine's deprecation warning, here too
        ok = _finite(w) and bool((w >= 0).all())
        ctx.expect(ok, f"weights must be finite and >= 0, got {w.tolist()} at step {step}")
        _observe(ctx, bal, step_stats(step, bal.target, len(names), gen))
        logged = bal.log_values()
        ok = all(isinstance(k, str) and isinstance(v, Tensor) for k, v in logged.items())
        ctx.expect(ok, "log_values() must map str -> Tensor")
        try:
            check_log_values(logged, len(names))
        except BadOutput as exc:
            ctx.expect(False, exc.problem)
    try:
        text = json.dumps(bal.state_dict())
    except (TypeError, ValueError) as exc:
        ctx.expect(False, f"state_dict() is not JSON-serialisable: {exc}")
    fresh = ctx.build(injected, opts, seed=1)
    fresh.load_state_dict(json.loads(text))
    elsewhere = ctx.build(injected, opts, seed=2)  # a resume: to(device) first, then the checkpoint's state

    def resumed(device: torch.device) -> tuple[Tensor, Tensor]:
        before = elsewhere.weights()
        elsewhere.load_state_dict(json.loads(text))
        return before, elsewhere.weights()

    _check_device(ctx, elsewhere, resumed, "moved to {} (then given load_state_dict(), as on resuming)",
                  "weights() must be on the device of to(): move every tensor there and make loaded ones on self.device")
    same = torch.equal(fresh.weights(), bal.weights())
    ctx.expect(same, f"weights differ after load_state_dict: {fresh.weights().tolist()} vs {bal.weights().tolist()}")
    stats = step_stats(steps, bal.target, len(names), gen)
    grads, fresh_grads = _modulated_grads(bal, names, stats), _modulated_grads(fresh, names, stats)
    ctx.expect(all(_finite(g) for g in grads), "modulate_gradients produced non-finite gradients")
    same = all(torch.equal(a, b) for a, b in zip(grads, fresh_grads))
    ctx.expect(same, "modulate_gradients differs after load_state_dict")
    confidence = None if stats.unimodal_confidence is None else stats.unimodal_confidence.clone()
    twin = replace(stats, losses={g: t.clone() for g, t in stats.losses.items()},
                   present_counts=stats.present_counts.clone(), unimodal_confidence=confidence)
    _observe(ctx, bal, stats)
    fresh.observe(twin)  # its own copy: the warning above, not a false divergence, for a balancer that changes stats
    ctx.expect(torch.equal(fresh.weights(), bal.weights()), "weights diverge one observe() after load_state_dict")
    same_state = json.dumps(fresh.state_dict()) == json.dumps(bal.state_dict())
    ctx.expect(same_state, "state_dict diverges one observe() after load_state_dict")


def _observe(ctx: _Ctx, bal: Balancer, stats: StepStats) -> None:
    """``observe(stats)``, which must leave ``stats`` as it was: the engine logs the same loss
    tensors after the call (``metrics.jsonl``). New in this release, so a warning."""
    before = {f"losses[{g!r}]": t.clone() for g, t in stats.losses.items()}
    before["present_counts"] = stats.present_counts.clone()
    if stats.unimodal_confidence is not None:
        before["unimodal_confidence"] = stats.unimodal_confidence.clone()
    bal.observe(stats)
    after = {f"losses[{g!r}]": t for g, t in stats.losses.items()}
    after.update(present_counts=stats.present_counts, unimodal_confidence=stats.unimodal_confidence)
    changed = [k for k, t in before.items() if not isinstance(after.get(k), Tensor) or not torch.equal(after[k], t)]
    changed += [k for k in after if k.startswith("losses[") and k not in before]
    ctx.advise(not changed, f"observe(stats) modifies stats.{', stats.'.join(changed)} in place; the step's "
                            "statistics are the engine's (earlier releases logged them after the call): compute on copies")


def _check_calibration(ctx: _Ctx, opts: dict[str, Any]) -> None:
    """A declared ``calibration`` returns None or a module ``(h, present) -> [B, M, d]`` whose
    present rows are finite, ignore the absent rows of ``h`` and, in eval mode, other rows."""
    hook = getattr(ctx.c.factory, "calibration", None)
    if hook is None:
        return
    torch.manual_seed(0)
    module = hook(specs=list(SPECS), dim=DIM, **opts)
    if module is None:
        return
    ctx.expect(isinstance(module, nn.Module), f"calibration returned {type(module).__name__}, not an nn.Module or None")
    gen = torch.Generator().manual_seed(0)
    m = len(SPECS)
    present = torch.rand(BATCH, m, generator=gen) < 0.6
    present[:, 0] = True
    h = torch.randn(BATCH, m, DIM, generator=gen) * present.unsqueeze(-1)
    module.eval()
    with torch.no_grad():
        out = module(h, present)
        ctx.expect(tuple(out.shape) == tuple(h.shape), f"output shape {tuple(out.shape)}, expected {tuple(h.shape)}")
        keep = present.unsqueeze(-1)
        ctx.expect(_finite(out[present]), "non-finite output at present rows")
        noisy = torch.where(keep, h, torch.randn(h.shape, generator=gen))
        same = torch.allclose(module(noisy, present)[present], out[present], **CLOSE)
        ctx.expect(same, "present rows depend on the h rows of absent modalities")
        alone = module(h[:1], present[:1])
        ctx.expect(torch.allclose(alone[present[:1]], out[:1][present[:1]], **CLOSE), "in eval mode a row depends on other rows")
