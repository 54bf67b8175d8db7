"""The component contract suite: checks any plugin package can run on its own components.

Every check builds the component the way the engine does (``Component.build`` with the injected
arguments of its kind), at tiny sizes, and raises ``AssertionError`` with a message naming the
component and the broken rule. The functions are plain, so any test runner can call them; a
plugin's whole suite is a few lines of pytest::

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
Encoders are checked on a vector and on a sequence modality; an encoder that supports only one
declares ``contract_modalities = ("sequence",)`` (or ``("vector",)``) on its factory.

Layout: ``_common`` (sizes, helpers), ``modules`` (encoder, imputer, fusion), ``balancers``,
``datasets``; ``recipes.tiny_recipe`` gives plugin tests a resolved recipe that trains in seconds.
"""

from __future__ import annotations

from typing import Callable

from mmcore.components import KINDS
from mmcore.registry import Component, Registry
from mmcore.testing._common import ContractSkip, option_sets, present_masks
from mmcore.testing.balancers import check_balancer, step_stats
from mmcore.testing.datasets import check_dataset
from mmcore.testing.modules import check_encoder, check_fusion, check_imputer
from mmcore.testing.recipes import tiny_recipe

__all__ = [
    "ContractSkip",
    "check_balancer",
    "check_dataset",
    "check_encoder",
    "check_fusion",
    "check_imputer",
    "contract_cases",
    "option_sets",
    "present_masks",
    "run_contract",
    "step_stats",
    "tiny_recipe",
]

def contract_cases(registry: Registry, origin: str | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every registered component (of plugin ``origin`` if given), to parametrize over."""
    return [(c.kind, c.name) for c in registry.all() if origin is None or c.origin == origin]


def run_contract(registry: Registry, kind: str, name: str) -> None:
    """Run the check of a registered component's kind on it."""
    if kind not in KINDS:
        raise AssertionError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
    CHECKS[kind](registry.get(kind, name))


CHECKS: dict[str, Callable[[Component], None]] = {
    "dataset": check_dataset,
    "encoder": check_encoder,
    "imputer": check_imputer,
    "fusion": check_fusion,
    "balancer": check_balancer,
}
