"""``mmcore new plugin NAME --kinds balancer,imputer``: a plugin package that passes the contract
suite as written.

The package has a pyproject with the ``mmcore`` entry point, a plugin module registering one
component of each kind asked for (one hook per kind, one namespace), tests using the kit (``parametrize_with_contracts``, the
``mmcore_recipe``/``mmcore_run`` fixtures), a README and a recipe. The templates are the
smallest correct component of each kind, so an author edits working code instead of a blank page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mmcore.errors import MMCoreError
from mmcore.scaffold.templates import CLASSES, COMPONENTS, FILES, HOOK, HOOKS, NODES, SHORTS

SCAFFOLD_KINDS = tuple(COMPONENTS)  # the kinds a template exists for
MODEL_KINDS = ("encoder", "imputer", "fusion")  # recipe nodes under ``model:``


def parse_kinds(kinds: str | Sequence[str]) -> list[str]:
    """``"balancer,imputer"`` (or a list) as distinct known kinds in the order given."""
    items = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)]
    chosen = list(dict.fromkeys(k for k in items if k))
    unknown = [k for k in chosen if k not in COMPONENTS]
    if unknown or not chosen:
        raise MMCoreError(f"--kinds {','.join(items)!r}: expected one or more of {', '.join(SCAFFOLD_KINDS)}, "
                          "separated by commas (e.g. balancer,imputer)")
    return chosen


def _not_taken(name: str) -> None:
    """A plugin's name is its entry point and its components' namespace, so a name already loaded
    here (``mmcore``'s built-ins, ``redcore``, ...) would clash with that plugin once installed."""
    from mmcore.plugins import get_plugins

    taken = sorted(info.name for info in get_plugins().infos)
    if name in taken:
        raise MMCoreError(f"plugin name {name!r}: already the name of a plugin here ({', '.join(taken)}); choose another")


def new_plugin(name: str, kinds: str | Sequence[str] = "balancer", directory: Path | None = None) -> Path:
    """Write the package ``mmcore-<name>`` under ``directory`` (default: ``./mmcore-<name>``) with
    one component of each kind in ``kinds``, registered through one hook per kind."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise MMCoreError(f"plugin name {name!r}: expected a lower-case identifier (letters, digits, '_'), e.g. 'myplugin'")
    _not_taken(name)
    chosen = parse_kinds(kinds)
    root = Path(directory) if directory is not None else Path(f"mmcore-{name}")
    if root.exists() and any(root.iterdir()):
        raise MMCoreError(f"{root}: already exists and is not empty; choose another --dir")
    full = {k: f"{name}.{SHORTS[k]}" for k in chosen}
    values = {
        "component": "".join(COMPONENTS[k] + "\n" for k in chosen).rstrip("\n") + "\n",
        "hooks": "".join(_fill(HOOK, {"hook": HOOKS[k], "class": CLASSES[k], "full": full[k]}) for k in chosen),
        "nodes": "".join(f'    "{full[k]}": {_fill(NODES[k], {"full": full[k]})},\n' for k in chosen),
        "yaml": _recipe_nodes(chosen, full),
        "listing": _listing(chosen, full),
        "first": full[chosen[0]],
        "kinds": ", ".join(f"{k} {full[k]}" for k in chosen),
        "name": name,
    }
    for rel, text in FILES.items():
        path = root / rel.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(text, values))
    return root


def _recipe_nodes(chosen: list[str], full: dict[str, str]) -> str:
    """The example recipe's nodes for the chosen components. Neither the template imputer nor the
    default one (``mmcore.zero``) produces a loss group, so the template balancer weighs the
    unimodal heads' terms: without them it would have nothing to weigh."""
    balancer = "balancer" in chosen
    model = [f"  {'encoders: {default: ' if k == 'encoder' else k + ': '}{{type: {full[k]}}}{'}' if k == 'encoder' else ''}"
             for k in MODEL_KINDS if k in chosen]
    if balancer:
        model.append("  unimodal_heads: {layers: [32]}")
    lines = ["model:", *model] if model else []
    if balancer:
        lines.append(f"balancer: {{type: {full['balancer']}, target: unimodal}}")
    return "".join(line + "\n" for line in lines)


def _listing(chosen: list[str], full: dict[str, str]) -> str:
    """"a balancer (`x.flat`), an encoder (`x.conv`) and a fusion (`x.sum`)": each name in
    brackets, since a name set off by commas ran into the list's own commas."""
    parts = [f"{'an' if k[0] in 'aeiou' else 'a'} {k} (`{full[k]}`)" for k in chosen]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _fill(text: str, values: dict[str, str]) -> str:
    """``@@key@@`` placeholders, in the order of ``values`` (a value may hold later ones); not
    ``str.format``, because the templates are full of braces."""
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
