"""Checking plain YAML data against type hints, and resolving it to a complete tree.

One recursive checker serves both the fixed recipe schema (dataclasses in ``schema.py``) and
every component's options (read from its factory's signature), so a plugin's ``layers:
list[int] = [256]`` is checked exactly like the core's ``epochs``. It never stops at the first
problem: each function returns the resolved value *and* the list of every problem found, one
line each, ``<dotted.path>: <what is wrong>``.

Understood annotations: ``Any``, ``None``, ``bool``, ``int`` (a bool is not an int), ``float``
(an int is accepted and converted), ``str``, unions (``X | None``), ``Literal``, ``list[T]``,
``tuple[...]``, ``dict[K, V]``, dataclasses (a mapping with those keys; defaults filled in),
and ``Annotated[T, ...]`` carrying the markers of ``hints.py`` (ranges, component nodes).
Anything else (a class, a callable type) is accepted as given: the factory has the last word.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from mmcore.components import INJECTED
from mmcore.options.hints import REQUIRED, Constraint, NodeOf, TrueMeansDefaults, is_dict, is_list, show, type_name
from mmcore.text import did_you_mean

if TYPE_CHECKING:  # the registry is passed in: this module sits below it (the registry checks options with it)
    from mmcore.registry import Component, Registry

Problems = list[str]


# ---------------------------------------------------------------- messages


def _at(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


# ---------------------------------------------------------------- plain data


class _NotPlain(Exception):
    pass


def plain(value: Any) -> Any:
    """A deep copy as YAML/JSON data (tuples become lists); raises ``_NotPlain`` otherwise."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise _NotPlain(type(value).__name__)


# ---------------------------------------------------------------- the checker


def check_value(value: Any, annotation: Any, path: str, registry: Registry | None = None) -> Problems:
    """Every problem of ``value`` against ``annotation``, one line each, paths below ``path``."""
    return resolve_value(value, annotation, path, registry)[1]


def resolve_value(value: Any, annotation: Any, path: str, registry: Registry | None = None) -> tuple[Any, Problems]:
    """``(resolved, problems)``: the value as plain data with defaults filled in and ints made
    floats where a float is expected. With ``registry=None`` component nodes are checked for
    shape only (a mapping with a string ``type``)."""
    if annotation is Any or annotation is object or annotation is REQUIRED:
        return _copy(value), []
    if annotation is None or annotation is type(None):
        return (None, []) if value is None else (value, [_mismatch(path, annotation, value)])
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _annotated(value, args[0], args[1:], annotation, path, registry)
    if origin in (Union, types.UnionType):
        return _union(value, args, annotation, path, registry)
    if origin is Literal:
        return _choice(value, args, annotation, path)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return resolve_section(value, annotation, path, registry)
    if annotation is bool:
        return _simple(value, isinstance(value, bool), annotation, path)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            return value, [_at(path, f"expected int within the 64-bit range (|x| < 2^63), got {value.bit_length()} bits")]
        return _simple(value, isinstance(value, int) and not isinstance(value, bool), annotation, path)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _as_float(value)
            if number is None or not math.isfinite(number):
                return value, [_at(path, f"expected a finite float, got {show(value)}")]
            return number, []
        return value, [_mismatch(path, annotation, value)]
    if annotation is str:
        return _simple(value, isinstance(value, str), annotation, path)
    if is_list(origin, annotation):
        return _sequence(value, [args[0] if args else Any], True, annotation, path, registry)
    if origin is tuple or annotation is tuple:
        variadic = not args or (len(args) == 2 and args[1] is Ellipsis)
        items = [args[0] if args else Any] if variadic else list(args)
        return _sequence(value, items, variadic, annotation, path, registry)
    if is_dict(origin, annotation):
        key_type, value_type = args if args else (Any, Any)
        return _mapping(value, key_type, value_type, annotation, path, registry)
    return _copy(value), []  # a class or typing construct YAML cannot express: the factory decides


# torch and numpy hold seeds, sizes and indices in int64: a larger int overflows in the run.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _as_float(value: int | float) -> float | None:
    """``float(value)``, or None for an int too large for a float (over about 10^308).

    No recipe number means NaN or infinity: a learning rate of ``.inf`` or a weight of ``.nan``
    would train without an error and report meaningless metrics, so non-finite floats are
    refused everywhere, in the core's schema and in every component's options alike.
    """
    try:
        return float(value)
    except OverflowError:
        return None


def _copy(value: Any) -> Any:
    try:
        return plain(value)
    except _NotPlain:
        return value


def _mismatch(path: str, annotation: Any, value: Any) -> str:
    return _at(path, f"expected {type_name(annotation)}, got {show(value)}")


def _simple(value: Any, ok: bool, annotation: Any, path: str) -> tuple[Any, Problems]:
    return (value, []) if ok else (value, [_mismatch(path, annotation, value)])


def _annotated(
    value: Any, base: Any, meta: tuple[Any, ...], annotation: Any, path: str, registry: Registry | None
) -> tuple[Any, Problems]:
    node = next((m for m in meta if isinstance(m, NodeOf)), None)
    if node is not None:
        return resolve_node(value, node.kind, path, registry)
    resolved, problems = resolve_value(value, base, path, registry)
    if problems == [_mismatch(path, base, value)]:  # say the whole expectation: "int >= 1", not "int"
        return value, [_mismatch(path, annotation, value)]
    if problems:
        return resolved, problems
    if resolved is True and any(isinstance(m, TrueMeansDefaults) for m in meta):
        section = next(a for a in get_args(base) if dataclasses.is_dataclass(a))
        return resolve_section({}, section, path, registry)
    if not all(c.ok(resolved) for c in meta if isinstance(c, Constraint)):
        return value, [_mismatch(path, annotation, value)]
    return resolved, []


def _fits(value: Any, annotation: Any) -> bool:
    """Whether ``value`` has the outer shape of ``annotation`` (to pick a union member's errors)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        if any(isinstance(m, NodeOf) for m in args[1:]):
            return isinstance(value, (dict, str))
        return _fits(value, args[0])
    if origin is Literal:
        return any(type(value) is type(a) for a in args)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    if dataclasses.is_dataclass(annotation) or is_dict(origin, annotation):
        return isinstance(value, dict)
    if is_list(origin, annotation) or origin is tuple or annotation is tuple:
        return isinstance(value, (list, tuple))
    return False


def _union(
    value: Any, members: tuple[Any, ...], annotation: Any, path: str, registry: Registry | None
) -> tuple[Any, Problems]:
    nearest: Problems | None = None
    for member in members:
        resolved, problems = resolve_value(value, member, path, registry)
        if not problems:
            return resolved, []
        if nearest is None and _fits(value, member):
            nearest = problems  # the member the user evidently meant: report its inner problems
    return value, nearest if nearest is not None else [_mismatch(path, annotation, value)]


def _choice(value: Any, choices: tuple[Any, ...], annotation: Any, path: str) -> tuple[Any, Problems]:
    if any(type(value) is type(c) and value == c for c in choices):
        return value, []
    message = _mismatch(path, annotation, value)
    if isinstance(value, str):
        hint = did_you_mean(value, [c for c in choices if isinstance(c, str)])
        message += f";{hint}" if hint else ""
    return value, [message]


def _sequence(
    value: Any, items: list[Any], variadic: bool, annotation: Any, path: str, registry: Registry | None
) -> tuple[Any, Problems]:
    if not isinstance(value, (list, tuple)) or (not variadic and len(value) != len(items)):
        return value, [_mismatch(path, annotation, value)]
    out: list[Any] = []
    problems: Problems = []
    for i, item in enumerate(value):
        resolved, found = resolve_value(item, items[0] if variadic else items[i], _join(path, i), registry)
        out.append(resolved)
        problems += found
    return out, problems


def _mapping(
    value: Any, key_type: Any, value_type: Any, annotation: Any, path: str, registry: Registry | None
) -> tuple[Any, Problems]:
    if not isinstance(value, dict):
        return value, [_mismatch(path, annotation, value)]
    out: dict[Any, Any] = {}
    problems: Problems = []
    for key, item in value.items():
        sub = _join(path, key)
        if check_value(key, key_type, ""):
            problems.append(_at(sub, f"key must be {type_name(key_type)}, got {show(key)}"))
        out[key], found = resolve_value(item, value_type, sub, registry)
        problems += found
    return out, problems


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return REQUIRED


def resolve_section(value: Any, cls: type, path: str, registry: Registry | None) -> tuple[Any, Problems]:
    """A mapping against a schema dataclass: unknown keys, missing required keys, defaults."""
    if not isinstance(value, dict):
        keys = ", ".join(f.name for f in dataclasses.fields(cls))
        return value, [_at(path, f"expected a mapping with keys {keys}, got {show(value)}")]
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given: dict[str, Any] = {}
    problems: Problems = []
    for key, item in value.items():  # in file order, so messages follow the file
        sub = _join(path, key)
        if key not in fields:
            hint = did_you_mean(str(key), list(fields))
            problems.append(_at(sub, f"unknown key;{hint} allowed: {', '.join(sorted(fields))}"))
            continue
        given[key], found = resolve_value(item, hints[key], sub, registry)
        problems += found
    out: dict[str, Any] = {}
    for name, f in fields.items():  # in schema order, so the resolved recipe reads like the reference
        if name in given:
            out[name] = given[name]
            continue
        default = _field_default(f)
        if default is REQUIRED:
            expected = _expected(hints[name], registry)
            problems.append(_at(_join(path, name), f"missing required key; expected {expected}"))
        else:
            out[name], found = resolve_value(plain(default), hints[name], _join(path, name), registry)
            problems += found
    return out, problems


def _expected(annotation: Any, registry: Registry | None) -> str:
    """``type_name`` plus, for a component node, the names that are available."""
    meta = get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
    node = next((m for m in meta if isinstance(m, NodeOf)), None)
    if node is None:
        return type_name(annotation)
    text = f"a {node.kind} node {{type: NAME, ...options}}"
    if registry is not None:
        text += f"; available: {', '.join(registry.names(node.kind)) or 'none'}"
    return text


# ---------------------------------------------------------------- component nodes


def resolve_node(value: Any, kind: str, path: str, registry: Registry | None) -> tuple[Any, Problems]:
    """``{type: name, **options}`` against the registered factory's signature."""
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict):
        expected = f"a {kind} node (a registered name or a mapping with 'type')"
        return value, [_at(path, f"expected {expected}, got {show(value)}")]
    type_path = _join(path, "type")
    if "type" not in value:
        names = f"; available: {', '.join(registry.names(kind)) or 'none'}" if registry is not None else ""
        return value, [_at(type_path, f"missing required key; expected the name of a registered {kind}{names}")]
    name = value["type"]
    if not isinstance(name, str):
        return value, [_at(type_path, f"expected str (a registered {kind} name), got {show(name)}")]
    if registry is None:
        return _copy(value), []
    component = registry.find(kind, name)
    if component is None:
        return value, [_at(type_path, registry.unknown_message(kind, name))]
    return _resolve_options(value, component, path, registry)


def _takes_any_keyword(component: Component) -> bool:
    try:
        params = inspect.signature(component.factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _resolve_options(
    value: dict[Any, Any], component: Component, path: str, registry: Registry
) -> tuple[Any, Problems]:
    options = {o.name: o for o in component.options()}
    allowed = ", ".join(sorted(options)) or "none (it takes no options)"
    open_ended = _takes_any_keyword(component)
    given: dict[Any, Any] = {}
    problems: Problems = []
    for key, item in value.items():
        if key == "type":
            continue
        sub = _join(path, key)
        option = options.get(key)
        if option is not None:
            given[key], found = resolve_value(item, option.annotation, sub, registry)
            problems += found
        elif open_ended:
            given[key] = _copy(item)
        elif key in INJECTED[component.kind]:
            problems.append(_at(sub, f"set by the framework, not an option of {component.name}; allowed: {allowed}"))
        else:
            hint = did_you_mean(str(key), list(options))
            problems.append(_at(sub, f"unknown option of {component.name};{hint} allowed: {allowed}"))
    out: dict[Any, Any] = {"type": component.name}
    for name, option in options.items():  # signature order, every default written out
        if name in given:
            out[name] = given.pop(name)
        elif option.required:
            expected = type_name(option.annotation)
            problems.append(_at(_join(path, name), f"missing required option of {component.name}; expected {expected}"))
        else:
            try:
                default = plain(option.default)
            except _NotPlain:
                continue  # not expressible in YAML (an object): the factory keeps using its own default
            # `eta: float = 1` is written 1.0, as validating the written recipe again would make it;
            # a default that contradicts its own hint is the plugin's business and kept as is.
            resolved, found = resolve_value(default, option.annotation, "", registry)
            out[name] = default if found else resolved
    out.update(given)  # extra keywords of a **kwargs factory
    return out, problems
