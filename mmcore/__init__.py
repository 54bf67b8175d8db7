"""mmcore: learning with missing modalities, as a plugin framework.

The public API for plugin authors is what this module exports, plus ``mmcore.data`` (loader
helpers for dataset plugins) and ``mmcore.testing`` (the contract suite and its pytest plugin).
A plugin needs nothing deeper; what is exported here changes only after a deprecation period.

- writing hooks: ``hookimpl``, ``Register`` (the type of the ``register`` callback);
- base classes and the data types components speak: ``Balancer``, ``Logger``, ``Dataset``,
  ``ModalitySpec``, ``TaskSpec``, ``SplitData``, ``Batch``, ``ImputerOutput``, ``StepStats``,
  ``InputTransform`` (what a dataset's optional ``input_transform()`` returns);
- errors that reach the user as one line: ``MMCoreError``, ``DataError``, ``RecipeError``,
  ``RegistryError``;
- ranges for option signatures: the markers ``AtLeast``, ``Above``, ``Between``, ``Finite``
  and the named ranges ``PositiveInt``, ``Count``, ``Rate``, ``Fraction``, ``NonNegative``,
  ``Positive`` (``dropout: Fraction = 0.1``);
- the contract suite's entry points, loaded on first use: ``run_contract``, ``contract_cases``,
  ``parametrize_with_contracts``, ``tiny_recipe``.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmcore.engine.launch import quiet_other_ranks

quiet_other_ranks()  # before torch is imported: its warnings print once under --nproc, not once per rank

from mmcore.components import Balancer, Logger  # noqa: E402
from mmcore.errors import DataError, MMCoreError, RecipeError, RegistryError
from mmcore.hookspecs import Register, hookimpl
from mmcore.options.hints import (
    Above,
    AtLeast,
    Between,
    Count,
    Finite,
    Fraction,
    NonNegative,
    Positive,
    PositiveInt,
    Rate,
)
from mmcore.transform import InputTransform
from mmcore.types import Batch, Dataset, ImputerOutput, ModalitySpec, SplitData, StepStats, TaskSpec

from mmcore._version import __version__

_TESTING = ("contract_cases", "parametrize_with_contracts", "run_contract", "tiny_recipe")

__all__ = [
    "Above",
    "AtLeast",
    "Balancer",
    "Batch",
    "Between",
    "Count",
    "DataError",
    "Dataset",
    "Finite",
    "Fraction",
    "ImputerOutput",
    "InputTransform",
    "Logger",
    "MMCoreError",
    "ModalitySpec",
    "NonNegative",
    "Positive",
    "PositiveInt",
    "Rate",
    "RecipeError",
    "Register",
    "RegistryError",
    "SplitData",
    "StepStats",
    "TaskSpec",
    "__version__",
    "hookimpl",
    *_TESTING,
]


def __getattr__(name: str) -> Any:
    """The testing entry points on first use (they import the recipe machinery), and deprecated names."""
    if name in _TESTING:
        return getattr(importlib.import_module("mmcore.testing"), name)
    # every shim, with the release that removes it; AttributeError for any other name
    return importlib.import_module("mmcore.deprecated").moved_name("mmcore", name)
