"""Plugin loading: defaults, entry points, broken and duplicate plugins, disabling, registry."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from mmcore import hookimpl
from mmcore.errors import RegistryError
from mmcore.plugins import load_plugins
from mmcore.registry import REQUIRED, Registry

EXAMPLE = Path(__file__).parent / "example_plugin"


def _plugin(**hooks) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def test_core_plugin_registers_generic_components():
    plugins = load_plugins(entry_points=[])
    reg = plugins.registry
    assert "mmcore.synthetic" in reg.names("dataset")
    assert {"mmcore.mlp", "mmcore.transformer"} <= set(reg.names("encoder"))
    assert reg.names("imputer")[:1] and "mmcore.zero" in reg.names("imputer")
    assert "mmcore.concat" in reg.names("fusion") and "mmcore.uniform" in reg.names("balancer")
    assert plugins.infos[0].name == "mmcore" and plugins.infos[0].origin == "builtin"


def test_broken_plugin_is_reported_and_the_rest_keep_working():
    broken = md.EntryPoint(name="broken", value="no_such_module_for_mmcore_tests:plugin", group="mmcore")
    good = _plugin(register_balancers=lambda register: register("good.flat", lambda modalities: None))
    plugins = load_plugins(entry_points=[broken], extra={"good": good})
    by_name = {i.name: i for i in plugins.infos}
    assert "ModuleNotFoundError" in by_name["broken"].error
    assert by_name["good"].error is None
    assert "good.flat" in plugins.registry.names("balancer")


def test_duplicate_name_names_both_origins_and_skips_the_second_plugin():
    first = _plugin(register_imputers=lambda register: register("shared.imp", lambda specs, dim: None))

    def second_hook(register):
        register("second.ok", lambda specs, dim: None)
        register("shared.imp", lambda specs, dim: None)

    second = _plugin(register_imputers=second_hook)
    plugins = load_plugins(entry_points=[], extra={"first": first, "second": second})
    info = {i.name: i for i in plugins.infos}["second"]
    assert "registered twice: by plugin 'first' and by plugin 'second'" in info.error
    assert "second.ok" not in plugins.registry.names("imputer")  # a failed plugin leaves nothing behind
    assert plugins.registry.get("imputer", "shared.imp").origin == "first"


def test_disable_plugins_by_environment(monkeypatch):
    monkeypatch.setenv("MMCORE_DISABLE_PLUGINS", "first, other")
    first = _plugin(register_imputers=lambda register: register("first.imp", lambda specs, dim: None))
    plugins = load_plugins(entry_points=[], extra={"first": first})
    assert {i.name: i for i in plugins.infos}["first"].error == "disabled by MMCORE_DISABLE_PLUGINS"
    assert "first.imp" not in plugins.registry.names("imputer")


def test_registry_rules_and_option_schema():
    reg = Registry()

    def factory(specs, dim, width: int = 8, mode: str = "a", scale: float = REQUIRED):  # type: ignore[assignment]
        """Makes things. Second sentence is not shown."""

    reg.register("imputer", "x.y", factory, origin="x")
    comp = reg.get("imputer", "x.y")
    assert [(o.name, o.annotation, o.default) for o in comp.options()] == [
        ("width", int, 8),
        ("mode", str, "a"),
        ("scale", float, REQUIRED),
    ]
    assert comp.doc == "Makes things. Second sentence is not shown."
    with pytest.raises(RegistryError, match="must be dotted"):
        reg.register("imputer", "plain", factory, origin="x")
    with pytest.raises(RegistryError, match="unknown imputer 'x.z'; did you mean 'x.y'"):
        reg.get("imputer", "x.z")


def test_installed_third_party_package_is_found_through_its_entry_point(tmp_path):
    """pip-installs tests/example_plugin (its own pyproject.toml) into a folder, then uses it."""
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(EXAMPLE)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    listing = subprocess.run(
        [sys.executable, "-m", "mmcore.cli", "components", "balancer"], env=env, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    assert "example.halves" in listing.stdout
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: ex\ndataset: {type: mmcore.synthetic, samples: 200}\nbalancer: {type: example.halves, factor: 0.5}\n"
    )
    check = subprocess.run(
        [sys.executable, "-m", "mmcore.cli", "validate", str(recipe)], env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
