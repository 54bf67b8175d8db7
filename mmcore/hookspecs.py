"""Hook specifications: the plugin author's manual.

A plugin is a module or object with functions decorated by ``mmcore.hookimpl`` whose names are
the hooks below. It is found through an entry point in group ``mmcore``; the entry point's name
is the plugin's name and the namespace of its components, so plugin ``redcore`` registers
``redcore.vib``, ``redcore.relative_advantage`` and so on.

Each ``register_*`` hook receives a ``register`` callback::

    register(name: str, factory: Callable, *, description: str | None = None)

``factory`` is a class or function; its keyword parameters (type hints and defaults) are the
recipe options of the component, except the parameters the framework injects for its kind
(see ``mmcore.components``). Registering a name twice is an error that names both origins.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "mmcore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset factories. A factory returns an object with ``modalities`` (list of
    ``ModalitySpec``), ``task`` (``TaskSpec``) and ``split(name) -> SplitData`` for ``train``,
    ``val`` and ``test``. Never download at run time: read files the user points to."""


@hookspec
def register_encoders(register: Register) -> None:
    """Register encoder factories ``(spec, dim, **options) -> nn.Module`` whose forward is
    ``(x, lengths) -> [B, dim]``; ``lengths`` is None for vector modalities."""


@hookspec
def register_imputers(register: Register) -> None:
    """Register imputer factories ``(specs, dim, **options) -> nn.Module`` whose forward is
    ``(h [B, M, d], present [B, M]) -> ImputerOutput``. Absent rows of ``h`` are already zero;
    an imputer must not try to recover them from anything but the present modalities."""


@hookspec
def register_fusions(register: Register) -> None:
    """Register fusion-head factories ``(specs, dim, out_dim, **options) -> nn.Module`` whose
    forward is ``(z [B, M, d], present [B, M]) -> [B, out_dim]``."""


@hookspec
def register_balancers(register: Register) -> None:
    """Register balancer factories ``(modalities, **options) -> mmcore.Balancer``. A factory
    that declares a ``missing_rates`` parameter receives the training missing rates."""


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``mmcore`` typer application (``app.command()(fn)``)."""
