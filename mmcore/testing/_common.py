"""Shared pieces of the contract checks: tiny sizes, the failure context, eval and round-trip checks."""

from __future__ import annotations

import importlib.util
import re
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn
from torch.nn.parameter import is_lazy

from mmcore.components import ContractSkip  # noqa: F401 - defined with the component protocol, exported here
from mmcore.engine.outputs import tensor_problem
from mmcore.errors import RegistryError
from mmcore.registry import Component
from mmcore.types import (
    ModalitySpec,
)

BATCH, FEATURES, STEPS, DIM, OUT_DIM = 6, 5, 7, 16, 3
# Modalities for imputers, fusion heads and balancers: mixed widths and kinds, as in real data.
SPECS = [ModalitySpec("a", 5), ModalitySpec("b", 3, sequence=True, max_len=STEPS), ModalitySpec("c", 4)]
MISSING_RATES = {"a": 0.1, "b": 0.5, "c": 0.7}
CLOSE = {"atol": 1e-5, "rtol": 1e-4}  # for outputs recomputed in a batch of another shape

Factory = Callable[..., Any]




# ---------------------------------------------------------------------------------------- helpers


@dataclass
class _Ctx:
    """The component under check and the situation, so every failure names both."""

    c: Component
    where: str = ""

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(self.line(message))

    def advise(self, condition: bool, message: str) -> None:
        """A rule new in this release: a ``FutureWarning`` now, so that a plugin whose suite
        passed before still passes, and a failure in a later version."""
        if not condition:
            warnings.warn(f"{self.line(message)}; a later version of the contract suite will fail on it", FutureWarning, stacklevel=3)

    def line(self, message: str) -> str:
        """``message`` with the component in front and the situation behind, on one line."""
        where = f" ({self.where})" if self.where else ""
        return f"{self.c.kind} '{self.c.name}' (plugin {self.c.origin}): {message}{where}"

    def build(self, injected: dict[str, Any], opts: dict[str, Any], seed: int) -> Any:
        torch.manual_seed(seed)  # seeds differ between builds, so a state round trip means something
        try:
            return self.c.build(injected, dict(opts))
        except RegistryError as exc:  # out-of-range options or the wrong type: it names the component already
            raise AssertionError(f"{exc} ({self.where})" if self.where else str(exc)) from None
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
    absent = [m for m in getattr(c.factory, "contract_requires", ()) if importlib.util.find_spec(m) is None]
    if absent:  # an optional dependency (an extra) that is not installed here
        raise ContractSkip(f"{c.kind} '{c.name}' (plugin {c.origin}) needs {', '.join(absent)}, which is not installed")
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


def _expect_tensor(ctx: _Ctx, value: Any, shape: tuple[int, ...], what: str, double_ok: bool = False) -> None:
    """The engine's own rule for what it receives (``mmcore.engine.outputs``): a float tensor of
    ``shape`` on the input's device, float64 only for loss terms and predictions. A run refuses anything else."""
    problem = tensor_problem(value, shape, what, torch.device("cpu"), double_ok)
    ctx.expect(problem is None, f"{problem} (the engine refuses it)")


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
    try:
        second.load_state_dict(st_load(st_save({k: v.detach().clone().contiguous() for k, v in state.items()})))
    except RuntimeError as exc:  # torch's message spans lines; the checkpoint of a run would not load either
        ctx.expect(False, f"its state_dict does not load into a fresh build: {' '.join(str(exc).split())}")
    first.eval(), second.eval()
    with torch.no_grad():
        same = torch.equal(run(first), run(second))
    outside = _outside_state(first, (Tensor, nn.Module))
    hint = f" (not in its state_dict: attributes {outside}; register tensors as buffers, modules in nn.ModuleList)" if outside else ""
    ctx.expect(same, f"eval outputs differ after a state_dict round trip{hint}")


def _outside_state(module: nn.Module, kinds: tuple[type, ...]) -> list[str]:
    """Public attributes holding ``kinds`` (alone, or in a plain list, tuple or dict), which
    ``state_dict``, ``to()`` and ``parameters()`` do not see: ``self.layers = [nn.Linear(...)]``."""
    found = []
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            if not name.startswith("_") and any(isinstance(v, kinds) for v in items):
                found.append(f"{prefix}.{name}" if prefix else name)
    return found


def _check_built(ctx: _Ctx, module: nn.Module) -> list[str]:
    """No lazy parameter or buffer after building; returns the state's keys, to compare after a forward.

    The engine counts and optimises a model's parameters before its first forward, so it refuses
    uninitialised ones (``nn.LazyLinear``) when it builds the model."""
    lazy = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if is_lazy(t)]
    ctx.expect(not lazy, f"{lazy} are uninitialised after building (a Lazy module?), which the engine refuses: "
                         "give the layer its input size")
    hidden = _outside_state(module, (nn.Module,))
    ctx.advise(not hidden, f"attributes {hidden} hold modules outside nn.ModuleList/nn.ModuleDict: their parameters are "
                           "not trained, saved or moved to the device")
    return list(module.state_dict())


def _check_no_new_state(ctx: _Ctx, module: nn.Module, built: list[str]) -> None:
    """The state after a forward has the keys it had when built."""
    new = [k for k in module.state_dict() if k not in built]
    ctx.expect(not new, f"parameters {new} appear only after the first forward: the optimizer, built before it, never "
                        "trains them and a checkpoint does not load into a fresh build; create them in __init__")


# what torch says when a forward mixes devices (meta: "... is not on the expected device meta!")
_MIXED_DEVICES = re.compile(r"expected device|same device", re.IGNORECASE)


def _check_device(
    ctx: _Ctx, module: Any, call: Callable[[torch.device], Any], situation: str = "with its inputs on {}",
    fix: str = "create tensors with device=x.device",
) -> None:
    """Outputs stay on the device ``module`` was moved to (a run on a GPU refuses a CPU tensor).
    Without CUDA the meta device stands in: shapes only, so a call it cannot run (an op without a
    meta kernel, a host read such as ``lengths.cpu()``) proves nothing and is let through.
    ``module`` is a throwaway build: it is moved. New in this release, so a warning."""
    device = torch.device("cuda" if torch.cuda.is_available() else "meta")
    where = situation.format(device.type)
    try:
        module.to(device)
        with torch.no_grad():
            out = call(device)
    except Exception as exc:
        mixed = bool(_MIXED_DEVICES.search(str(exc)))
        ctx.advise(not mixed, f"{where} it mixes devices ({' '.join(str(exc).split())}); {fix}")
        return
    outputs = [out] if isinstance(out, Tensor) else list(out) if isinstance(out, tuple) else [out.z, *out.losses.values()]
    off = sorted({str(t.device) for t in outputs if isinstance(t, Tensor) and t.device.type != device.type})
    ctx.advise(not off, f"{where} it returns a tensor on {', '.join(off)}; {fix}")


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
