"""mmcore's pytest plugin (entry point group ``pytest11``): fixtures for plugin test suites.

Installed with mmcore, so any plugin package's tests can use, with no conftest:

- ``mmcore_registry``: the registry of every installed plugin (``mmcore.plugins.get_registry()``);
- ``mmcore_recipe``: ``tiny_recipe`` writing its runs under the test's ``tmp_path``:
  ``mmcore_recipe("train.epochs=2", imputer={"type": "myplugin.fancy"})``;
- ``mmcore_run``: ``short_run`` (train, stop with ``max_steps``, ``resume`` a run directory).

The contract suite itself is a decorator, ``mmcore.testing.parametrize_with_contracts``. This
module imports nothing heavy at load time, so it costs nothing in sessions that do not use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest


@pytest.fixture
def mmcore_registry() -> Any:
    """The registry of every installed plugin."""
    from mmcore.plugins import get_registry

    return get_registry()


@pytest.fixture
def mmcore_recipe(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``tiny_recipe`` bound to this test's ``tmp_path``: ``(*overrides, **nodes) -> resolved recipe``."""
    from mmcore.testing.recipes import tiny_recipe

    def make(*overrides: str, **nodes: Any) -> dict[str, Any]:
        return tiny_recipe(tmp_path / "runs", *overrides, **nodes)

    return make


@pytest.fixture
def mmcore_run() -> Callable[..., Any]:
    """``mmcore.testing.short_run``: ``(recipe, *, max_steps=None, resume=None) -> RunResult``."""
    from mmcore.testing.training import short_run

    return short_run
