"""Command-line overrides of a recipe tree (DESIGN §5).

Three forms, Hydra's spelling::

    train.optimizer.lr=3e-4     set (the key is created if absent: defaults are often not written)
    +model.unimodal_heads=true  add: the key must not exist yet
    ~train.grad_clip            delete: the key must exist

Values are read with the recipe's YAML rules, so ``3e-4`` is a float, ``[128, 64]`` a list,
``null`` None and ``'3'`` a string. Setting a string where the tree holds a component node
(a mapping with ``type``) swaps the component: ``balancer=mmcore.uniform`` replaces the whole
node by ``{type: mmcore.uniform}``, because the old options belonged to the other component.
To change only the name and keep the options, set ``balancer.type=...``.

Keys are checked by validation afterwards, not here; this module only edits the tree. List
items are addressed by index: ``model.fusion.layers.0=64``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal

from mmcore.errors import RecipeError
from mmcore.options.hints import show
from mmcore.recipe.loader import parse_yaml
from mmcore.registry import did_you_mean

FORMS = "expected key.path=value (set), +key.path=value (add) or ~key.path (delete)"
_SEGMENT = re.compile(r"[^\s.=+~]+")


class _Problem(Exception):
    """One override that cannot be applied; the message completes ``override '<text>': ...``."""


@dataclass(frozen=True)
class Override:
    """A parsed override: what to do, where, and the new value (None for a delete)."""

    op: Literal["set", "add", "delete"]
    keys: tuple[str, ...]
    value: Any = None


def parse_override(text: str) -> Override:
    """``a.b=v`` / ``+a.b=v`` / ``~a.b`` -> Override; raises ``_Problem`` when malformed."""
    body, op = text.strip(), "set"
    if body.startswith("~"):
        body, op = body[1:], "delete"
    elif body.startswith("+"):
        body, op = body[1:], "add"
    if op == "delete":
        if "=" in body:
            raise _Problem(f"a delete takes no value; {FORMS}")
        key, raw = body, None
    else:
        if "=" not in body:
            raise _Problem(f"has no '='; {FORMS}")
        key, raw = body.split("=", 1)
    keys = tuple(key.strip().split("."))
    if not all(_SEGMENT.fullmatch(k) for k in keys):
        raise _Problem(f"'{key.strip()}' is not a dotted key path like train.optimizer.lr; {FORMS}")
    if raw is None:
        return Override(op, keys)  # type: ignore[arg-type]
    try:
        value = parse_yaml(raw.strip(), "value")
    except RecipeError as error:
        detail = re.sub(r"^value(:[0-9]+)?: ", "", error.problems[0])
        raise _Problem(f"the value is not valid YAML: {detail}") from None
    return Override(op, keys, value)  # type: ignore[arg-type]


def _dotted(keys: tuple[str, ...] | list[str]) -> str:
    return ".".join(keys)


def _is_node(value: Any) -> bool:
    return isinstance(value, dict) and "type" in value


def _index(key: str, items: list[Any], where: str) -> int:
    if not key.isdigit():
        raise _Problem(f"{where} is a list; address its items by index (0 to {len(items) - 1}), not '{key}'")
    index = int(key)
    if index >= len(items):
        raise _Problem(f"{where} has {len(items)} items; index {index} is out of range")
    return index


def _parent(tree: dict[str, Any], keys: tuple[str, ...], create: bool) -> Any:
    """The container that holds ``keys[-1]``; with ``create``, missing mappings are made on the way."""
    node: Any = tree
    for depth, key in enumerate(keys[:-1]):
        where = _dotted(keys[: depth + 1])
        if isinstance(node, dict):
            if key not in node or (create and node[key] is None):
                if not create:
                    hint = did_you_mean(key, [str(k) for k in node])
                    raise _Problem(f"{where} does not exist, nothing to delete" + (f";{hint}" if hint else ""))
                node[key] = {}  # `model:` written empty in the file counts as an empty mapping
            node = node[key]
        elif isinstance(node, list):
            node = node[_index(key, node, _dotted(keys[:depth]))]
        else:
            raise _Problem(f"cannot go into {_dotted(keys[:depth])}: it is {show(node)}, not a mapping")
    return node


def _apply(tree: dict[str, Any], override: Override) -> None:
    keys, last = override.keys, override.keys[-1]
    where, above = _dotted(keys), _dotted(keys[:-1])
    parent = _parent(tree, keys, create=override.op != "delete")
    if isinstance(parent, list):
        index = _index(last, parent, above)
        if override.op == "add":
            raise _Problem(f"{where} already exists (lists are set whole: {above}=[...])")
        if override.op == "delete":
            del parent[index]
        else:
            parent[index] = _swap(parent[index], override.value)
        return
    if not isinstance(parent, dict):
        verb = "delete" if override.op == "delete" else "set"
        raise _Problem(f"cannot {verb} '{last}' under {above}: {above} is {show(parent)}, not a mapping")
    if override.op == "delete":
        if last not in parent:
            hint = did_you_mean(last, [str(k) for k in parent])
            raise _Problem(f"{where} does not exist, nothing to delete" + (f";{hint}" if hint else ""))
        del parent[last]
    elif override.op == "add":
        if last in parent:
            raise _Problem(f"{where} already exists (value {show(parent[last])}); set it with {where}=...")
        parent[last] = override.value
    else:
        parent[last] = _swap(parent.get(last), override.value)


def _swap(current: Any, value: Any) -> Any:
    """A string over a component node swaps the component; anything else replaces the value."""
    if _is_node(current) and isinstance(value, str):
        return {"type": value}
    return value


def apply_overrides(tree: dict[str, Any], overrides: list[str], source: str = "command line") -> dict[str, Any]:
    """A new tree with ``overrides`` applied in order; every bad override is reported at once."""
    out = copy.deepcopy(tree)
    problems: list[str] = []
    for text in overrides:
        try:
            _apply(out, parse_override(text))
        except _Problem as problem:
            problems.append(f"{source}: override '{text}': {problem}")
    if problems:
        raise RecipeError(problems)
    return out
