"""The component contract suite: checks any plugin package can run on its own components.

Every check builds the component the way the engine does (``Component.build`` with the injected
arguments of its kind), at tiny sizes, and raises ``AssertionError`` with a message naming the
component and the broken rule. The functions are plain, so any test runner can call them; a
plugin's whole suite is a few lines of pytest::

    from mmcore.plugins import get_registry
    from mmcore.testing import contract_cases, run_contract

    @pytest.mark.parametrize("kind,name", contract_cases(get_registry(), origin="myplugin"))
    def test_contract(kind, name):
        run_contract(get_registry(), kind, name)

Options. A component is built with its default options, updated by the optional attribute
``contract_options`` on its factory: a dict, a list of dicts (each configuration is checked), or
a zero-argument callable returning either (a dataset can write tiny fixture files there)::

    MyEncoder.contract_options = {"layers": [8]}

A component with a required option that ``contract_options`` does not supply cannot be built
here; its check raises ``ContractSkip`` (a ``unittest.SkipTest``, so pytest reports a skip).
Encoders are checked on a vector and on a sequence modality; an encoder that supports only one
declares ``contract_modalities = ("sequence",)`` (or ``("vector",)``) on its factory.

The file is longer than most because it holds one check per component kind; each reads alone.
"""

from __future__ import annotations

import json
import unittest
from dataclasses import dataclass
from typing import Any, Callable

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from mmcore.components import KINDS, Balancer
from mmcore.registry import Component, Registry
from mmcore.types import Dataset, ImputerOutput, ModalitySpec, SplitData, StepStats, TaskSpec

BATCH, FEATURES, STEPS, DIM, OUT_DIM = 6, 5, 7, 16, 3
# Modalities for imputers, fusion heads and balancers: mixed widths and kinds, as in real data.
SPECS = [ModalitySpec("a", 5), ModalitySpec("b", 3, sequence=True, max_len=STEPS), ModalitySpec("c", 4)]
MISSING_RATES = {"a": 0.1, "b": 0.5, "c": 0.7}
CLOSE = {"atol": 1e-5, "rtol": 1e-4}  # for outputs recomputed in a batch of another shape

Factory = Callable[..., Any]


class ContractSkip(unittest.SkipTest):
    """The component cannot be built without options the suite cannot invent (e.g. a data path)."""


def contract_cases(registry: Registry, origin: str | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every registered component (of plugin ``origin`` if given), to parametrize over."""
    return [(c.kind, c.name) for c in registry.all() if origin is None or c.origin == origin]


def run_contract(registry: Registry, kind: str, name: str) -> None:
    """Run the check of a registered component's kind on it."""
    if kind not in KINDS:
        raise AssertionError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
    CHECKS[kind](registry.get(kind, name))


# ---------------------------------------------------------------------------------------- helpers


@dataclass
class _Ctx:
    """The component under check and the situation, so every failure names both."""

    c: Component
    where: str = ""

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            where = f" ({self.where})" if self.where else ""
            raise AssertionError(f"{self.c.kind} '{self.c.name}' (plugin {self.c.origin}): {message}{where}")

    def build(self, injected: dict[str, Any], opts: dict[str, Any], seed: int) -> Any:
        torch.manual_seed(seed)  # seeds differ between builds, so a state round trip means something
        try:
            return self.c.build(injected, dict(opts))
        except Exception as exc:
            self.expect(False, f"building with options {opts} failed: {type(exc).__name__}: {exc}")


def _as_component(obj: Component | Factory, kind: str) -> Component:
    """Accept a registered ``Component`` or a bare factory (handy before registering it)."""
    if isinstance(obj, Component):
        if obj.kind != kind:
            raise AssertionError(f"{obj.kind} '{obj.name}' given to the {kind} check")
        return obj
    return Component(kind, getattr(obj, "__qualname__", repr(obj)), obj, origin="local")


def option_sets(c: Component, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The option dicts a check builds ``c`` with (see the module docstring)."""
    raw: Any = options if options is not None else getattr(c.factory, "contract_options", None)
    if callable(raw):
        raw = raw()
    sets = [{}] if raw is None else [raw] if isinstance(raw, dict) else list(raw)
    for opts in sets:
        missing = [o.name for o in c.options() if o.required and o.name not in opts]
        if missing:
            raise ContractSkip(
                f"{c.kind} '{c.name}' (plugin {c.origin}) needs options {missing} that the contract suite "
                f"cannot invent; set {getattr(c.factory, '__qualname__', 'factory')}.contract_options to test it"
            )
    return sets


def _finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def _check_backward(ctx: _Ctx, module: nn.Module, total: Tensor, *, must_reach: bool = True) -> None:
    """Gradients are finite and (if ``must_reach``) reach at least one parameter."""
    params = [p for p in module.parameters() if p.requires_grad]
    module.zero_grad()
    if not total.requires_grad:
        ctx.expect(not params or not must_reach, "output is not connected to the module's parameters (no gradient)")
        return
    total.backward()
    grads = [p.grad for p in params if p.grad is not None]
    ctx.expect(not params or not must_reach or bool(grads), "no parameter received a gradient")
    ctx.expect(all(_finite(g) for g in grads), "non-finite gradients")


def _check_eval(
    ctx: _Ctx, module: nn.Module, run: Callable[[nn.Module], Tensor], rerun_row0: Callable[[nn.Module], Tensor]
) -> None:
    """Eval mode is deterministic and row 0's output ignores the other rows of its batch."""
    module.eval()
    with torch.no_grad():
        ref = run(module)
        ctx.expect(torch.equal(ref, run(module)), "eval mode is not deterministic (use the mean of stochastic parts)")
        independent = torch.allclose(rerun_row0(module), ref[0], **CLOSE)
        ctx.expect(independent, "a row's output depends on other rows of the batch")


def _check_state_round_trip(ctx: _Ctx, first: nn.Module, second: nn.Module, run: Callable[[nn.Module], Tensor]) -> None:
    """``first``'s state through safetensors into a differently seeded ``second``: identical eval outputs."""
    state = first.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    ctx.expect(not bad, f"state_dict entries {bad} are not tensors (checkpoints are safetensors)")
    second.load_state_dict(st_load(st_save({k: v.detach().clone().contiguous() for k, v in state.items()})))
    first.eval(), second.eval()
    with torch.no_grad():
        ctx.expect(torch.equal(run(first), run(second)), "eval outputs differ after a state_dict round trip")


def present_masks(batch: int, m: int, gen: torch.Generator) -> dict[str, Tensor]:
    """Named ``[batch, m]`` masks, each row with at least one present modality."""
    mixed = torch.rand(batch, m, generator=gen) < 0.5
    if m > 1:
        mixed[:, m - 1] = False  # one modality absent from the whole batch
        mixed[0] = False
        mixed[0, 1 if m > 2 else 0] = True  # a row with a single present modality
    mixed[~mixed.any(1), 0] = True
    single = torch.zeros(batch, m, dtype=torch.bool)
    single[torch.arange(batch), torch.arange(batch) % m] = True
    only_first = torch.zeros(batch, m, dtype=torch.bool)
    only_first[:, 0] = True
    everything = torch.ones(batch, m, dtype=torch.bool)
    return {"mixed": mixed, "all present": everything, "one per row": single, "only the first": only_first}


# ---------------------------------------------------------------------------------------- encoder


def _encoder_input(spec: ModalitySpec, batch: int, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
    if not spec.sequence:
        return torch.randn(batch, spec.dim, generator=gen), None
    steps = int(spec.max_len or STEPS)
    lengths = torch.randint(1, steps + 1, (batch,), generator=gen)
    lengths[0], lengths[-1] = steps, 1  # a full row and a single-frame row
    x = torch.randn(batch, steps, spec.dim, generator=gen)
    x = x * (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    return x, lengths


def check_encoder(component: Component | Factory, *, options: dict[str, Any] | None = None, dim: int = DIM) -> None:
    """Shapes, finiteness, gradients, eval determinism, per-sample independence, padding
    invariance (zero frames past ``lengths`` change nothing), a finite output for a length-0 row,
    and a state_dict round trip; on a vector and on a sequence modality."""
    c = _as_component(component, "encoder")
    kinds = tuple(getattr(c.factory, "contract_modalities", ("vector", "sequence")))
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            for kind in kinds:
                seq = kind == "sequence"
                spec = ModalitySpec("a", FEATURES, sequence=seq, max_len=STEPS if seq else None)
                _check_encoder_on(_Ctx(c, f"{kind} modality, options {opts}"), spec, opts, dim)


def _check_encoder_on(ctx: _Ctx, spec: ModalitySpec, opts: dict[str, Any], dim: int) -> None:
    gen = torch.Generator().manual_seed(0)
    injected = {"spec": spec, "dim": dim}
    enc = ctx.build(injected, opts, seed=0)
    ctx.expect(isinstance(enc, nn.Module), f"factory returned {type(enc).__name__}, not an nn.Module")
    x, lengths = _encoder_input(spec, BATCH, gen)
    enc.train()
    out = enc(x, lengths)
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    ctx.expect(shape == (BATCH, dim), f"output shape {shape}, expected {(BATCH, dim)}")
    ctx.expect(_finite(out), "non-finite output")
    _check_backward(ctx, enc, out.square().mean())
    one = enc(x[:1], None if lengths is None else lengths[:1])
    ctx.expect(tuple(one.shape) == (1, dim), f"output shape {tuple(one.shape)} for a batch of one")

    x2, lengths2 = _encoder_input(spec, BATCH, gen)  # other rows, same row 0
    x2[0] = x[0]
    if lengths is not None and lengths2 is not None:
        lengths2[0] = lengths[0]
    _check_eval(ctx, enc, lambda mod: mod(x, lengths), lambda mod: mod(x2, lengths2)[0])
    if lengths is not None:
        with torch.no_grad():
            padded = torch.cat([x, torch.zeros(BATCH, 3, spec.dim)], dim=1)
            ok = torch.allclose(enc(padded, lengths), enc(x, lengths), **CLOSE)
            ctx.expect(ok, "extra zero padding past lengths changes the output")
            empty, x0 = lengths.clone(), x.clone()
            empty[1], x0[1] = 0, 0.0
            ctx.expect(_finite(enc(x0, empty)), "a row of length 0 gives a non-finite output")
    _check_state_round_trip(ctx, enc, ctx.build(injected, opts, seed=1), lambda mod: mod(x, lengths))


# --------------------------------------------------------------------------------- imputer, fusion


def _latents(mask: Tensor, dim: int, gen: torch.Generator) -> Tensor:
    return torch.randn(*mask.shape, dim, generator=gen) * mask.unsqueeze(-1)  # absent rows zero, as the engine does


def check_imputer(component: Component | Factory, *, options: dict[str, Any] | None = None, dim: int = DIM) -> None:
    """Shapes and finiteness of ``z`` and of every ``[M]`` loss term under several masks (one
    modality absent from the whole batch, rows with a single present modality), gradients, eval
    determinism, that ``z`` at present positions ignores the ``h`` rows of absent modalities,
    per-sample independence, and a state_dict round trip."""
    c = _as_component(component, "imputer")
    m = len(SPECS)
    injected = {"specs": SPECS, "dim": dim}
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            gen = torch.Generator().manual_seed(0)
            ctx = _Ctx(c, f"options {opts}")
            imp = ctx.build(injected, opts, seed=0)
            ctx.expect(isinstance(imp, nn.Module), f"factory returned {type(imp).__name__}, not an nn.Module")
            masks = present_masks(BATCH, m, gen)
            for label, mask in masks.items():
                ctx.where = f"mask '{label}', options {opts}"
                imp.train()
                out = imp(_latents(mask, dim, gen).requires_grad_(True), mask)
                ctx.expect(isinstance(out, ImputerOutput), f"returned {type(out).__name__}, not ImputerOutput")
                shape = tuple(out.z.shape)
                ctx.expect(shape == (BATCH, m, dim), f"z shape {shape}, expected {(BATCH, m, dim)}")
                ctx.expect(_finite(out.z), "non-finite z")
                for group, term in out.losses.items():
                    ok = isinstance(group, str) and isinstance(term, Tensor)
                    ctx.expect(ok, f"losses must map str -> Tensor, got {group!r}: {type(term).__name__}")
                    shape = tuple(term.shape)
                    ctx.expect(shape == (m,), f"loss '{group}' has shape {shape}, expected ({m},)")
                    ctx.expect(_finite(term), f"loss '{group}' is not finite: {term.tolist()}")
                total = out.z.square().mean() + sum((t.sum() for t in out.losses.values()), torch.zeros(()))
                # with nothing to impute an imputer may legitimately leave its parameters unused
                _check_backward(ctx, imp, total, must_reach=label == "mixed")

            ctx.where = f"options {opts}"
            mask = masks["mixed"]
            h = _latents(mask, dim, gen)
            other_h, other_mask = _latents(masks["one per row"], dim, gen), masks["one per row"].clone()
            other_h[0], other_mask[0] = h[0], mask[0]
            _check_eval(ctx, imp, lambda mod: mod(h, mask).z, lambda mod: mod(other_h, other_mask).z[0])
            with torch.no_grad():
                noisy = h + torch.randn(h.shape, generator=gen) * (~mask).unsqueeze(-1)
                leak = not torch.allclose(imp(noisy, mask).z[mask], imp(h, mask).z[mask], atol=1e-6)
                ctx.expect(not leak, "z at present positions depends on the h rows of absent modalities")
                one = imp(h[:1], mask[:1]).z
                ctx.expect(tuple(one.shape) == (1, m, dim), f"z shape {tuple(one.shape)} for a batch of one")
            _check_state_round_trip(ctx, imp, ctx.build(injected, opts, seed=1), lambda mod: mod(h, mask).z)


def check_fusion(
    component: Component | Factory, *, options: dict[str, Any] | None = None, dim: int = DIM, out_dim: int = OUT_DIM
) -> None:
    """Output shape ``[B, out_dim]`` (also for ``out_dim=1``, regression) and finiteness under
    several masks, gradients, eval determinism, per-sample independence, state_dict round trip."""
    c = _as_component(component, "fusion")
    m = len(SPECS)
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            for width in (out_dim, 1):
                gen = torch.Generator().manual_seed(0)
                injected = {"specs": SPECS, "dim": dim, "out_dim": width}
                ctx = _Ctx(c, f"out_dim={width}, options {opts}")
                fus = ctx.build(injected, opts, seed=0)
                ctx.expect(isinstance(fus, nn.Module), f"factory returned {type(fus).__name__}, not an nn.Module")
                masks = present_masks(BATCH, m, gen)
                for label, mask in masks.items():
                    ctx.where = f"mask '{label}', out_dim={width}, options {opts}"
                    fus.train()
                    out = fus(torch.randn(BATCH, m, dim, generator=gen, requires_grad=True), mask)
                    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    ctx.expect(shape == (BATCH, width), f"output shape {shape}, expected {(BATCH, width)}")
                    ctx.expect(_finite(out), "non-finite output")
                    _check_backward(ctx, fus, out.square().mean())

                ctx.where = f"out_dim={width}, options {opts}"
                mask, z = masks["mixed"], torch.randn(BATCH, m, dim, generator=gen)
                other_z, other_mask = torch.randn(BATCH, m, dim, generator=gen), masks["one per row"].clone()
                other_z[0], other_mask[0] = z[0], mask[0]
                _check_eval(ctx, fus, lambda mod: mod(z, mask), lambda mod: mod(other_z, other_mask)[0])
                with torch.no_grad():
                    ctx.expect(tuple(fus(z[:1], mask[:1]).shape) == (1, width), "wrong output shape for a batch of one")
                _check_state_round_trip(ctx, fus, ctx.build(injected, opts, seed=1), lambda mod: mod(z, mask))


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
    balancer.modulate_gradients(model, stats)
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def check_balancer(component: Component | Factory, *, options: dict[str, Any] | None = None, steps: int = 5) -> None:
    """A ``Balancer`` with finite non-negative ``[M]`` weights through several observed steps
    (some with a modality absent from the batch), and a JSON-serialisable ``state_dict`` that,
    loaded into a fresh balancer, gives the same weights, the same gradient modulation, and the
    same weights and state again after one more ``observe``."""
    c = _as_component(component, "balancer")
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            _check_balancer_with(_Ctx(c, f"options {opts}"), opts, steps)


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
        ok = _finite(w) and bool((w >= 0).all())
        ctx.expect(ok, f"weights must be finite and >= 0, got {w.tolist()} at step {step}")
        bal.observe(step_stats(step, bal.target, len(names), gen))
        logged = bal.log_values()
        ok = all(isinstance(k, str) and isinstance(v, Tensor) for k, v in logged.items())
        ctx.expect(ok, "log_values() must map str -> Tensor")
    try:
        text = json.dumps(bal.state_dict())
    except (TypeError, ValueError) as exc:
        ctx.expect(False, f"state_dict() is not JSON-serialisable: {exc}")
    fresh = ctx.build(injected, opts, seed=1)
    fresh.load_state_dict(json.loads(text))
    same = torch.equal(fresh.weights(), bal.weights())
    ctx.expect(same, f"weights differ after load_state_dict: {fresh.weights().tolist()} vs {bal.weights().tolist()}")
    stats = step_stats(steps, bal.target, len(names), gen)
    grads, fresh_grads = _modulated_grads(bal, names, stats), _modulated_grads(fresh, names, stats)
    ctx.expect(all(_finite(g) for g in grads), "modulate_gradients produced non-finite gradients")
    same = all(torch.equal(a, b) for a, b in zip(grads, fresh_grads))
    ctx.expect(same, "modulate_gradients differs after load_state_dict")
    bal.observe(stats)
    fresh.observe(stats)
    ctx.expect(torch.equal(fresh.weights(), bal.weights()), "weights diverge one observe() after load_state_dict")
    same_state = json.dumps(fresh.state_dict()) == json.dumps(bal.state_dict())
    ctx.expect(same_state, "state_dict diverges one observe() after load_state_dict")


# ---------------------------------------------------------------------------------------- dataset


def check_dataset(component: Component | Factory, *, options: dict[str, Any] | None = None) -> None:
    """Modality and task specs, every split's tensors (shapes, dtypes, zero padding, valid
    targets), ids unique across splits, and the same tensors when built twice."""
    c = _as_component(component, "dataset")
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            _check_dataset_with(_Ctx(c, f"options {opts}"), opts)


def _check_dataset_with(ctx: _Ctx, opts: dict[str, Any]) -> None:
    ds = ctx.build({}, opts, seed=0)
    ctx.expect(isinstance(ds, Dataset), "result lacks modalities, task or split()")
    specs = ds.modalities
    ok = bool(specs) and all(isinstance(s, ModalitySpec) for s in specs)
    ctx.expect(ok, "modalities must be a non-empty list of ModalitySpec")
    names = [s.name for s in specs]
    ctx.expect(len(set(names)) == len(names), f"modality names are not unique: {names}")
    plain = all(n and "." not in n and not any(ch.isspace() for ch in n) for n in names)
    ctx.expect(plain, f"modality names must be plain words without dots (recipes use them as keys): {names}")
    for s in specs:
        ok = s.dim >= 1 and (not s.sequence or (s.max_len or 0) >= 1)
        ctx.expect(ok, f"modality '{s.name}' needs dim >= 1 (and max_len >= 1 if a sequence)")
    task = ds.task
    ctx.expect(isinstance(task, TaskSpec), f"task is {type(task).__name__}, not TaskSpec")
    if task.kind == "classification":
        classes = task.num_classes or 0
        ctx.expect(classes >= 2, f"a classification task needs num_classes >= 2, got {task.num_classes}")
        names_ok = task.class_names is None or len(task.class_names) == classes
        ctx.expect(names_ok, "class_names must have num_classes entries")
    splits = {name: _check_split(ctx, ds, name) for name in ("train", "val", "test")}
    ids = torch.cat([s.ids for s in splits.values()])
    unique = int(torch.unique(ids).numel()) == int(ids.numel())
    ctx.expect(unique, "sample ids are not unique across train, val and test")
    again, train = ctx.build({}, opts, seed=1).split("train"), splits["train"]
    same = torch.equal(again.ids, train.ids) and torch.equal(again.target, train.target)
    same = same and all(torch.equal(again.features[k], v) for k, v in train.features.items())
    ctx.expect(same, "building twice gives different train tensors (masks follow ids: data must be stable)")


def _check_split(ctx: _Ctx, ds: Dataset, name: str) -> SplitData:
    sd = ds.split(name)
    ctx.expect(isinstance(sd, SplitData), f"split('{name}') returned {type(sd).__name__}, not SplitData")
    n = len(sd)
    ctx.expect(n > 0, f"split '{name}' is empty")
    names = sorted(s.name for s in ds.modalities)
    ctx.expect(sorted(sd.features) == names, f"split '{name}' features {sorted(sd.features)} != modalities {names}")
    seq = sorted(s.name for s in ds.modalities if s.sequence)
    ctx.expect(sorted(sd.lengths) == seq, f"split '{name}' lengths {sorted(sd.lengths)} != sequence modalities {seq}")
    for spec in ds.modalities:
        x, at = sd.features[spec.name], f"split '{name}' modality '{spec.name}'"
        shape = (n, spec.max_len, spec.dim) if spec.sequence else (n, spec.dim)
        ok = tuple(x.shape) == shape and x.is_floating_point()
        ctx.expect(ok, f"{at}: {x.dtype} {tuple(x.shape)}, expected float {shape}")
        ctx.expect(_finite(x), f"{at} has non-finite features")
        if spec.sequence:
            lengths = sd.lengths[spec.name]
            ctx.expect(lengths.dtype == torch.int64 and tuple(lengths.shape) == (n,), f"{at}: lengths must be int64 [{n}]")
            in_range = bool(((lengths >= 0) & (lengths <= x.shape[1])).all())
            ctx.expect(in_range, f"{at}: lengths outside [0, {x.shape[1]}]")
            padding = torch.arange(x.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
            ctx.expect(bool((x[padding] == 0).all()), f"{at} is not zero past its lengths")
    ctx.expect(sd.ids.dtype == torch.int64 and tuple(sd.ids.shape) == (n,), f"split '{name}' ids must be int64 [{n}]")
    ctx.expect(tuple(sd.target.shape) == (n,), f"split '{name}' target shape {tuple(sd.target.shape)}, expected ({n},)")
    if ds.task.kind == "classification":
        classes = int(ds.task.num_classes or 0)
        ok = sd.target.dtype == torch.int64 and bool(((sd.target >= 0) & (sd.target < classes)).all())
        ctx.expect(ok, f"split '{name}' targets must be int64 class indices in [0, {classes})")
    else:
        ok = sd.target.is_floating_point() and _finite(sd.target)
        ctx.expect(ok, f"split '{name}' regression targets must be finite floats")
    return sd


CHECKS: dict[str, Callable[[Component], None]] = {
    "dataset": check_dataset,
    "encoder": check_encoder,
    "imputer": check_imputer,
    "fusion": check_fusion,
    "balancer": check_balancer,
}
