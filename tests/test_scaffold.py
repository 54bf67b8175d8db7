"""`mmcore new plugin`: the package it writes passes its own tests right after `pip install -e`."""

from __future__ import annotations

import importlib
import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.plugins import load_plugins
from mmcore.scaffold import SCAFFOLD_KINDS
from mmcore.testing import contract_cases, run_contract

runner = CliRunner()


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_every_template_component_passes_the_contract(kind, tmp_path, monkeypatch):
    name = f"tmpl_{kind}"
    result = runner.invoke(app, ["new", "plugin", name, "--kind", kind, "--dir", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    monkeypatch.syspath_prepend(str(tmp_path / name))
    module = importlib.import_module(f"mmcore_{name}.plugin")
    registry = load_plugins(entry_points=[], extra={name: module}).registry
    cases = contract_cases(registry, origin=name)
    assert [k for k, _ in cases] == [kind]
    for case_kind, case_name in cases:
        run_contract(registry, case_kind, case_name)


def test_one_plugin_with_two_kinds_registers_both_and_its_recipe_validates(tmp_path, monkeypatch):
    from mmcore.recipe import load_recipe

    result = runner.invoke(app, ["new", "plugin", "duo", "--kinds", "balancer,imputer", "--dir", str(tmp_path / "duo")])
    assert result.exit_code == 0, result.output
    monkeypatch.syspath_prepend(str(tmp_path / "duo"))
    module = importlib.import_module("mmcore_duo.plugin")
    registry = load_plugins(extra={"duo": module}).registry
    cases = contract_cases(registry, origin="duo")
    assert sorted(cases) == [("balancer", "duo.flat"), ("imputer", "duo.mean_of_present")]
    for case_kind, case_name in cases:
        run_contract(registry, case_kind, case_name)
    # the example recipe puts both in one model: the balancer weighs the unimodal heads' terms
    resolved = load_recipe(tmp_path / "duo" / "recipes" / "duo.yaml", [], registry)
    assert resolved["balancer"]["type"] == "duo.flat" and resolved["model"]["imputer"]["type"] == "duo.mean_of_present"
    bad = runner.invoke(app, ["new", "plugin", "x", "--kinds", "balancer,logger", "--dir", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "expected one or more of balancer, imputer, encoder, fusion" in bad.output


def test_refuses_a_bad_name_and_a_non_empty_folder(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert runner.invoke(app, ["new", "plugin", "My-Plugin"]).exit_code == 1
    result = runner.invoke(app, ["new", "plugin", "ok", "--dir", str(tmp_path / "full")])
    assert result.exit_code == 1 and "already exists and is not empty" in result.output


def test_refuses_the_name_of_a_loaded_plugin(tmp_path):
    for taken in ("mmcore",):  # the built-ins; installed plugins (redcore, ...) are refused the same way
        result = runner.invoke(app, ["new", "plugin", taken, "--dir", str(tmp_path / taken)])
        assert result.exit_code == 1 and f"plugin name '{taken}': already the name of a plugin here" in result.output
        assert not (tmp_path / taken).exists()


def test_pip_install_e_then_its_tests_pass(tmp_path):
    """Exactly what the README of the package says: install it editable, run pytest in it."""
    pkg = tmp_path / "mmcore-demo"
    assert runner.invoke(app, ["new", "plugin", "demo", "--kinds", "imputer,fusion", "--dir", str(pkg)]).exit_code == 0
    # A fresh environment that sees this one's packages (torch, mmcore) but installs into its own.
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    own = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True)
    parent = site.getsitepackages()[0]
    (Path(own.stdout.strip()) / "parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(pkg)]
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([python, "-m", "mmcore.cli", "plugins", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    demo = {p["name"]: p for p in json.loads(listed.stdout)}["demo"]
    assert demo["error"] is None and demo["components"] == [
        {"kind": "imputer", "name": "demo.mean_of_present"}, {"kind": "fusion", "name": "demo.masked_mean"}]
    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], capture_output=True, text=True, env=env, cwd=pkg)
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "4 passed" in tests.stdout  # two contract cases, two short runs
    assert sys.executable != str(python)
