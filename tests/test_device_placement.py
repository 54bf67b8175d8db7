"""Every installed balancer and module keeps its tensors on the device it was moved to.

CI has no GPU, and a tensor made on the CPU inside a forward or a balancer (a factory call
without ``device=``, a state loaded from JSON) fails only on one. PyTorch's ``meta`` device
stands in for the other device here: mixing a meta tensor with a CPU one raises the same
device-mismatch error as mixing CUDA and CPU. Code that needs values (``nonzero``, ``.item()``,
host reads) cannot run on meta; such a case is skipped by its error, and the tests assert that
enough ran for the check to mean something.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
import torch
from torch import Tensor, nn

from mmcore.plugins import get_registry
from mmcore.testing import ContractSkip, option_sets
from mmcore.testing._common import BATCH, DIM, OUT_DIM, SPECS, _Ctx, present_masks
from mmcore.testing.balancers import MISSING_RATES, step_stats
from mmcore.testing.modules import _encoder_input, _latents

META = torch.device("meta")
NO_DATA = ("Cannot copy out of meta tensor", "register_meta function for torch.nonzero")  # needs values


def _tensors(obj: Any, path: str, depth: int = 0) -> Iterator[tuple[str, Tensor]]:
    """The tensors a balancer keeps: attributes, and inside dicts, lists and plain objects."""
    if isinstance(obj, Tensor):
        yield path, obj
    elif isinstance(obj, nn.Module) or depth > 3:  # a calibration module moves with the model
        return
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{path}[{k!r}]", depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{path}[{i}]", depth + 1)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for k, v in vars(obj).items():
            yield from _tensors(v, f"{path}.{k}", depth + 1)


def _option_sets(kind: str, name: str) -> list[dict[str, Any]]:
    try:
        return option_sets(get_registry().get(kind, name))
    except ContractSkip as skip:
        pytest.skip(str(skip))


@pytest.mark.parametrize("name", get_registry().names("balancer"))
def test_a_moved_balancer_keeps_every_tensor_there_also_after_loading_a_state(name: str) -> None:
    names = [s.name for s in SPECS]
    injected = {"modalities": names, "missing_rates": dict(MISSING_RATES)}
    component = get_registry().get("balancer", name)
    for opts in _option_sets("balancer", name):
        ctx = _Ctx(component, f"options {opts}")
        balancer = ctx.build(injected, opts, seed=0)
        gen = torch.Generator().manual_seed(0)
        for step in range(3):
            balancer.observe(step_stats(step, balancer.target, len(names), gen))
        state = json.loads(json.dumps(balancer.state_dict()))
        moved = [p for p, t in _tensors(balancer.to(META), "balancer") if t.device != META]
        assert not moved, f"{name} {opts}: still on the CPU after to(): {moved}"
        assert balancer.weights().device == META
        fresh = ctx.build(injected, opts, seed=1).to(META)
        fresh.load_state_dict(state)
        loaded = [p for p, t in _tensors(fresh, "balancer") if t.device != META]
        assert not loaded, f"{name} {opts}: on the CPU after load_state_dict on a moved balancer: {loaded}"
        assert fresh.weights().device == META


def _forward(kind: str, module: nn.Module, gen: torch.Generator, spec: Any = None) -> None:
    if kind == "encoder":
        x, lengths = _encoder_input(spec, BATCH, gen)
        if getattr(module, "frames", None) == "auto":
            module.frames = "padded"  # auto reads the lengths on the host; padded and packed are the same function
        module(x.to(META), None if lengths is None else lengths.to(META))
        return
    mask = next(iter(present_masks(BATCH, len(SPECS), gen).values()))
    module(_latents(mask, DIM, gen).to(META), mask.to(META))


def _cases() -> list[tuple[str, str]]:
    return [(kind, name) for kind in ("encoder", "imputer", "fusion") for name in get_registry().names(kind)]


@pytest.mark.parametrize("kind,name", _cases(), ids=[f"{k}:{n}" for k, n in _cases()])
def test_a_moved_module_makes_no_tensor_elsewhere_in_its_forward(kind: str, name: str) -> None:
    component = get_registry().get(kind, name)
    ran = 0
    for opts in _option_sets(kind, name):
        ctx = _Ctx(component, f"options {opts}")
        for spec in SPECS if kind == "encoder" else [None]:
            injected: dict[str, Any] = {"spec": spec, "dim": DIM} if kind == "encoder" else {"specs": SPECS, "dim": DIM}
            if kind == "fusion":
                injected["out_dim"] = OUT_DIM
            module = ctx.build(injected, opts, seed=0).to(META)
            for training in (True, False):
                try:
                    _forward(kind, module.train(training), torch.Generator().manual_seed(0), spec)
                    ran += 1
                except NotImplementedError as exc:  # the forward needs values: not checkable on meta
                    assert any(text in str(exc) for text in NO_DATA), f"{kind} {name} {opts}: {exc}"
    if ran == 0:
        pytest.skip(f"{kind} {name}: every forward needs values (host reads), none runs on meta")


def test_the_device_check_runs_the_flagship_paths() -> None:
    """The check means something: the transformer and RedCore's imputer (training) run on meta,
    the balancer scan finds a balancer's tensors, and mixing devices raises."""
    registry = get_registry()
    encoder = registry.get("encoder", "mmcore.transformer").build({"spec": SPECS[-1], "dim": DIM}, {"frames": "padded"})
    _forward("encoder", encoder.to(META).train(), torch.Generator().manual_seed(0), SPECS[-1])
    imputer = registry.get("imputer", "redcore.vib").build({"specs": SPECS, "dim": DIM}, {})
    _forward("imputer", imputer.to(META).train(), torch.Generator().manual_seed(0))
    uniform = registry.get("balancer", "mmcore.uniform").build({"modalities": ["a", "b"], "missing_rates": {"a": 0.1, "b": 0.5}}, {})
    kept = dict(_tensors(uniform, "balancer"))
    assert "balancer.w" in kept and kept["balancer.w"].device.type == "cpu"  # the scan finds what a balancer keeps
    with pytest.raises(RuntimeError, match="device"):  # and a CPU tensor in a forward is caught
        torch.ones(2) + torch.ones(2, device=META)
