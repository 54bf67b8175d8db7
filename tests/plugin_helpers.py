"""A plugin made in a test, registered through the real hooks as an installed plugin is, and the
run helpers the fault tests share: a resolved tiny recipe against those plugins, and the one-line
error a run ends with."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import pytest

from mmcore import hookimpl
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.plugins import Plugins, get_registry, load_plugins
from mmcore.registry import Component
from mmcore.recipe import apply_overrides, validate_recipe
from mmcore.testing import tiny_recipe

REPO = Path(__file__).resolve().parents[1]


def plugin_of(**kinds: dict[str, Callable[..., Any]]) -> Any:
    """An object whose ``register_<kind>`` hooks register ``{name: factory}``:
    ``plugin_of(encoders={"x.enc": Encoder}, balancers={"x.bal": Weights})``."""

    def hook(components: dict[str, Callable[..., Any]]) -> Callable[..., None]:
        def register_all(self: Any, register: Any) -> None:
            for name, factory in components.items():
                register(name, factory)

        return hookimpl(register_all)

    return type("TestPlugin", (), {f"register_{kind}": hook(components) for kind, components in kinds.items()})()


def plugins_of(name: str, **kinds: dict[str, Callable[..., Any]]) -> Plugins:
    """The installed plugins plus ``plugin_of(**kinds)`` under ``name``."""
    return load_plugins(extra={name: plugin_of(**kinds)})


def recipe_with(output: Path | str, plugins: Plugins, *overrides: str) -> dict[str, Any]:
    """The tiny recipe, one epoch, with ``overrides``, validated against ``plugins``."""
    tree = apply_overrides(tiny_recipe(output, "train.epochs=1"), list(overrides))
    return validate_recipe(tree, plugins.registry, "test")


def run_failure(output: Path | str, plugins: Plugins, *overrides: str) -> MMCoreError:
    """The error a run of ``recipe_with(...)`` stops with, checked to be one line."""
    with pytest.raises(MMCoreError) as info:
        run(recipe_with(output, plugins, *overrides), plugins=plugins, show_progress=False)
    assert "\n" not in str(info.value)
    return info.value


def bundled(kind: str) -> list[Component]:
    """The registered components of ``kind`` whose code lives in this repository (the core and
    the plugins under ``plugins/``), not those of whatever else is installed."""
    def here(c: Component) -> bool:
        try:
            source = inspect.getsourcefile(c.factory)
        except TypeError:  # a built-in or a class defined outside any file
            return False
        return source is not None and Path(source).resolve().is_relative_to(REPO)

    return [c for c in get_registry().all(kind) if here(c)]
