"""The component contract suite: checks any plugin package can run on its own components, and a
pytest plugin (``mmcore.testing.pytest_plugin``, entry point group ``pytest11``) with the same
suite as one decorator plus fixtures for a tiny recipe and a short training run.

Every check builds the component the way the engine does (``Component.build`` with the injected
arguments of its kind), at tiny sizes, and raises ``AssertionError`` with a message naming the
component and the broken rule. The functions are plain, so any test runner can call them; a
plugin's whole suite is a few lines of pytest::

    import pytest
    from mmcore.plugins import get_registry
    from mmcore.testing import contract_cases, run_contract

    @pytest.mark.parametrize("kind,name", contract_cases(get_registry(), origin="myplugin"))
    def test_contract(kind, name):
        run_contract(get_registry(), kind, name)

Options. A component is built with its default options, updated by the optional attribute
``contract_options`` on its factory: a dict, a list of dicts (each configuration is checked), or
a zero-argument callable returning either (a dataset can write tiny fixture files there)::

    MyEncoder.contract_options = {"layers": [8]}

A component with a required option that ``contract_options`` does not supply cannot be built
here; its check raises ``ContractSkip`` (a ``unittest.SkipTest``, so pytest reports a skip).
A component that needs an optional dependency names its top-level modules in
``contract_requires = ("tensorboard",)``; where one is not installed, its check is skipped.
Encoders are checked on a vector and on a sequence modality; an encoder that supports only one
declares ``contract_modalities = ("sequence",)`` (or ``("vector",)``) on its factory.

A rule added in a release fails nothing at first: its check gives a ``FutureWarning`` with the
same one line as a failure would, ending "a later version of the contract suite will fail on
it", so a plugin whose suite passed keeps passing (run pytest with ``-W error::FutureWarning``
to hold a plugin to the coming rules). The check functions' docstrings list which are warnings.

Layout: ``_common`` (sizes, helpers), ``modules`` (encoder, imputer, fusion), ``balancers``,
``datasets``, ``loggers``; ``recipes.tiny_recipe`` gives plugin tests a resolved recipe that
trains in seconds, ``training`` runs it (``short_run``, ``check_resume``), ``distributed`` checks
balancers across gloo ranks, and ``pytest_plugin`` gives the fixtures. Every kind of
``mmcore.components.KIND_TABLE`` has its check in ``CHECKS`` (a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mmcore.components import KINDS
from mmcore.registry import Component, Registry
from mmcore.testing._common import ContractSkip, option_sets, present_masks
from mmcore.testing.balancers import check_balancer, step_stats
from mmcore.testing.datasets import check_dataset
from mmcore.testing.loggers import check_logger
from mmcore.testing.modules import check_encoder, check_fusion, check_imputer
from mmcore.testing.recipes import tiny_recipe
from mmcore.testing.training import ResumeCheck, check_resume, short_run

__all__ = [
    "ContractSkip",
    "ResumeCheck",
    "check_balancer",
    "check_dataset",
    "check_encoder",
    "check_fusion",
    "check_imputer",
    "check_logger",
    "check_resume",
    "ContractCase",
    "contract_cases",
    "parametrize_with_contracts",
    "option_sets",
    "present_masks",
    "run_contract",
    "short_run",
    "step_stats",
    "tiny_recipe",
]


CHECKS: dict[str, Callable[[Component], None]] = {
    "dataset": check_dataset,
    "encoder": check_encoder,
    "imputer": check_imputer,
    "fusion": check_fusion,
    "balancer": check_balancer,
    "logger": check_logger,
}


def contract_cases(registry: Registry, origin: str | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every registered component (of plugin ``origin`` if given), to parametrize over.

    With ``origin``, a plugin that is missing, was skipped or registers nothing raises
    ``AssertionError`` (with the plugin's load error when there is one): a plugin's suite
    must not go green with nothing checked.
    """
    cases = [(c.kind, c.name) for c in registry.all() if origin is None or c.origin == origin]
    if origin is not None and not cases:
        if origin in registry.failed:
            raise AssertionError(f"plugin '{origin}' was skipped, so none of its components can be checked: {registry.failed[origin]}")
        loaded = sorted({c.origin for c in registry.all()})
        raise AssertionError(
            f"plugin '{origin}' registered no components (is it installed? plugins with components: {', '.join(loaded)})"
        )
    return cases


def run_contract(registry: Registry, kind: str, name: str) -> None:
    """Run the check of a registered component's kind on it."""
    if kind not in KINDS:
        raise AssertionError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
    CHECKS[kind](registry.get(kind, name))


@dataclass(frozen=True)
class ContractCase:
    """One component to check, as ``parametrize_with_contracts`` hands it to a test."""

    kind: str
    name: str

    def run(self, registry: Registry | None = None) -> None:
        """Run the contract check of this component's kind (``ContractSkip`` becomes a pytest skip)."""
        from mmcore.plugins import get_registry

        run_contract(registry or get_registry(), self.kind, self.name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


def parametrize_with_contracts(origin: str, argname: str = "case") -> Any:
    """A ``pytest.mark.parametrize`` over every component of plugin ``origin`` (in the spirit of
    scikit-learn's ``parametrize_with_checks``): the test receives a ``ContractCase`` and calls
    ``case.run()``. Collection fails with the plugin's error if it is missing or was skipped."""
    import pytest

    from mmcore.plugins import get_registry

    cases = [ContractCase(k, n) for k, n in contract_cases(get_registry(), origin=origin)]
    return pytest.mark.parametrize(argname, cases, ids=[str(c) for c in cases])
