"""Contract checks of the module kinds: encoders, imputers and fusion heads."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from mmcore.lossgroups import declared_groups
from mmcore.registry import Component
from mmcore.testing._common import (
    BATCH,
    CLOSE,
    DIM,
    FEATURES,
    OUT_DIM,
    SPECS,
    STEPS,
    Factory,
    _as_component,
    _check_backward,
    _check_built,
    _check_device,
    _check_eval,
    _check_no_new_state,
    _check_state_round_trip,
    _Ctx,
    _expect_tensor,
    _finite,
    option_sets,
    present_masks,
)
from mmcore.types import (
    ImputerOutput,
    ModalitySpec,
)

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
    a batch of one row in training, parameters all made at build (none lazy), an input that a
    second call finds unchanged, and a state_dict round trip; on a vector and on a sequence
    modality. Warned (``FutureWarning``, new in this release): an input changed in place at all,
    a row depending on other rows in training, a non-finite output or gradient from an all-zero
    row, and outputs off the inputs' device (CUDA, else the meta device)."""
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
    built = _check_built(ctx, enc)
    x, lengths = _encoder_input(spec, BATCH, gen)
    enc.train()
    seen = x.clone()
    out = enc(seen, lengths)
    _check_no_new_state(ctx, enc, built)
    if not torch.equal(seen, x):
        _input_changed(ctx, enc, x, lengths)
    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    ctx.expect(shape == (BATCH, dim), f"output shape {shape}, expected {(BATCH, dim)}")
    _expect_tensor(ctx, out, (BATCH, dim), "output")
    ctx.expect(_finite(out), "non-finite output")
    _check_backward(ctx, enc, out.square().mean())
    try:  # a batch's last rows, or a sequence modality present in one row only, make one
        one = enc(x[:1], None if lengths is None else lengths[:1])
    except Exception as exc:
        problem = f"a batch of one row in training raises {type(exc).__name__}: {' '.join(str(exc).split())}"
        raise AssertionError(ctx.line(problem)) from exc
    ctx.expect(tuple(one.shape) == (1, dim), f"output shape {tuple(one.shape)} for a batch of one")

    x2, lengths2 = _encoder_input(spec, BATCH, gen)  # other rows, same row 0
    x2[0] = x[0]
    if lengths is not None and lengths2 is not None:
        lengths2[0] = lengths[0]
    _check_rows_in_training(ctx, enc, x, lengths, gen)
    _check_eval(ctx, enc, lambda mod: mod(x, lengths), lambda mod: mod(x2, lengths2)[0])
    if lengths is not None:
        with torch.no_grad():
            padded = torch.cat([x, torch.zeros(BATCH, 3, spec.dim)], dim=1)
            ok = torch.allclose(enc(padded, lengths), enc(x, lengths), **CLOSE)
            ctx.expect(ok, "extra zero padding past lengths changes the output")
            empty, x0 = lengths.clone(), x.clone()
            empty[1], x0[1] = 0, 0.0
            ctx.expect(_finite(enc(x0, empty)), "a row of length 0 gives a non-finite output")
    _check_zero_row(ctx, enc, x, lengths)
    _check_state_round_trip(ctx, enc, ctx.build(injected, opts, seed=1), lambda mod: mod(x, lengths))
    elsewhere = ctx.build(injected, opts, seed=2).eval()
    _check_device(ctx, elsewhere, lambda dev: elsewhere(x.to(dev), None if lengths is None else lengths.to(dev)))



def _input_changed(ctx: _Ctx, enc: nn.Module, x: Tensor, lengths: Tensor | None) -> None:
    """Forward wrote into its input. Evaluation hands encoders views of the split's tensors, so
    where a second call on the changed tensor gives another output, every later evaluation (each
    epoch's validation, the test) computes on other data: a failure. Where it does not (an
    in-place clamp), the numbers survive but the caller's data changed: a warning for now."""
    why = "forward modifies its input x in place (evaluation passes views of the split's data"
    enc.eval()
    with torch.no_grad():
        data = x.clone()
        first = enc(data, lengths)
        again = torch.equal(enc(data, lengths), first)
    ctx.expect(again, f"{why}, and a second call on the same tensor gives another output); compute on a copy")
    ctx.advise(False, f"{why}); compute on a copy")


def _check_zero_row(ctx: _Ctx, enc: nn.Module, x: Tensor, lengths: Tensor | None) -> None:
    """A row of zeros (of length 0 for a sequence) is how absent rows can reach an encoder
    (``data.nonfinite: absent`` zero-fills them, ``train.absent_rows: encode`` passes them). The
    engine selects zeros in place of their encodings, but a NaN inside the encoder (``x / x.norm()``)
    still makes its parameters' gradients NaN, and the run stops as "diverged". New in this
    release, so a warning."""
    x0 = x.clone()
    x0[1] = 0.0
    lengths0 = None if lengths is None else lengths.clone().index_fill_(0, torch.tensor([1]), 0)
    what = "an all-zero row" if lengths is None else "a row of length 0"
    enc.train()
    enc.zero_grad()
    out = enc(x0, lengths0)
    ctx.advise(_finite(out[1]), f"{what} (how absent rows arrive under data.nonfinite: absent) gives a non-finite "
                                "output in training")
    keep = torch.ones(out.shape[0], 1, dtype=torch.bool)
    keep[1] = False
    masked = torch.where(keep, out, torch.zeros((), dtype=out.dtype))  # as the engine zeroes absent rows
    if masked.requires_grad:
        masked.square().mean().backward()
        grads = [p.grad for p in enc.parameters() if p.grad is not None]
        ctx.advise(all(_finite(g) for g in grads), f"{what} gives non-finite gradients although its output is masked out, "
                                                   "as the engine masks absent rows (a division by its norm?)")
    enc.zero_grad()


def _check_rows_in_training(ctx: _Ctx, enc: nn.Module, x: Tensor, lengths: Tensor | None, gen: torch.Generator) -> None:
    """In training too a row's encoding is its own (``CONTRIBUTING.md``: no batch statistics such
    as BatchNorm's): training encodes a sequence modality's present rows only, evaluation chunks of
    any size. Other rows change, lengths stay (packing order), and the same seed gives dropout the
    same draws. New in this release, so a warning."""
    other = torch.randn(x.shape, generator=gen) * (x != 0)  # zero padding stays zero
    other[0] = x[0]
    enc.train()
    with torch.no_grad():
        torch.manual_seed(1)
        ref = enc(x.clone(), lengths)[0]
        torch.manual_seed(1)
        alone = enc(other, lengths)[0]
    same = torch.allclose(ref, alone, **CLOSE)
    ctx.advise(same, "in training a row's output depends on other rows of the batch "
                     "(statistics across the batch, such as BatchNorm's?)")


# --------------------------------------------------------------------------------- imputer, fusion


def _latents(mask: Tensor, dim: int, gen: torch.Generator) -> Tensor:
    return torch.randn(*mask.shape, dim, generator=gen) * mask.unsqueeze(-1)  # absent rows zero, as the engine does


def _as_the_engine_passes(values: Tensor, mask: Tensor | None) -> Tensor:
    """``values`` as the output of an operation with a gradient, as the engine's h and z are: a
    module that writes into its input in place (``h[~present] = token``) works in a run, and
    would fail here on a leaf tensor with torch's own error."""
    leaf = values.requires_grad_(True)
    return leaf * 1.0 if mask is None else torch.where(mask.unsqueeze(-1), leaf, torch.zeros(()))


def _check_input_kept(ctx: _Ctx, given: Tensor, before: Tensor, name: str, why: str) -> None:
    """An input that a forward changed in place (new in this release, so a warning)."""
    ctx.advise(torch.equal(given.detach(), before), f"forward modifies its input {name} in place ({why}); compute on a copy")


def _check_nothing_present(ctx: _Ctx, module: nn.Module, mask: Tensor, call: Callable[[Tensor], Any], what: str) -> None:
    """A row where every modality is absent (``missing.*.min_present: 0`` allows it) gives
    finite outputs, in training and in eval mode; new in this release, so a warning."""
    empty = mask.clone()
    empty[0] = False
    where = "in a row where every modality is absent (min_present: 0)"
    for training in (True, False):
        module.train(training)
        try:
            with torch.no_grad():
                out = call(empty)
        except Exception as exc:
            ctx.advise(False, f"raises {type(exc).__name__} {where}: {' '.join(str(exc).split())}")
            return
        outputs = [out] if isinstance(out, Tensor) else [out.z, *out.losses.values()]
        ctx.advise(all(_finite(t) for t in outputs), f"non-finite {what} {where}, in {'training' if training else 'eval mode'}")


def _check_declared_groups(ctx: _Ctx, opts: dict[str, Any], returned: set[str]) -> None:
    """The factory's ``loss_groups`` (``mmcore.lossgroups``) are the groups it returns: ``mmcore
    validate`` checks ``balancer.target`` against the declaration, a run against the returns, so
    a mismatch lets validate pass a recipe the run refuses (or refuse one it would run). New in
    this release, so a warning."""
    declared = declared_groups(ctx.c.factory, opts)
    ctx.advise(declared is None or declared == returned, f"declares loss_groups {sorted(declared or ())} but returns "
                                                         f"{sorted(returned)} (validate checks balancer.target against the former)")


def check_imputer(component: Component | Factory, *, options: dict[str, Any] | None = None, dim: int = DIM) -> None:
    """Shapes and finiteness of ``z`` and of every ``[M]`` loss term under several masks (one
    modality absent from the whole batch, rows with a single present modality), gradients, eval
    determinism, that ``z`` (at every position) and the loss terms ignore the ``h`` rows of
    absent modalities, per-sample independence, parameters all made at build, and a state_dict
    round trip. Warned (new in this release): a non-zero loss term without a gradient, loss
    groups other than the declared ``loss_groups``, a non-finite output for a row with nothing
    present, ``h`` changed in place, outputs off the inputs' device."""
    c = _as_component(component, "imputer")
    m = len(SPECS)
    injected = {"specs": SPECS, "dim": dim}
    with torch.random.fork_rng(devices=[]):
        for opts in option_sets(c, options):
            gen = torch.Generator().manual_seed(0)
            ctx = _Ctx(c, f"options {opts}")
            imp = ctx.build(injected, opts, seed=0)
            ctx.expect(isinstance(imp, nn.Module), f"factory returned {type(imp).__name__}, not an nn.Module")
            built = _check_built(ctx, imp)
            masks = present_masks(BATCH, m, gen)
            returned: set[str] = set()
            for label, mask in masks.items():
                ctx.where = f"mask '{label}', options {opts}"
                imp.train()
                h = _as_the_engine_passes(_latents(mask, dim, gen), mask)
                before = h.detach().clone()
                out = imp(h, mask)
                _check_input_kept(ctx, h, before, "h", "the engine hands the same h to balancers and fusion probes after the call")
                _check_no_new_state(ctx, imp, built)
                ctx.expect(isinstance(out, ImputerOutput), f"returned {type(out).__name__}, not ImputerOutput")
                shape = tuple(out.z.shape)
                ctx.expect(shape == (BATCH, m, dim), f"z shape {shape}, expected {(BATCH, m, dim)}")
                _expect_tensor(ctx, out.z, (BATCH, m, dim), "z")
                ctx.expect(_finite(out.z), "non-finite z")
                for group, term in out.losses.items():
                    ok = isinstance(group, str) and isinstance(term, Tensor)
                    ctx.expect(ok, f"losses must map str -> Tensor, got {group!r}: {type(term).__name__}")
                    shape = tuple(term.shape)
                    ctx.expect(shape == (m,), f"loss '{group}' has shape {shape}, expected ({m},)")
                    _expect_tensor(ctx, term, (m,), f"loss '{group}'", double_ok=True)
                    ctx.expect(_finite(term), f"loss '{group}' is not finite: {term.tolist()}")
                returned.update(out.losses)
                for group, term in out.losses.items():  # a constant term (all zeros: a group switched off) is fine
                    trains = term.requires_grad or not bool(term.detach().any())
                    ctx.advise(trains, f"loss '{group}' carries no gradient (computed on detached tensors?): it is "
                                       "logged and weighed by the balancer but trains nothing")
                total = out.z.square().mean() + sum((t.sum() for t in out.losses.values()), torch.zeros(()))
                # with nothing to impute an imputer may legitimately leave its parameters unused
                _check_backward(ctx, imp, total, must_reach=label == "mixed")

            ctx.where = f"options {opts}"
            _check_declared_groups(ctx, opts, returned)
            mask = masks["mixed"]
            own = torch.Generator().manual_seed(1)  # the checks above and below see the inputs they always saw
            _check_nothing_present(ctx, imp, mask, lambda m: imp(_latents(m, dim, own), m), "z")
            h = _latents(mask, dim, gen)
            other_h, other_mask = _latents(masks["one per row"], dim, gen), masks["one per row"].clone()
            other_h[0], other_mask[0] = h[0], mask[0]
            _check_eval(ctx, imp, lambda mod: mod(h, mask).z, lambda mod: mod(other_h, other_mask).z[0])
            with torch.no_grad():
                noisy = h + torch.randn(h.shape, generator=gen) * (~mask).unsqueeze(-1)
                # The rule (hookspecs.register_imputers): every output is a function of the present
                # rows only, z at absent positions and the loss terms included.
                clean, dirty = imp(h, mask), imp(noisy, mask)
                leak = not torch.allclose(dirty.z[mask], clean.z[mask], atol=1e-6)
                ctx.expect(not leak, "z at present positions depends on the h rows of absent modalities")
                leak = not torch.allclose(dirty.z[~mask], clean.z[~mask], atol=1e-6)
                ctx.expect(not leak, "z at absent positions is computed from the h rows of absent modalities")
                changed = [g for g, t in clean.losses.items() if not torch.allclose(dirty.losses.get(g, t * float("nan")), t, atol=1e-6)]
                ctx.expect(not changed, f"loss terms {changed} depend on the h rows of absent modalities")
                one = imp(h[:1], mask[:1]).z
                ctx.expect(tuple(one.shape) == (1, m, dim), f"z shape {tuple(one.shape)} for a batch of one")
            _check_state_round_trip(ctx, imp, ctx.build(injected, opts, seed=1), lambda mod: mod(h, mask).z)
            elsewhere = ctx.build(injected, opts, seed=2).eval()
            _check_device(ctx, elsewhere, lambda dev: elsewhere(h.to(dev), mask.to(dev)))


def check_fusion(
    component: Component | Factory, *, options: dict[str, Any] | None = None, dim: int = DIM, out_dim: int = OUT_DIM
) -> None:
    """Output shape ``[B, out_dim]`` (also for ``out_dim=1``, regression) and finiteness under
    several masks, gradients, eval determinism, per-sample independence, parameters all made at
    build, state_dict round trip. Warned (new in this release): a non-finite output for a row
    with nothing present, ``z`` changed in place, outputs off the inputs' device.
    ``z`` at absent positions is the imputer's completion: a head may read it."""
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
                built = _check_built(ctx, fus)
                masks = present_masks(BATCH, m, gen)
                for label, mask in masks.items():
                    ctx.where = f"mask '{label}', out_dim={width}, options {opts}"
                    fus.train()
                    z = _as_the_engine_passes(torch.randn(BATCH, m, dim, generator=gen), None)
                    before = z.detach().clone()
                    out = fus(z, mask)
                    _check_input_kept(ctx, z, before, "z", "the unimodal heads read z after the fusion, and autograd may need it")
                    _check_no_new_state(ctx, fus, built)
                    shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
                    ctx.expect(shape == (BATCH, width), f"output shape {shape}, expected {(BATCH, width)}")
                    _expect_tensor(ctx, out, (BATCH, width), "output", double_ok=True)
                    ctx.expect(_finite(out), "non-finite output")
                    _check_backward(ctx, fus, out.square().mean())

                ctx.where = f"out_dim={width}, options {opts}"
                latents = torch.randn(BATCH, m, dim, generator=torch.Generator().manual_seed(1))  # gen's draws as before
                _check_nothing_present(ctx, fus, masks["mixed"], lambda p: fus(latents, p), "output")
                mask, z = masks["mixed"], torch.randn(BATCH, m, dim, generator=gen)
                other_z, other_mask = torch.randn(BATCH, m, dim, generator=gen), masks["one per row"].clone()
                other_z[0], other_mask[0] = z[0], mask[0]
                _check_eval(ctx, fus, lambda mod: mod(z, mask), lambda mod: mod(other_z, other_mask)[0])
                with torch.no_grad():
                    ctx.expect(tuple(fus(z[:1], mask[:1]).shape) == (1, width), "wrong output shape for a batch of one")
                _check_state_round_trip(ctx, fus, ctx.build(injected, opts, seed=1), lambda mod: mod(z, mask))
                elsewhere = ctx.build(injected, opts, seed=2).eval()
                _check_device(ctx, elsewhere, lambda dev: elsewhere(z.to(dev), mask.to(dev)))
