"""The redcore plugin as mmcore sees it: found through its entry point, options, contract suite."""

from __future__ import annotations

import pytest

from mmcore.plugins import load_plugins
from mmcore.registry import REQUIRED
from mmcore.testing import contract_cases, run_contract
from mmcore.types import ModalitySpec
from mmcore_redcore import RelativeAdvantage, VIBImputer

PLUGINS = load_plugins()
REGISTRY = PLUGINS.registry


def test_found_through_the_entry_point() -> None:
    info = next(i for i in PLUGINS.infos if i.name == "redcore")
    assert info.error is None
    assert info.version == "0.1.0" and "mmcore-redcore" in info.origin
    assert sorted(info.components) == ["balancer:redcore.relative_advantage", "imputer:redcore.vib"]
    assert REGISTRY.get("imputer", "redcore.vib").factory is VIBImputer
    assert REGISTRY.get("balancer", "redcore.relative_advantage").factory is RelativeAdvantage


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMCORE_DISABLE_PLUGINS", "redcore")
    plugins = load_plugins()
    assert "redcore.vib" not in plugins.registry.names("imputer")
    assert next(i for i in plugins.infos if i.name == "redcore").error == "disabled by MMCORE_DISABLE_PLUGINS"


def test_options_are_read_from_the_signatures() -> None:
    imputer = {o.name: o.default for o in REGISTRY.get("imputer", "redcore.vib").options()}
    assert imputer == {
        "hidden": [256, 128, 64],
        "blocks": 5,
        "kl_weight": 1.6e-3,
        "recon_weight": 0.15,
        "kl_half": True,
        "kl_reduction": "present",
        "detach_target": False,
        "absent_input": "learned",
        "activation": "none",
        "zero_init": True,
        "hide_rate": 0.0,
        "hide_scope": "imputer",
        "hide_rule": "independent",
    }
    balancer = {o.name: o.default for o in REGISTRY.get("balancer", "redcore.relative_advantage").options()}
    assert balancer == {
        "target": "recon",
        "rho": 0.7,
        "interval": 3,
        "eta": 0.1,
        "eta_growth": 1.5,
        "eta_every": 500,
        "beta_min": 0.1,
        "projection": "clamp",
    }
    assert REQUIRED not in imputer.values() and REQUIRED not in balancer.values()
    assert "Gaussian latent" in REGISTRY.get("imputer", "redcore.vib").doc


def test_built_like_the_engine_builds_it() -> None:
    specs = [ModalitySpec("x", 4), ModalitySpec("y", 2)]
    imp = REGISTRY.get("imputer", "redcore.vib").build({"specs": specs, "dim": 8}, {"hidden": [8], "blocks": 1})
    assert isinstance(imp, VIBImputer) and len(imp.predictors) == 2
    bal = REGISTRY.get("balancer", "redcore.relative_advantage").build(
        {"modalities": ["x", "y"], "missing_rates": {"x": 0.2, "y": 0.8}}, {"projection": "exact"}
    )
    assert isinstance(bal, RelativeAdvantage) and bal.projection == "exact" and bal.modalities == ["x", "y"]


CASES = contract_cases(REGISTRY, origin="redcore")


def test_contract_cases_cover_both_components() -> None:
    assert sorted(CASES) == [("balancer", "redcore.relative_advantage"), ("imputer", "redcore.vib")]


@pytest.mark.parametrize("kind,name", CASES)
def test_contract(kind: str, name: str) -> None:
    run_contract(REGISTRY, kind, name)
