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
from mmcore.errors import MMCoreError, RegistryError
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


def test_duplicate_name_names_both_origins_and_skips_the_plugin():
    def hook(register):
        register("twice.ok", lambda specs, dim: None)
        register("twice.imp", lambda specs, dim: None)
        register("twice.imp", lambda specs, dim: None)

    plugins = load_plugins(entry_points=[], extra={"twice": _plugin(register_imputers=hook)})
    info = {i.name: i for i in plugins.infos}["twice"]
    assert "registered twice: by plugin 'twice' and by plugin 'twice'" in info.error
    assert "twice.ok" not in plugins.registry.names("imputer")  # a failed plugin leaves nothing behind


def test_component_outside_the_plugin_namespace_is_a_load_error():
    def hook(register):
        register("probe.fine", lambda modalities: None)
        register("redcore.sneaky", lambda modalities: None)

    plugins = load_plugins(entry_points=[], extra={"probe": _plugin(register_balancers=hook)})
    info = {i.name: i for i in plugins.infos}["probe"]
    assert "'redcore.sneaky' is outside the plugin's namespace: plugin 'probe' registers 'probe.<name>'" in info.error
    assert not {"probe.fine", "redcore.sneaky"} & set(plugins.registry.names("balancer"))


def test_misspelt_hook_is_rejected_with_the_nearest_hook_name():
    typo = _plugin(register_imputer=lambda register: register("typo.imp", lambda specs, dim: None))
    plugins = load_plugins(entry_points=[], extra={"typo": typo})
    error = {i.name: i for i in plugins.infos}["typo"].error
    assert "hook 'register_imputer' has no spec; did you mean 'register_imputers'?" in error


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, BaseException])
def test_base_exception_in_a_hook_is_isolated(exc):
    def hook(register):
        register("rude.imp", lambda specs, dim: None)
        raise exc("boom")

    good = _plugin(register_balancers=lambda register: register("good.flat", lambda modalities: None))
    plugins = load_plugins(entry_points=[], extra={"rude": _plugin(register_imputers=hook), "good": good})
    by_name = {i.name: i for i in plugins.infos}
    assert by_name["rude"].error == f"failed to register: {exc.__name__}: boom"
    assert "rude.imp" not in plugins.registry.names("imputer") and "good.flat" in plugins.registry.names("balancer")


def test_sys_exit_at_import_is_reported_like_any_failing_plugin(tmp_path, monkeypatch):
    (tmp_path / "mmcore_test_exits.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    exits = md.EntryPoint(name="exits", value="mmcore_test_exits", group="mmcore")
    plugins = load_plugins(entry_points=[exits])
    assert {i.name: i for i in plugins.infos}["exits"].error == "failed to load: SystemExit: 3"
    assert "mmcore.mlp" in plugins.registry.names("encoder")


def test_unknown_component_of_a_skipped_plugin_says_why():
    broken = md.EntryPoint(name="broken", value="no_such_module_for_mmcore_tests:plugin", group="mmcore")
    registry = load_plugins(entry_points=[broken]).registry
    with pytest.raises(RegistryError, match=r"unknown imputer 'broken.vib': plugin 'broken' was skipped: failed to load: ModuleNotFoundError"):
        registry.get("imputer", "broken.vib")


def test_factory_without_signature_and_factory_of_the_wrong_type_name_the_plugin():
    opaque = _plugin(register_datasets=lambda register: register("opaque.data", dict))
    info = {i.name: i for i in load_plugins(entry_points=[], extra={"opaque": opaque}).infos}["opaque"]
    assert "dataset 'opaque.data' from plugin 'opaque': the factory's signature cannot be inspected" in info.error

    wrong = _plugin(register_fusions=lambda register: register("wrong.fusion", lambda specs, dim, out_dim: 3))
    component = load_plugins(entry_points=[], extra={"wrong": wrong}).registry.get("fusion", "wrong.fusion")
    with pytest.raises(RegistryError, match=r"^fusion 'wrong.fusion' \(plugin wrong\): factory returned int, not an nn.Module$"):
        component.build({"specs": [], "dim": 4, "out_dim": 2}, {})

    def explode(specs, dim):
        raise ZeroDivisionError("division by zero")

    component = Registry().register("imputer", "x.boom", explode, origin="x")
    with pytest.raises(MMCoreError, match=r"^imputer 'x.boom' \(plugin x\) failed to build: ZeroDivisionError"):
        component.build({"specs": [], "dim": 4}, {})


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
