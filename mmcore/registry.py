"""A registry of named components per kind, and the option schema read from each factory.

The factory's signature *is* the schema of its recipe node: every keyword parameter that the
framework does not inject is an option, with its type hint and default. Nothing else has to be
declared, so registering a component is one line.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

from mmcore.components import INJECTED, KINDS
from mmcore.errors import RegistryError

REQUIRED = inspect.Parameter.empty  # marks an option without a default


@dataclass(frozen=True)
class Option:
    """One recipe option of a component."""

    name: str
    annotation: Any  # a typing object (int, list[int], Literal[...]) or Any when unknown
    default: Any  # REQUIRED when the option must be given

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True)
class Component:
    """A registered factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any]
    origin: str  # the plugin that registered it
    description: str | None = None

    @property
    def doc(self) -> str:
        """The description, else the first paragraph of the factory's docstring."""
        if self.description:
            return self.description
        text = inspect.getdoc(self.factory) or ""
        return text.split("\n\n", 1)[0].replace("\n", " ").strip()

    def options(self) -> list[Option]:
        """The user-facing options: keyword parameters minus the injected ones."""
        return factory_options(self.factory, skip=INJECTED[self.kind])

    def accepts(self, parameter: str) -> bool:
        return parameter in _signature(self.factory).parameters

    def build(self, injected: dict[str, Any], options: dict[str, Any]) -> Any:
        """Call the factory with the injected values it declares plus the user's options."""
        params = _signature(self.factory).parameters
        given = {k: v for k, v in injected.items() if k in params}
        return self.factory(**given, **options)


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(factory)


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolved forward references: fall back to "anything goes"
        return {}


def factory_options(factory: Callable[..., Any], skip: frozenset[str] = frozenset()) -> list[Option]:
    """The options of a factory (or dataclass) as read from its signature and type hints."""
    hints = _type_hints(factory)
    out: list[Option] = []
    for p in _signature(factory).parameters.values():
        if p.name in skip or p.name == "self":
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        out.append(Option(p.name, hints.get(p.name, Any), p.default))
    return out


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` did you mean 'x'?`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" did you mean '{close[0]}'?" if close else ""


class Registry:
    """Components by kind and name. Names are unique per kind across all plugins."""

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Component]] = {k: {} for k in KINDS}

    def register(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        *,
        origin: str,
        description: str | None = None,
    ) -> Component:
        if kind not in self._by_kind:
            raise RegistryError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
        if not isinstance(name, str) or "." not in name or name.startswith(".") or name.endswith("."):
            raise RegistryError(f"{kind} name {name!r} from plugin '{origin}' must be dotted: '<plugin>.<name>'")
        if not callable(factory):
            raise RegistryError(f"{kind} '{name}' from plugin '{origin}': factory is not callable")
        existing = self._by_kind[kind].get(name)
        if existing is not None:
            raise RegistryError(
                f"{kind} '{name}' is registered twice: by plugin '{existing.origin}' and by plugin '{origin}'"
            )
        component = Component(kind, name, factory, origin, description)
        self._by_kind[kind][name] = component
        return component

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def all(self, kind: str | None = None) -> list[Component]:
        kinds = [kind] if kind else list(KINDS)
        return [self._by_kind[k][n] for k in kinds for n in sorted(self._by_kind[k])]

    def find(self, kind: str, name: str) -> Component | None:
        return self._by_kind[kind].get(name)

    def get(self, kind: str, name: str) -> Component:
        component = self.find(kind, name)
        if component is None:
            raise RegistryError(self.unknown_message(kind, name))
        return component

    def unknown_message(self, kind: str, name: str) -> str:
        names = self.names(kind)
        return f"unknown {kind} '{name}';{did_you_mean(name, names)} available: {', '.join(names) or 'none'}"

    def remove_origin(self, origin: str) -> None:
        """Drop everything a plugin registered (used when its registration fails half-way)."""
        for table in self._by_kind.values():
            for name in [n for n, c in table.items() if c.origin == origin]:
                del table[name]
