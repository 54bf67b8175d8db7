"""Module layering that the issue 21 refactor set up, checked on the source: the option type system
sits below the registry and the recipe package, production code does not import ``mmcore.testing``,
and the moved modules' old names still work with a warning naming the new home."""

from __future__ import annotations

import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "mmcore"


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_option_type_system_imports_neither_the_registry_nor_the_recipe_package():
    for path in (ROOT / "options").glob("*.py"):
        bad = {m for m in _runtime_imports(path) if m.startswith(("mmcore.registry", "mmcore.recipe", "mmcore.plugins"))}
        assert not bad, f"{path.name} imports {bad}"


def test_production_code_does_not_import_mmcore_testing():
    for path in ROOT.rglob("*.py"):
        if "testing" in path.relative_to(ROOT).parts or "scaffold" in path.relative_to(ROOT).parts:
            continue  # the suite itself, and the templates of a plugin's tests
        imports = _runtime_imports(path)
        assert not any(m == "mmcore.testing" or m.startswith("mmcore.testing.") for m in imports), path


@pytest.mark.parametrize(("old", "new"), [("mmcore.recipe.hints", "mmcore.options.hints"), ("mmcore.recipe.checks", "mmcore.options.checks")])
def test_moved_modules_keep_working_with_a_warning(monkeypatch, old, new):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated .* import {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_contract_skip_is_one_class_in_both_homes():
    from mmcore.components import ContractSkip
    from mmcore.testing import ContractSkip as exported

    assert exported is ContractSkip


def test_importing_mmcore_warns_about_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ("mmcore", "mmcore.recipe", "mmcore.registry", "mmcore.engine.trainer", "mmcore.cli"):
            importlib.reload(importlib.import_module(name)) if name == "mmcore.recipe" else importlib.import_module(name)


def test_every_optional_factory_attribute_is_in_the_manual_and_shown():
    from mmcore.clitools import component_view
    from mmcore.components import FACTORY_ATTRIBUTES, KINDS
    from mmcore.plugins import get_registry

    manual = (ROOT.parent / "CONTRIBUTING.md").read_text()
    for row in FACTORY_ATTRIBUTES:
        assert f"| `{row.name}` | {', '.join(row.kinds)} | {row.meaning} |" in manual, row.name
        assert set(row.kinds) <= set(KINDS)
    view = component_view(get_registry(), "mmcore.synthetic")
    assert "declares:\n  describe: a function\n" in view


@pytest.mark.parametrize("old", ["mmcore.shapley", "mmcore.stats", "mmcore.robustness"])
def test_report_modules_keep_their_old_names_with_a_warning(monkeypatch, old):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"import mmcore.report.{old.split('.')[1]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(f"mmcore.report.{old.split('.')[1]}")


def test_a_deprecated_package_name_warns_with_its_replacement():
    import mmcore
    from mmcore.hookspecs import hookspec

    with pytest.warns(DeprecationWarning, match="mmcore.hookspec is deprecated .* use mmcore.hookspecs.hookspec"):
        assert mmcore.hookspec is hookspec
    with pytest.raises(AttributeError):
        mmcore.no_such_name  # noqa: B018


def test_a_renamed_module_constant_warns_with_its_replacement():
    import mmcore.packing as packing

    with pytest.warns(DeprecationWarning, match="mmcore.packing.PACK_BELOW is deprecated .* use mmcore.packing.PACK_BELOW_EVALUATION"):
        assert packing.PACK_BELOW == packing.PACK_BELOW_EVALUATION == 0.8
    with pytest.raises(AttributeError, match="mmcore.packing"):
        packing.NO_SUCH_NAME  # noqa: B018


def test_a_fresh_process_imports_the_engine_without_warnings():
    """In a new interpreter (in this one, everything is imported already)."""
    import subprocess

    code = "import mmcore.engine.trainer, mmcore.cli; from mmcore import deprecated; print(deprecated.REMOVED_IN)"
    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


ENGINE_READS_THE_PLAN = ("build.py", "session.py", "trainer.py", "blame.py", "runtime.py", "rundir.py")


@pytest.mark.parametrize("name", ENGINE_READS_THE_PLAN)
def test_the_engine_reads_the_plan_not_raw_recipe_keys(name):
    """Parse once: after validation, ``mmcore.recipe.plan.plan_of`` is the one reader of the
    resolved recipe's keys; these modules subscript no ``recipe`` (nor call its ``get``)."""
    tree = ast.parse((ROOT / "engine" / name).read_text())

    def is_recipe(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "recipe") or (isinstance(node, ast.Attribute) and node.attr == "recipe")

    reads = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if (isinstance(node, ast.Subscript) and is_recipe(node.value))
        or (isinstance(node, ast.Attribute) and node.attr == "get" and is_recipe(node.value))
    ]
    assert reads == [], f"engine/{name} reads raw recipe keys: {reads}"
