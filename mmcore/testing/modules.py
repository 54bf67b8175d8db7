"""Contract checks of the module kinds: encoders, imputers and fusion heads."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

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
    _check_eval,
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
    _expect_tensor(ctx, out, (BATCH, dim), "output")
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
    determinism, that ``z`` (at every position) and the loss terms ignore the ``h`` rows of
    absent modalities,
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
                _expect_tensor(ctx, out.z, (BATCH, m, dim), "z")
                ctx.expect(_finite(out.z), "non-finite z")
                for group, term in out.losses.items():
                    ok = isinstance(group, str) and isinstance(term, Tensor)
                    ctx.expect(ok, f"losses must map str -> Tensor, got {group!r}: {type(term).__name__}")
                    shape = tuple(term.shape)
                    ctx.expect(shape == (m,), f"loss '{group}' has shape {shape}, expected ({m},)")
                    _expect_tensor(ctx, term, (m,), f"loss '{group}'", double_ok=True)
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
                    _expect_tensor(ctx, out, (BATCH, width), "output", double_ok=True)
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
