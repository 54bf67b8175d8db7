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
    regions = [m for m in model.modules() if getattr(m, "compile_region", False)]
    if not regions:
        return torch.compile(forward, dynamic=True), False
    for module in regions:
        _compile_in_training(module)
    return forward, True


def _compile_in_training(module: nn.Module) -> None:
    """``module.forward`` compiled while the module trains, eager while it evaluates."""
    eager = module.forward
    compiled = torch.compile(eager, dynamic=True)

    def forward(*args: Any, **kwargs: Any) -> Any:
        return (compiled if module.training else eager)(*args, **kwargs)

    module.forward = forward  # type: ignore[method-assign]
