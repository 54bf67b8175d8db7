"""The baselines plugin as mmcore sees it: entry point, options read from signatures, contract suite."""

from __future__ import annotations

import pytest

from mmcore.options.hints import type_name
from mmcore.plugins import load_plugins
from mmcore.registry import REQUIRED
from mmcore.testing import contract_cases, run_contract
from mmcore_baselines import OGMGE, InverseRate, MissingToken, MMINImputer, RunningMean

PLUGINS = load_plugins()
REGISTRY = PLUGINS.registry
CASES = contract_cases(REGISTRY, origin="baselines")


def test_found_through_the_entry_point() -> None:
    info = next(i for i in PLUGINS.infos if i.name == "baselines")
    assert info.error is None
    assert info.version == "0.1.0" and "mmcore-baselines" in info.origin
    assert sorted(info.components) == [
        "balancer:baselines.agm",
        "balancer:baselines.balm",
        "balancer:baselines.gblending",
        "balancer:baselines.inforeg",
        "balancer:baselines.inverse_rate",
        "balancer:baselines.mmpareto",
        "balancer:baselines.ogm_ge",
        "balancer:baselines.pattern_dro",
        "balancer:baselines.pmr",
        "imputer:baselines.mean",
        "imputer:baselines.missing_token",
        "imputer:baselines.mmin",
        "imputer:baselines.neighbours",
        "imputer:baselines.shaspec",
    ]
    assert REGISTRY.get("imputer", "baselines.missing_token").factory is MissingToken
    assert REGISTRY.get("imputer", "baselines.mean").factory is RunningMean
    assert REGISTRY.get("imputer", "baselines.mmin").factory is MMINImputer
    assert REGISTRY.get("balancer", "baselines.ogm_ge").factory is OGMGE
    assert REGISTRY.get("balancer", "baselines.inverse_rate").factory is InverseRate


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMCORE_DISABLE_PLUGINS", "baselines")
    plugins = load_plugins()
    assert "baselines.mmin" not in plugins.registry.names("imputer")
    assert next(i for i in plugins.infos if i.name == "baselines").error == "disabled by MMCORE_DISABLE_PLUGINS"


def _defaults(kind: str, name: str) -> dict[str, object]:
    return {o.name: o.default for o in REGISTRY.get(kind, name).options()}


def test_options_are_read_from_the_signatures() -> None:
    assert _defaults("imputer", "baselines.missing_token") == {}
    assert _defaults("imputer", "baselines.mean") == {"momentum": 0.1}
    assert _defaults("imputer", "baselines.mmin") == {
        "hidden": [256, 128, 64],
        "blocks": 5,
        "recon_weight": 4.0,
        "cycle_weight": 2.0,
        "hide_rate": 0.5,
        "hide_scope": "imputer",
        "detach_target": True,
        "hide_rule": "independent",
    }
    assert _defaults("balancer", "baselines.ogm_ge") == {
        "target": "unimodal",
        "alpha": 0.1,
        "ge": True,
        "start_step": 0,
        "end_step": None,
        "formula": "shifted",
    }
    # missing_rates is injected by the framework, so the only option is the target group
    assert _defaults("balancer", "baselines.inverse_rate") == {"target": "recon", "norm": "mean", "total": 1.0}
    momentum = next(o for o in REGISTRY.get("balancer", "baselines.pmr").options() if o.name == "momentum")
    assert type_name(momentum.annotation) == "float in [0, 1)"  # in the signature, so `mmcore components` shows it
    for kind, name in CASES:
        assert REQUIRED not in _defaults(kind, name).values()
        assert REGISTRY.get(kind, name).doc  # every component says what it is in `mmcore components`


def test_contract_cases_cover_every_component() -> None:
    assert sorted(CASES) == [
        ("balancer", "baselines.agm"),
        ("balancer", "baselines.balm"),
        ("balancer", "baselines.gblending"),
        ("balancer", "baselines.inforeg"),
        ("balancer", "baselines.inverse_rate"),
        ("balancer", "baselines.mmpareto"),
        ("balancer", "baselines.ogm_ge"),
        ("balancer", "baselines.pattern_dro"),
        ("balancer", "baselines.pmr"),
        ("imputer", "baselines.mean"),
        ("imputer", "baselines.missing_token"),
        ("imputer", "baselines.mmin"),
        ("imputer", "baselines.neighbours"),
        ("imputer", "baselines.shaspec"),
    ]


@pytest.mark.parametrize("kind,name", CASES)
def test_contract(kind: str, name: str) -> None:
    run_contract(REGISTRY, kind, name)
