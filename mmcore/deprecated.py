"""Every deprecated name that still works, in one place, with the release that removes it.

Each shim warns once per call with ``DeprecationWarning`` and then does exactly what its
replacement does, so that third-party code keeps passing its tests until the removal release.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmcore.engine.runtime import Runtime
    from mmcore.types import StepStats

REMOVED_IN = "0.2"  # the release that deletes everything in this module


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated and will be removed in mmcore {REMOVED_IN}; {new}", DeprecationWarning, stacklevel=4)


def stop_after_steps(recipe: dict[str, Any], steps: int | None) -> dict[str, Any]:
    """``run(stop_after_steps=N)`` → ``train.max_steps = N``."""
    if steps is None:
        return recipe
    _warn("run(stop_after_steps=N)", "set recipe['train']['max_steps'] = N (train.max_steps=N)")
    return {**recipe, "train": {**recipe["train"], "max_steps": int(steps)}}


def runtime_pool_stats(runtime: "Runtime", stats: "StepStats") -> "StepStats":
    """``Runtime.pool_stats(stats)`` → ``mmcore.engine.losses.pool_stats(stats, runtime)``."""
    from mmcore.engine.losses import pool_stats

    _warn("Runtime.pool_stats(stats)", "use mmcore.engine.losses.pool_stats(stats, runtime)")
    return pool_stats(stats, runtime)


MOVED_MODULES = {  # old module -> its new home
    "mmcore.recipe.hints": "mmcore.options.hints",
    "mmcore.recipe.checks": "mmcore.options.checks",
    "mmcore.shapley": "mmcore.report.shapley",
    "mmcore.stats": "mmcore.report.stats",
    "mmcore.robustness": "mmcore.report.robustness",
}

# Module attributes that moved or were renamed: (module, old name) -> (module, new name), and what
# to say beside it. ``mmcore.__getattr__`` and ``mmcore.packing.__getattr__`` look them up here.
MOVED_NAMES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("mmcore", "hookspec"): ("mmcore.hookspecs", "hookspec", ""),
    ("mmcore.packing", "PACK_BELOW"): (
        "mmcore.packing", "PACK_BELOW_EVALUATION", " (the same 0.8; training batches now use PACK_BELOW_TRAINING)"
    ),
}


def moved_name(module: str, name: str) -> Any:
    """``module.name`` of ``MOVED_NAMES``: the object at its new home, with a warning naming it;
    ``AttributeError`` for any other name (what a module's ``__getattr__`` must raise)."""
    if (module, name) not in MOVED_NAMES:
        raise AttributeError(f"module '{module}' has no attribute '{name}'")
    new_module, new, note = MOVED_NAMES[(module, name)]
    warnings.warn(
        f"{module}.{name} is deprecated and will be removed in mmcore {REMOVED_IN}; use {new_module}.{new}{note}",
        DeprecationWarning, stacklevel=3,
    )
    return getattr(importlib.import_module(new_module), new)


def moved_module(old: str) -> None:
    """Make the module ``old`` the module it moved to (every name, private ones included), with a
    warning naming the new home: ``import mmcore.recipe.hints`` → ``mmcore.options.hints``."""
    new = MOVED_MODULES[old]
    warnings.warn(f"{old} is deprecated and will be removed in mmcore {REMOVED_IN}; import {new}", DeprecationWarning, stacklevel=3)
    sys.modules[old] = importlib.import_module(new)
