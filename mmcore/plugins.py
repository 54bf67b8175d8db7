"""Plugin discovery: the core's default plugin, then every entry point of group ``mmcore``.

Bundled method plugins (``plugins/redcore`` and others) are installed packages like any
third-party one; the core never imports them by name. A plugin that fails to import or to
register is reported with its error and skipped, so one broken package never takes the rest
down: that includes ``sys.exit`` at import and ``KeyboardInterrupt`` or any other
``BaseException`` raised by a hook. ``MMCORE_DISABLE_PLUGINS=a,b`` blocks plugins by name.

Load-time rules (pluggy's ``check_pending`` idea, applied per plugin so that only the culprit is
skipped): every hook a plugin implements must have a spec (the error names the nearest one), and
every component it registers must be named ``<plugin>.<name>``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pluggy

from mmcore import hookspecs
from mmcore.components import KIND_TABLE
from mmcore.errors import MMCoreError, RegistryError
from mmcore.registry import Registry, did_you_mean

ENTRY_POINT_GROUP = "mmcore"
CORE_PLUGIN = "mmcore"
DISABLED = "disabled by MMCORE_DISABLE_PLUGINS"

# hook name -> component kind, from the one table of kinds
REGISTER_HOOKS: dict[str, str] = {k.hook: k.name for k in KIND_TABLE}


@dataclass
class PluginInfo:
    """What ``mmcore plugins`` shows about one plugin."""

    name: str
    version: str
    origin: str  # "builtin" or "<distribution> (entry point <value>)"
    error: str | None = None  # set when the plugin was skipped
    components: list[str] = field(default_factory=list)  # "kind:name"

    def to_json(self) -> dict[str, Any]:
        """What ``mmcore plugins --json`` prints for this plugin."""
        listed = [dict(zip(("kind", "name"), c.split(":", 1))) for c in self.components]
        return {"name": self.name, "version": self.version, "origin": self.origin, "error": self.error, "components": listed}


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
        """Let every plugin add sub-commands; returns one warning per plugin that failed.

        A plugin's command may not take the name of one that exists (``run``, or another
        plugin's): typer would let the later one win, so ``mmcore run`` would silently run the
        plugin's code. Such a command is dropped with a warning; a plugin whose hook raises
        keeps none of the commands it added before raising."""
        warnings, taken = [], command_names(app)
        for impl in self.manager.hook.register_commands.get_hookimpls():
            commands, groups = len(app.registered_commands), len(app.registered_groups)
            try:
                impl.function(app=app)
            except BaseException as exc:  # noqa: B036 - a plugin's sys.exit must not end the CLI
                del app.registered_commands[commands:], app.registered_groups[groups:]
                warnings.append(f"plugin '{impl.plugin_name}' failed to add its commands: {type(exc).__name__}: {exc}")
                continue
            for table, start in ((app.registered_commands, commands), (app.registered_groups, groups)):
                for info in list(table[start:]):
                    name = _command_name(info)
                    if name in taken:
                        table.remove(info)
                        warnings.append(f"plugin '{impl.plugin_name}' tried to add the command '{name}', which "
                                        f"{taken[name]} already provides; the plugin's command was not added")
                    else:
                        taken[name] = f"plugin '{impl.plugin_name}'"
        return warnings


def _command_name(info: Any) -> str:
    """The name typer gives a registered command or group (its callback's name when unnamed)."""
    callback = getattr(info, "callback", None) or getattr(getattr(info, "typer_instance", None), "registered_callback", None)
    name = info.name or getattr(callback, "__name__", "")
    return name.lower().replace("_", "-")


def command_names(app: Any) -> dict[str, str]:
    """The commands and groups ``app`` has now -> who provides them (``mmcore`` for the core's)."""
    infos = [*app.registered_commands, *app.registered_groups]
    return {_command_name(info): "mmcore" for info in infos}


def disabled_plugins() -> set[str]:
    raw = os.environ.get("MMCORE_DISABLE_PLUGINS", "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "unknown"


def _error(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MMCoreError) else f"{type(exc).__name__}: {exc}"


def check_hook_names(pm: pluggy.PluginManager, plugin: Any) -> None:
    """Every ``hookimpl``-marked attribute of ``plugin`` names a hook with a spec."""
    specs = sorted(n for n, caller in vars(pm.hook).items() if caller.has_spec())
    for attr in dir(plugin):
        if attr.startswith("__") or attr in specs:
            continue
        try:
            marked = pm.parse_hookimpl_opts(plugin, attr) is not None
        except Exception:  # an attribute that cannot even be read is not a hook
            marked = False
        if marked:
            raise RegistryError(f"hook '{attr}' has no spec;{did_you_mean(attr, specs)} hooks: {', '.join(specs)}")


def _register_plugin(pm: pluggy.PluginManager, registry: Registry, name: str) -> list[str]:
    """Run one plugin's register hooks; on any error undo its registrations and re-raise."""
    names: list[str] = []
    try:
        for hook_name, kind in REGISTER_HOOKS.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue

                def register(cname: str, factory: Any, *, description: str | None = None, _kind: str = kind) -> None:
                    if not (isinstance(cname, str) and cname.startswith(f"{name}.")):
                        raise RegistryError(
                            f"{_kind} {cname!r} is outside the plugin's namespace: plugin '{name}' registers '{name}.<name>'"
                        )
                    registry.register(_kind, cname, factory, origin=name, description=description)
                    names.append(f"{_kind}:{cname}")

                impl.function(register=register)
    except BaseException:  # noqa: B036 - see load_plugins
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

    from mmcore._version import __version__

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
            info.error = DISABLED
        elif name in seen:
            info.error = f"a plugin named '{name}' is already loaded"
        else:
            info.error, info.components = _load_one(pm, registry, name, load)
        if info.error is None:
            seen.add(name)
        elif name not in seen:
            registry.failed[name] = info.error
    return Plugins(pm, registry, infos)


def _load_one(pm: pluggy.PluginManager, registry: Registry, name: str, load: Any) -> tuple[str | None, list[str]]:
    """Import, check and register one plugin: ``(error or None, its components)``.

    ``BaseException`` is caught on purpose: a plugin that calls ``sys.exit`` at import or raises
    ``KeyboardInterrupt`` in a hook is as broken as one raising ``ImportError``, and must not take
    ``mmcore plugins`` down with it.
    """
    try:
        plugin = load()
        check_hook_names(pm, plugin)
        pm.register(plugin, name=name)
    except BaseException as exc:  # noqa: B036
        return f"failed to load: {_error(exc)}", []
    try:
        return None, _register_plugin(pm, registry, name)
    except BaseException as exc:  # noqa: B036
        pm.unregister(name=name)
        return f"failed to register: {_error(exc)}", []


_cached: Plugins | None = None


def get_plugins(refresh: bool = False) -> Plugins:
    """The process-wide plugins, loaded on first use."""
    global _cached
    if _cached is None or refresh:
        _cached = load_plugins()
    return _cached


def get_registry() -> Registry:
    return get_plugins().registry
