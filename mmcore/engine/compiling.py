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

import contextlib
from typing import Any, Callable

import torch
from torch import nn

from mmcore.engine.cpu_isa import widest_vector_isa_builds


def compile_for_training(model: nn.Module, forward: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """The training forward to call, and whether it compiles regions (True) or the whole forward
    (False, for models that declare no region). Sizes are symbolic from the first trace: padded
    lengths and row counts change every batch."""
    settings = compiler_settings(model)
    regions = [m for m in model.modules() if getattr(m, "compile_region", False)]
    if not regions:
        return torch.compile(forward, dynamic=True, **settings), False
    for module in regions:
        _compile_in_training(module, settings)
    return forward, True


def compiler_settings(model: nn.Module) -> dict[str, Any]:
    """``torch.compile``'s backend and inductor options for ``model``'s device.

    On a CPU random ops stay aten's kernels (``fallback_random``): a compiled region then draws its
    dropout masks (:mod:`mmcore.fastdropout`'s ``randint``, or torch's ``bernoulli_``) exactly as
    eager code does from the same generator, so compiling changes a run's speed, not its draws;
    and aten's draws were the faster ones on a 2-core CPU (the IEMOCAP recipe's compiled step, 2
    threads: torch masks 1.33 s with inductor's per-element draws against 1.08 s with aten's;
    ``benchmarks/README.md``, issue 25's sixth session). The CPU backend also makes inductor's
    size-dependent choices without a guard (:func:`_inductor_without_size_guards`), and checks
    only the vector instruction set it will use (:mod:`mmcore.engine.cpu_isa`). On a GPU, plain
    inductor with its own fused random numbers."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if device.type != "cpu":
        return {"backend": "inductor", "options": {}}
    options: dict[str, Any] = {"fallback_random": True}
    if widest_vector_isa_builds():
        options["cpp.vec_isa_ok"] = True
    return {"backend": _inductor_without_size_guards, "options": options}


def _compile_in_training(module: nn.Module, settings: dict[str, Any]) -> None:
    """``module.forward`` compiled while the module trains, eager while it evaluates."""
    eager = module.forward
    compiled = _with_constant_floats(torch.compile(eager, dynamic=True, **settings))

    def forward(*args: Any, **kwargs: Any) -> Any:
        return (compiled if module.training else eager)(*args, **kwargs)

    module.forward = forward  # type: ignore[method-assign]


def _with_constant_floats(compiled: Callable[..., Any]) -> Callable[..., Any]:
    """``compiled``, traced with Python floats as constants (``specialize_float``).

    Why: under ``dynamic=True`` dynamo makes every float it meets symbolic (a LayerNorm's ``eps``,
    a dropout's ``p``, a default argument); the code then branches on them, which fixes them, and
    after the graph was compiled torch finds them fixed and restarts the whole trace and
    compilation with them constant (``TensorifyScalarRestartAnalysis``). Every region was thus
    traced and compiled twice (``benchmarks/README.md``, issue 25's tenth session). The floats
    are hyperparameters, constant for a run, so tracing them as constants from the start loses
    nothing; dynamo guards on their values. A region whose forward took a float argument that
    changes from call to call would compile anew for each value (pass such a value as a tensor);
    the whole-forward fallback, which runs models this module knows nothing about, keeps torch's
    default. Torches without the setting trace floats as constants anyway. The patch is entered on
    every call because dynamo may trace on any of them (a new guard failing); it costs about 17 us
    a call, nine calls a step in the IEMOCAP recipe: well under 0.1% of a step."""
    import torch._dynamo

    if not hasattr(torch._dynamo.config, "specialize_float"):
        return compiled

    def call(*args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(specialize_float=True):
            return compiled(*args, **kwargs)

    return call


def _inductor_without_size_guards(
    gm: torch.fx.GraphModule, example_inputs: list[Any], options: dict[str, Any] | None = None
) -> Callable[..., Any]:
    """Inductor (with ``options`` as its config), making its size-dependent code choices without
    guarding on a size.

    Why: inductor's CPU code sums a float reduction longer than 4096 elements in chunks, for
    precision, and with a symbolic length it decides that from the first trace's size and guards
    on it (``need_use_acc_helper`` in torch 2.13). The IEMOCAP recipe's audio blocks see about
    4100 packed frames a batch, so the sums over frames in their weight gradients crossed that line
    from batch to batch and the blocks compiled twice. Size-oblivious reasoning
    (``backed_size_oblivious``, torch's setting for export) makes such ``guard_or_false`` choices
    without a guard, here: sums unchunked at every size. Only inductor's lowering of the traced
    graphs sees the setting (set around AOT autograd's tracing too, it fixed the padded lengths).
    Marking the size unbacked instead made AOT autograd fail on the backward in torch 2.13. A torch
    without the setting gets plain inductor."""
    from torch._inductor.compile_fx import compile_fx, compile_fx_inner

    def lower_without_size_guards(*args: Any, **kwargs: Any) -> Any:
        try:
            from torch.fx.experimental import _config as shape_config

            oblivious = shape_config.patch(backed_size_oblivious=True)
        except (ImportError, AttributeError):
            oblivious = contextlib.nullcontext()
        with oblivious:
            return compile_fx_inner(*args, **kwargs)

    return compile_fx(gm, example_inputs, inner_compile=lower_without_size_guards, config_patches=options or {})
