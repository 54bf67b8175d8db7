"""Model sizes checked before memory is spent, and out-of-memory errors that say where and how big.

``model.imputer.blocks=1000000000`` is a valid integer, and the run would allocate until the
machine gives out. So the model is first built on PyTorch's ``meta`` device (shapes only, no
memory) while global registration hooks count parameters and modules; past the limit the
build stops at once with one line. The limit (``DEFAULT_MAX_PARAMS``, documented in
docs/reliability.md) is raised with ``--max-params N`` on ``run``/``resume``/``sweep`` or the
``MMCORE_MAX_PARAMS`` environment variable, which the flag sets so that a sweep's runs and the
ranks of ``--nproc`` see it too. A component that cannot be built on ``meta`` (it reads its
own tensors' values while constructing) skips the estimate; the real build is counted by the
same hooks, so the limit holds for it as well.

An out-of-memory error during a run becomes one line naming the phase (``phase``) and the
figures recorded here: parameters, their bytes, the batch size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mmcore.errors import MMCoreError

DEFAULT_MAX_PARAMS = 500_000_000  # 2 GB of float32 weights; with gradients and Adam's two moments about 8 GB
MAX_MODULES = 5_000  # a 100-layer transformer has about a thousand; more is a typo, not a model (and
# building a module costs about a millisecond even on meta, so the count must stop early)
ENV = "MMCORE_MAX_PARAMS"

T = TypeVar("T")
_figures: dict[str, Any] = {"phase": "starting the run"}


class SizeError(MMCoreError):
    """The recipe's model is beyond the parameter or module limit."""


class _Stop(BaseException):
    """Raised inside a registration hook to abandon a build that is already too big (a
    BaseException, so that no component's ``except Exception`` turns it into its own error)."""


def max_params() -> int:
    """The parameter limit: ``MMCORE_MAX_PARAMS`` when set to a positive integer, else the default."""
    text = os.environ.get(ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_PARAMS
    if not text.isdigit() or int(text) <= 0:
        raise MMCoreError(f"{ENV}={os.environ[ENV]!r}: expected a positive whole number of parameters")
    return int(text)


def set_max_params(limit: int | None) -> None:
    """The ``--max-params`` flag: recorded in the environment so child processes inherit it."""
    if limit is not None:
        if limit <= 0:
            raise MMCoreError(f"--max-params: expected a positive number, got {limit}")
        os.environ[ENV] = str(int(limit))


@contextlib.contextmanager
def _counted(limit: int, counts: dict[str, int]) -> Iterator[None]:
    from torch.nn.modules.module import (
        register_module_module_registration_hook,
        register_module_parameter_registration_hook,
    )

    def on_param(module: nn.Module, name: str, param: Any) -> None:
        if param is not None:
            counts["params"] += int(param.numel())
            if counts["params"] > limit:
                raise _Stop

    def on_module(module: nn.Module, name: str, sub: Any) -> None:
        counts["modules"] += 1
        if counts["modules"] > MAX_MODULES:
            raise _Stop

    handles = [register_module_parameter_registration_hook(on_param), register_module_module_registration_hook(on_module)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _too_big(counts: dict[str, int], limit: int) -> SizeError:
    if counts["modules"] > MAX_MODULES:
        return SizeError(
            f"model: more than {MAX_MODULES:,} modules (layers, blocks); the recipe's sizes "
            "(blocks, layers, hidden lists) are far beyond a trainable model (see docs/reliability.md)"
        )
    return SizeError(
        f"model: more than {limit:,} parameters (about {human_bytes(4 * counts['params'])} of float32 weights "
        f"counted before stopping), over the limit of {limit:,}; check the recipe's sizes (dim, hidden, "
        "layers, blocks) or raise the limit with --max-params N (or MMCORE_MAX_PARAMS=N)"
    )


# In-place random fills: on ``meta`` they have no values to write, yet ``normal_`` runs through
# torch's Python reference (``torch._refs``), whose first call imports ``torch._dynamo``: 1.8 s
# (torch 2.13, 2-core CPU) for every command that builds a model initialised with ``normal_``
# (kaiming_normal, embeddings) and needs no dynamo otherwise: eval, predict, export. (Training
# imports it anyway: torch's optimisers do on construction.) The shape-only build skips them all.
_RANDOM_FILLS = frozenset(
    getattr(torch.Tensor, name)
    for name in ("normal_", "uniform_", "log_normal_", "exponential_", "cauchy_", "geometric_", "random_", "bernoulli_")
)


class _NoRandomFills(TorchFunctionMode):
    """Returns a random fill's tensor untouched (the shape-only build; see ``_RANDOM_FILLS``)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if func in _RANDOM_FILLS:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def shape_only(limit: int) -> Iterator[None]:
    """The shape-only build: on ``meta``, without random fills, the caller's random state left as it
    was, counted against ``limit`` (``SizeError`` past it). Recipe validation builds components
    in it too (``mmcore.recipe.buildcheck``), so that their constructors' checks run before a run."""
    counts = {"params": 0, "modules": 0}
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"), _NoRandomFills(), _counted(limit, counts):
            yield
    except _Stop:
        raise _too_big(counts, limit) from None


@contextlib.contextmanager
def counted(limit: int) -> Iterator[None]:
    """A real build counted against ``limit``: ``SizeError`` as soon as it passes it, before the
    rest of the model is allocated."""
    counts = {"params": 0, "modules": 0}
    try:
        with _counted(limit, counts):
            yield
    except _Stop:
        raise _too_big(counts, limit) from None


def checked_build(build: Callable[[], T]) -> T:
    """``build()`` after a shape-only build on ``meta`` has shown the model is within the limits."""
    limit = max_params()
    try:
        with shape_only(limit):
            build()
    except SizeError:
        raise
    except Exception:  # noqa: BLE001 - not buildable on meta: the real build below is counted too
        pass
    _figures["phase"] = "building the model"
    with counted(limit):
        model = build()
    record(params=sum(p.numel() for p in model.parameters()) if isinstance(model, nn.Module) else None)
    return model


def forget() -> None:
    """A new run in this process starts: an out-of-memory error while it loads its data named the
    previous run's phase ("training epoch 1") and that recipe's parameters and batch size."""
    _figures.clear()
    _figures["phase"] = "starting the run"


def record(**figures: Any) -> None:
    """Remember size figures (params, batch_size, dim) for the out-of-memory message."""
    _figures.update({k: v for k, v in figures.items() if v is not None})


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Name what the run is doing, for the out-of-memory message. An error leaves the name in
    place (no ``finally``): the message is composed after the error has left the block."""
    previous = _figures.get("phase")
    _figures["phase"] = name
    yield
    _figures["phase"] = previous


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or a RuntimeError that says the allocator gave out."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and ("out of memory" in str(exc)[:500] or "DefaultCPUAllocator" in str(exc)[:500])


def out_of_memory_message() -> str:
    """The one line for an out-of-memory error: the phase and the recorded size figures."""
    parts = []
    if "params" in _figures:
        parts.append(f"{_figures['params']:,} parameters ({human_bytes(4 * _figures['params'])} as float32)")
    if "batch_size" in _figures:
        parts.append(f"batch size {_figures['batch_size']}")
    if "dim" in _figures:
        parts.append(f"model.dim {_figures['dim']}")
    figures = "; the recipe: " + ", ".join(parts) if parts else ""
    return (f"out of memory while {_figures.get('phase') or 'running'}{figures}; "
            "lower train.batch_size (or train.eval_batch_size) or the model's sizes, or use a larger device")
