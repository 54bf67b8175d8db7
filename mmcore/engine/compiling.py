"""``compile: true``: compile a model's repeated blocks for training, not its whole forward.

Compiling the whole forward on a CPU was the slow choice on every count measured (the IEMOCAP
recipe, 2 threads, cold inductor cache; ``benchmarks/README.md``): its first step took 158 s, and
its steps 2.5 s, five times eager's, because a traced forward cannot keep what eager training does
data-dependently (packed frames, absent rows skipped, ``mmcore.fastdropout``'s masks). Regional
compilation, as torch's own tutorials recommend for models made of repeated layers, compiles one
block's code once for all of them (the three encoders' nine transformer blocks share it): the
first step then took 30 s, and the eager code around the blocks keeps packing and skipping.

Modules opt in by declaring ``compile_region = True`` (``mmcore.transformer``'s blocks); a model
without any falls back to compiling the whole forward. Regions are compiled for training only:
evaluation calls them eagerly, so a validation pass compiles nothing (its batch shapes and grad
mode differ from training's and would each compile anew).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


def compile_for_training(model: nn.Module, forward: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """The training forward to call, and whether it compiles regions (True) or the whole forward
    (False, for models that declare no region). Sizes are symbolic from the first trace: padded
    lengths and row counts change every batch."""
    options = inductor_options(model)
    regions = [m for m in model.modules() if getattr(m, "compile_region", False)]
    if not regions:
        return torch.compile(forward, dynamic=True, options=options), False
    for module in regions:
        _compile_in_training(module, options)
    return forward, True


def inductor_options(model: nn.Module) -> dict[str, Any]:
    """Inductor's options for ``model``'s device. On a CPU random ops stay aten's kernels
    (``fallback_random``): a compiled region then draws its dropout masks
    (:mod:`mmcore.fastdropout`'s ``randint``, or torch's ``bernoulli_``) exactly as eager code
    does from the same generator, so compiling changes a run's speed, not its draws; and aten's
    draws were the faster ones on a 2-core CPU (the IEMOCAP recipe's compiled step, 2 threads:
    torch masks 1.33 s with inductor's per-element draws against 1.08 s with aten's;
    ``benchmarks/README.md``, issue 25's sixth session). On a GPU inductor keeps its own fused
    random numbers."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return {"fallback_random": True} if device.type == "cpu" else {}


def _compile_in_training(module: nn.Module, options: dict[str, Any]) -> None:
    """``module.forward`` compiled while the module trains, eager while it evaluates."""
    eager = module.forward
    compiled = torch.compile(eager, dynamic=True, options=options)

    def forward(*args: Any, **kwargs: Any) -> Any:
        return (compiled if module.training else eager)(*args, **kwargs)

    module.forward = forward  # type: ignore[method-assign]
