"""Components' own cross-field checks, made at validation: each component is built once, on
PyTorch's ``meta`` device, with the modality specs and task the dataset describes.

Types and ranges live in a factory's signature and are checked with every other value; a check
that relates two options (``hide_rate: 1.0`` with ``hide_rule: independent``) lives in the
constructor, which used to run only when a run built its model: ``mmcore validate`` said ok, and
in a sweep only the affected runs failed, after others had trained. A shape-only build
(``mmcore.engine.sizes.shape_only``: no memory, no random draws, the caller's random state kept)
costs milliseconds and runs those checks now.

It never refuses a valid recipe. Without described specs (a dataset that cannot describe itself
without its files) nothing is built. A constructor that fails on ``meta`` is built again for real
on the CPU (counted against the size limit, and stopped past it before its weights are filled,
as a run's build is) before anything is reported, so that what only ``meta`` lacks (``.item()``, ``.cpu()``,
ops without a meta kernel) is never blamed on the recipe; and only the errors a factory raises
for bad options are reported: ``MMCoreError`` (``RegistryError``, ``mmcore.errors.checker``),
``ValueError`` and ``TypeError``. A model past the size limit is left to the run, whose limit
(``--max-params``) this command does not know.

A sweep or study validates hundreds of recipes that differ in seeds, rates and learning rates
but share a few component nodes; inside ``one_build_per_node()`` each distinct node (with the
values the engine passes it) is built once and its outcome reused (protocol-full's 500
validations: 34 s without, most of it building the same encoders again).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator, Sequence

import torch

from mmcore.engine.sizes import SizeError, counted, max_params, shape_only
from mmcore.errors import MMCoreError
from mmcore.missing import marginal_rates
from mmcore.recipe.plan import missing_spec
from mmcore.registry import Registry
from mmcore.types import ModalitySpec, TaskSpec

Build = Callable[[], Any]
REPORTED = (MMCoreError, ValueError, TypeError)  # what a factory raises for options it refuses
TOO_LARGE = "too large"  # a remembered outcome: past the size limit, left to the run
_outcomes: ContextVar[dict[tuple[Any, ...], str | None] | None] = ContextVar("build_outcomes", default=None)


@contextmanager
def one_build_per_node() -> Iterator[None]:
    """Validations inside share their builds: a node built with the same injected values again
    gives the outcome of its first build. Constructors are deterministic in their options (the
    contract suite checks it), so the outcome is the same; the registry's factory is part of the
    key, so a component registered again under its name is built again."""
    token = _outcomes.set({})
    try:
        yield
    finally:
        _outcomes.reset(token)


def build_problems(
    resolved: dict[str, Any], registry: Registry, specs: list[ModalitySpec], task: TaskSpec | None, found: Sequence[str] = ()
) -> list[str]:
    """One line per component whose constructor refuses its options, ``<path> (<type>): <message>``;
    a component is built only when every value it reads passed its own checks (``found``)."""
    try:
        limit = max_params()
    except MMCoreError:  # a bad MMCORE_MAX_PARAMS is the run's to report
        return []
    problems: list[str] = []
    failed: set[str] = set()  # a default encoder that fails for one modality is named once
    memo = _outcomes.get()
    for path, node, key, build in _builds(resolved, registry, specs, task, found):
        if path in failed:
            continue
        key = (limit, *key)
        if memo is not None and key in memo:
            message = memo[key]
        else:
            message = _outcome(build, limit)
            if memo is not None:
                memo[key] = message
        if message == TOO_LARGE:  # the run checks it against its own --max-params
            return problems
        if message is not None:  # the component's own ``checker`` names it first: once is enough
            failed.add(path)
            problems.append(f"{path} ({node['type']}): {message.removeprefix(node['type'] + ': ')}")
    return problems


def _outcome(build: Build, limit: int) -> str | None:
    """The refusal's line, ``TOO_LARGE``, or None when the node builds (on ``meta``, or for real
    where only ``meta`` fails)."""
    try:
        with shape_only(limit):
            build()
    except SizeError:
        return TOO_LARGE
    except Exception:  # noqa: BLE001 - judged on a real build below
        return _real_failure(build, limit)
    return None


def _builds(
    resolved: dict[str, Any], registry: Registry, specs: list[ModalitySpec], task: TaskSpec | None, found: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any], tuple[Any, ...], Build]]:
    """``(path, node, key, build)`` of every component that can be built from sound values;
    ``key`` says what the build depends on (``one_build_per_node``)."""
    from mmcore.recipe.crosschecks import sound  # here: crosschecks imports this module

    model = resolved["model"]
    if not sound(found, "model.dim"):
        return
    dim, names = model["dim"], [s.name for s in specs]
    encoders = model["encoders"]
    for spec in specs:
        key = spec.name if spec.name in encoders else "default"
        if key in encoders and sound(found, f"model.encoders.{key}"):
            yield f"model.encoders.{key}", encoders[key], *_builder(registry, "encoder", encoders[key], spec=spec, dim=dim)
    if sound(found, "model.imputer"):
        yield "model.imputer", model["imputer"], *_builder(registry, "imputer", model["imputer"], specs=list(specs), dim=dim)
    if task is not None and sound(found, "model.fusion"):
        fusion = model["fusion"]
        yield "model.fusion", fusion, *_builder(registry, "fusion", fusion, specs=list(specs), dim=dim, out_dim=task.out_dim)
    if sound(found, "balancer", "missing.train"):
        yield from _balancer(resolved, registry, specs, names, dim)


def _balancer(
    resolved: dict[str, Any], registry: Registry, specs: list[ModalitySpec], names: list[str], dim: int
) -> Iterator[tuple[str, dict[str, Any], Build]]:
    """The balancer, told the realised training rates as the run tells it, and its calibration."""
    from mmcore.engine.build import build_calibration  # here: engine.build reads crosschecks, which reads this

    node = resolved["balancer"]
    try:
        rates = marginal_rates(missing_spec(resolved["missing"]["train"]), names)
    except (MMCoreError, ValueError, KeyError):  # missing.train's own checks report it
        return
    yield "balancer", node, *_builder(registry, "balancer", node, modalities=list(names), missing_rates=rates)
    calibration = ("calibration", registry.find("balancer", node.get("type", "")), _text(node), repr(specs), dim)
    yield "balancer", node, calibration, lambda: build_calibration(node, list(specs), dim, registry)


def _builder(registry: Registry, kind: str, node: dict[str, Any], **injected: Any) -> tuple[tuple[Any, ...], Build]:
    """The key and a call that builds ``node`` as the engine does (``Component.build``: options
    checked, the result of the kind's type); nothing when the name is unknown (reported as such already)."""
    component = registry.find(kind, node.get("type", ""))
    options = {k: v for k, v in node.items() if k != "type"}
    key = (kind, component, _text(node), repr(sorted(injected.items())))
    return key, (lambda: component.build(injected, options)) if component is not None else (lambda: None)


def _text(node: dict[str, Any]) -> str:
    """A node as text, equal for equal nodes (a validated node holds plain data)."""
    return json.dumps(node, sort_keys=True, default=repr)


def _real_failure(build: Build, limit: int) -> str | None:
    """What the constructor says when built for real on the CPU (random state kept), or None when
    it builds there (it failed on ``meta`` only), grows past the size limit (stopped before it is
    allocated, as the run's own build is) or fails for a reason that is not its options."""
    try:
        with torch.random.fork_rng(devices=[]), counted(limit):
            build()
    except SizeError:
        return None
    except Exception as error:  # noqa: BLE001 - sorted below
        return _reported(error)
    return None


def _reported(error: Exception) -> str | None:
    """The user's line for a refused option; ``Component.build`` wraps a factory's ``ValueError``
    or ``TypeError`` in an ``MMCoreError`` naming the plugin, which the path here already says."""
    cause = error.__cause__
    if type(error) is MMCoreError and cause is not None and not isinstance(cause, MMCoreError):
        return f"{type(cause).__name__}: {cause}" if isinstance(cause, (ValueError, TypeError)) else None
    if not isinstance(error, REPORTED):
        return None
    return str(error).splitlines()[0] if str(error) else type(error).__name__
