"""``mmcore new plugin NAME``: a plugin package that passes the contract suite as written.

The package has a pyproject with the ``mmcore`` entry point, a plugin module registering one
component of the kind asked for, tests using the kit (``parametrize_with_contracts``, the
``mmcore_recipe``/``mmcore_run`` fixtures), a README and a recipe. The templates are the
smallest correct component of each kind, so an author edits working code instead of a blank page.
"""

from __future__ import annotations

import re
from pathlib import Path

from mmcore.errors import MMCoreError
from mmcore.scaffold.templates import COMPONENTS, FILES, HOOKS, NODE_KEYS, SHORTS, YAML

SCAFFOLD_KINDS = tuple(COMPONENTS)  # the kinds a template exists for


def new_plugin(name: str, kind: str = "balancer", directory: Path | None = None) -> Path:
    """Write the package ``mmcore-<name>`` under ``directory`` (default: ``./mmcore-<name>``)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise MMCoreError(f"plugin name {name!r}: expected a lower-case identifier (letters, digits, '_'), e.g. 'myplugin'")
    if kind not in COMPONENTS:
        raise MMCoreError(f"--kind {kind!r}: expected one of {', '.join(SCAFFOLD_KINDS)}")
    root = Path(directory) if directory is not None else Path(f"mmcore-{name}")
    if root.exists() and any(root.iterdir()):
        raise MMCoreError(f"{root}: already exists and is not empty; choose another --dir")
    values = {
        "component": COMPONENTS[kind],
        "node": NODE_KEYS[kind],
        "yaml": YAML[kind],
        "hook": HOOKS[kind],
        "full": f"{name}.{SHORTS[kind]}",
        "name": name,
        "kind": kind,
    }
    for rel, text in FILES.items():
        path = root / rel.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(text, values))
    return root


def _fill(text: str, values: dict[str, str]) -> str:
    """``@@key@@`` placeholders, in the order of ``values`` (a value may hold later ones); not
    ``str.format``, because the templates are full of braces."""
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text
