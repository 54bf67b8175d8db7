"""Plugin discovery: the core's default plugin, then every entry point of group ``mmcore``.

Bundled method plugins (``plugins/redcore`` and others) are installed packages like any
third-party one; the core never imports them by name. A plugin that fails to import or to
register is reported with its error and skipped, so one broken package never takes the rest
down. ``MMCORE_DISABLE_PLUGINS=a,b`` blocks plugins by name.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pluggy

from mmcore import hookspecs
from mmcore.errors import MMCoreError
from mmcore.registry import Registry

ENTRY_POINT_GROUP = "mmcore"
CORE_PLUGIN = "mmcore"

# hook name -> component kind
REGISTER_HOOKS: dict[str, str] = {
    "register_datasets": "dataset",
    "register_encoders": "encoder",
    "register_imputers": "imputer",
    "register_fusions": "fusion",
    "register_balancers": "balancer",
}


@dataclass
class PluginInfo:
    """What ``mmcore plugins`` shows about one plugin."""

    name: str
    version: str
    origin: str  # "builtin" or "<distribution> (entry point <value>)"
    error: str | None = None  # set when the plugin was skipped
    components: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    """The loaded plugin manager, the registry it filled, and a report per plugin."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo]

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos if i.error]

    def register_commands(self, app: Any) -> list[str]:
        """Let every plugin add sub-commands; returns one warning per plugin that failed."""
        warnings = []
        for impl in self.manager.hook.register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:
                warnings.append(f"plugin '{impl.plugin_name}' failed to add its commands: {type(exc).__name__}: {exc}")
        return warnings


def disabled_plugins() -> set[str]:
    raw = os.environ.get("MMCORE_DISABLE_PLUGINS", "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def _register_plugin(pm: pluggy.PluginManager, registry: Registry, name: str) -> list[str]:
    """Run one plugin's register hooks; on any error undo its registrations and re-raise."""
    names: list[str] = []
    try:
        for hook_name, kind in REGISTER_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue

                def register(cname: str, factory: Any, *, description: str | None = None, _kind: str = kind) -> None:
                    registry.register(_kind, cname, factory, origin=name, description=description)
                    names.append(f"{_kind}:{cname}")

                impl.function(register=register)
    except Exception:
        registry.remove_origin(name)
        raise
    return names


def load_plugins(entry_points: list[md.EntryPoint] | None = None, extra: dict[str, Any] | None = None) -> Plugins:
    """Build a plugin manager and registry from scratch.

    ``entry_points`` defaults to the installed ones of group ``mmcore``; ``extra`` adds plugin
    objects by name (tests use it to register a plugin without installing a package).
    """
    from mmcore import builtins

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: list[PluginInfo] = []
    blocked = disabled_plugins()

    from mmcore import __version__

    pm.register(builtins, name=CORE_PLUGIN)
    infos.append(PluginInfo(CORE_PLUGIN, __version__, "builtin", components=_register_plugin(pm, registry, CORE_PLUGIN)))

    if entry_points is None:
        entry_points = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    candidates: list[tuple[str, str, str, Any]] = []  # name, version, origin, loader
    for ep in entry_points:
        dist = ep.dist.name if ep.dist is not None else "unknown"
        candidates.append((ep.name, _version(dist), f"{dist} (entry point {ep.value})", ep.load))
    for name, obj in (extra or {}).items():
        candidates.append((name, "unknown", "extra", partial(lambda o: o, obj)))

    seen: set[str] = {CORE_PLUGIN}
    for name, version, origin, load in candidates:
        info = PluginInfo(name, version, origin)
        infos.append(info)
        if name in blocked:
            info.error = "disabled by MMCORE_DISABLE_PLUGINS"
            continue
        if name in seen:
            info.error = f"a plugin named '{name}' is already loaded"
            continue
        try:
            plugin = load()
            pm.register(plugin, name=name)
        except Exception as exc:  # import errors, bad hook names: report and go on
            info.error = f"failed to load: {type(exc).__name__}: {exc}"
            continue
        try:
            info.components = _register_plugin(pm, registry, name)
        except Exception as exc:
            pm.unregister(name=name)
            info.error = f"failed to register: {exc}" if isinstance(exc, MMCoreError) else f"failed to register: {type(exc).__name__}: {exc}"
            continue
        seen.add(name)
    return Plugins(pm, registry, infos)


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugins, loaded on first use."""
    global _cached
    if _cached is None or refresh:
        _cached = load_plugins()
    return _cached


def get_registry() -> Registry:
    return get_plugins().registry
