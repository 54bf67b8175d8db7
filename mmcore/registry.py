"""A registry of named components per kind, and the option schema read from each factory.

The factory's signature *is* the schema of its recipe node: every keyword parameter that the
framework does not inject is an option, with its type hint (``Annotated`` range markers kept,
so ``Annotated[float, Between(0, 1)]`` is checked before anything is built) and default.
Nothing else has to be declared, so registering a component is one line.

Option help follows the Google docstring convention: a section ``Args:`` (or ``Options:``) in
the factory's docstring (for a class: the class docstring, else its ``__init__``'s), one entry
per option, ``name: help``, continuation lines indented further. Example::

    class Halves(mmcore.Balancer):
        '''Scales every modality's term of the target group by ``factor``.

        Args:
            factor: the constant weight of every modality.
        '''
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from mmcore.components import INJECTED, KIND, KINDS
from mmcore.errors import MMCoreError, RegistryError
from mmcore.options.checks import check_value
from mmcore.options.hints import REQUIRED  # noqa: F401  (re-exported: an option without a default)
from mmcore.text import did_you_mean  # noqa: F401  (re-exported: plugins import it from here)

_SECTION = re.compile(r"^(\s*)(Args|Arguments|Options|Parameters):\s*$")
_ENTRY = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


@dataclass(frozen=True)
class Option:
    """One recipe option of a component."""

    name: str
    annotation: Any  # a typing object (int, list[int], Annotated[...], Literal[...]) or Any when unknown
    default: Any  # REQUIRED when the option must be given
    help: str = ""  # its entry in the factory docstring's Args section

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
    def label(self) -> str:
        """How messages name it: ``imputer 'redcore.vib' (plugin redcore)``."""
        return f"{self.kind} '{self.name}' (plugin {self.origin})"

    @property
    def doc(self) -> str:
        """The description, else the first paragraph of the factory's docstring."""
        if self.description:
            return self.description
        return self.full_doc.split("\n\n", 1)[0].replace("\n", " ").strip()

    @property
    def full_doc(self) -> str:
        """The factory's docstring without its ``Args`` section (the options show that)."""
        return _strip_args(_docstring(self.factory)).strip()

    def options(self) -> list[Option]:
        """The user-facing options: keyword parameters minus the injected ones."""
        return factory_options(self.factory, skip=INJECTED[self.kind])

    def build(self, injected: dict[str, Any], options: dict[str, Any]) -> Any:
        """Call the factory with the injected values it declares plus the user's options.

        The options' types and ranges are checked first (so a direct build, a contract check
        or a resumed run cannot bypass the signature), and the result must be of the kind's
        type; failures are one-line ``MMCoreError``s naming the plugin and the component.
        """
        known = {o.name: o for o in self.options()}
        problems = [p for k, v in options.items() if k in known for p in check_value(v, known[k].annotation, k)]
        if problems:
            raise RegistryError(f"{self.label}: " + "; ".join(problems))
        params = _signature(self.factory).parameters
        given = {k: v for k, v in injected.items() if k in params}
        kind = KIND[self.kind]
        with self.blame("failed to build"):
            built = self.factory(**given, **copy.deepcopy(options))  # a factory that edits a list in place edits its own
            accepted = kind.accepts(built)  # reads the result's attributes: a dataset's property may raise
        if not accepted:
            raise RegistryError(f"{self.label}: factory returned {type(built).__name__}, not {kind.returns}")
        return built

    @contextlib.contextmanager
    def blame(self, doing: str) -> Iterator[None]:
        """Turn an unexpected exception into one line naming this component and its plugin
        (``with component.blame("forward failed"): module(x)``); ``MMCoreError``s pass as they are."""
        try:
            yield
        except MMCoreError:
            raise
        except (Exception, SystemExit) as exc:  # sys.exit in a plugin's factory is a failure, never exit 0
            raise MMCoreError(f"{self.label} {doing}: {type(exc).__name__}: {exc}") from exc


def _signature(factory: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(factory)


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # an unresolved forward reference: resolve the others one by one
        return _hints_one_by_one(target)


def _hints_one_by_one(target: Callable[..., Any]) -> dict[str, Any]:
    """The hints that resolve, each on its own; an unresolvable one is left out ("any value").

    A plugin module with ``from __future__ import annotations`` that imports ``ModalitySpec``
    under ``TYPE_CHECKING`` only has one hint that cannot be resolved, on an injected parameter;
    dropping every hint for it would silently drop the ranges of all its options."""
    namespace = getattr(target, "__globals__", None)
    hints: dict[str, Any] = {}
    for name, annotation in dict(getattr(target, "__annotations__", None) or {}).items():
        def shim() -> None: ...

        shim.__annotations__ = {name: annotation}
        try:
            hints.update(typing.get_type_hints(shim, globalns=namespace, include_extras=True))
        except Exception:
            continue
    return hints


def _docstring(factory: Callable[..., Any]) -> str:
    doc = inspect.getdoc(factory) or ""
    if inspect.isclass(factory) and not any(_SECTION.match(line) for line in doc.splitlines()):
        init = inspect.getdoc(factory.__init__) if "__init__" in vars(factory) else None
        if init and any(_SECTION.match(line) for line in init.splitlines()):
            doc = f"{doc}\n\n{init}" if doc else init
    return doc


def _args_lines(doc: str) -> tuple[int, int] | None:
    """``(start, end)`` line indices of the Args section (header included), or None."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        header = _SECTION.match(line)
        if header is None:
            continue
        indent, end = len(header.group(1)), i + 1
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent):
            end += 1
        return i, end
    return None


def _strip_args(doc: str) -> str:
    span = _args_lines(doc)
    if span is None:
        return doc
    lines = doc.splitlines()
    return "\n".join(lines[: span[0]] + lines[span[1] :])


def option_help(factory: Callable[..., Any]) -> dict[str, str]:
    """Option name -> help text, read from the Args section of the factory's docstring."""
    doc = _docstring(factory)
    span = _args_lines(doc)
    if span is None:
        return {}
    out: dict[str, str] = {}
    entry_indent, current = None, None
    for line in doc.splitlines()[span[0] + 1 : span[1]]:
        match = _ENTRY.match(line)
        indent = len(line) - len(line.lstrip())
        if match and (entry_indent is None or indent <= entry_indent):
            entry_indent, current = indent, match.group(2).lstrip("*")
            out[current] = match.group(3).strip()
        elif current is not None and line.strip():
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out


def factory_options(factory: Callable[..., Any], skip: frozenset[str] = frozenset()) -> list[Option]:
    """The options of a factory (or dataclass) as read from its signature and type hints."""
    hints = _type_hints(factory)
    helps = option_help(factory)
    out: list[Option] = []
    for p in _signature(factory).parameters.values():
        if p.name in skip or p.name == "self":
            continue
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        out.append(Option(p.name, hints.get(p.name, Any), p.default, helps.get(p.name, "")))
    return out




class Registry:
    """Components by kind and name. Names are unique per kind across all plugins.

    ``failed`` maps the name of each plugin that was skipped to its error, so that a recipe
    naming one of its components hears why it is missing rather than only "unknown".
    """

    def __init__(self) -> None:
        self._by_kind: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self.failed: dict[str, str] = {}

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
        try:
            _signature(factory)
        except (TypeError, ValueError) as exc:  # C callables, some builtins: no schema to read
            raise RegistryError(
                f"{kind} '{name}' from plugin '{origin}': the factory's signature cannot be inspected ({exc}); "
                "register a Python function or class whose keyword parameters are the options"
            ) from None
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

    def lookup(self, name: str) -> list[Component]:
        """Every component called ``name``, whatever its kind (names are unique per kind)."""
        return [table[name] for table in self._by_kind.values() if name in table]

    def get(self, kind: str, name: str) -> Component:
        component = self.find(kind, name)
        if component is None:
            raise RegistryError(self.unknown_message(kind, name))
        return component

    def unknown_message(self, kind: str, name: str) -> str:
        names = self.names(kind)
        plugin = name.split(".", 1)[0] if isinstance(name, str) else ""
        if plugin in self.failed:
            return f"unknown {kind} '{name}': plugin '{plugin}' was skipped: {self.failed[plugin]}"
        return f"unknown {kind} '{name}';{did_you_mean(name, names)} available: {', '.join(names) or 'none'}"

    def remove_origin(self, origin: str) -> None:
        """Drop everything a plugin registered (used when its registration fails half-way)."""
        for table in self._by_kind.values():
            for name in [n for n, c in table.items() if c.origin == origin]:
                del table[name]
