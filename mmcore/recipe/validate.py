"""Validating a recipe tree and resolving it to the complete recipe a run is made from.

``validate_recipe`` walks the whole tree against ``schema.Recipe`` and every component's
signature, collects every problem, and raises them together as one ``RecipeError``: a user
fixes a broken recipe in one round, not one error per run. On success it returns the resolved
recipe, plain data with every default written out (component options included), which is what
the run directory stores; validating that tree again returns it unchanged.

Only registered names are ever looked up; nothing named in YAML is imported or executed.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from mmcore.errors import RecipeError
from mmcore.options.checks import resolve_value
from mmcore.recipe.crosschecks import cross_problems
from mmcore.recipe.loader import load_yaml
from mmcore.recipe.machine import machine_problems
from mmcore.recipe.overrides import apply_overrides
from mmcore.recipe.schema import Recipe
from mmcore.registry import Registry


def validate_recipe(
    tree: dict[str, Any], registry: Registry | None = None, source: str = "recipe", *, machine: bool = False, nproc: int = 1
) -> dict[str, Any]:
    """The resolved recipe, or ``RecipeError`` listing every problem as ``<source>: <path>: ...``.

    ``machine``: also check the recipe against this machine (the dataset's files, the devices for
    ``nproc`` processes; ``mmcore.recipe.machine``), for a command about to run it here."""
    if registry is None:
        from mmcore.plugins import get_registry

        registry = get_registry()
    if not isinstance(tree, dict):
        raise RecipeError([f"{source}: a recipe must be a mapping (name: ..., dataset: ..., ...)"])
    resolved, problems = resolve_value(tree, Recipe, "", registry)
    problems += cross_problems(resolved, registry, problems)  # beside the value errors: one pass
    if machine:
        problems += machine_problems(resolved, registry, nproc, problems)
    if problems:
        raise RecipeError([f"{source}: {p}" for p in problems])
    return resolved


def load_recipe(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    registry: Registry | None = None,
    *,
    machine: bool = False,
    nproc: int = 1,
) -> dict[str, Any]:
    """Read a recipe file, apply command-line overrides, validate: the resolved recipe."""
    tree = load_yaml(path)
    tree = apply_overrides(tree, list(overrides))
    return validate_recipe(tree, registry, os.fspath(path), machine=machine, nproc=nproc)
