"""Faults of a third-party plugin at load time: commands that clash with the core's, hints that do
not resolve, and an entry point that interrupts its own import.

(Import errors, ``sys.exit`` at import, raising hooks, names outside the namespace and duplicates
are covered by ``test_plugins.py``; faults at training time by ``test_component_faults.py``.)
"""

from __future__ import annotations

import importlib.metadata as md
import sys
import types
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mmcore import hookimpl
from mmcore.plugins import load_plugins
from mmcore.recipe import apply_overrides, validate_recipe
from mmcore.errors import RecipeError
from mmcore.testing import tiny_recipe


def _plugin(**hooks: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{name: hookimpl(fn) for name, fn in hooks.items()})


def _core_app() -> typer.Typer:
    """A stand-in for the core CLI: one command, one group."""
    app = typer.Typer()

    @app.command()
    def run() -> None:
        print("core run")

    @app.command("list")
    def listing() -> None:
        print("core list")

    app.add_typer(typer.Typer(), name="study")
    return app


def test_a_plugin_command_cannot_replace_a_core_command_and_its_other_commands_stay():
    def commands(app: typer.Typer) -> None:
        @app.command("run")
        def hijack() -> None:
            print("plugin run")

        app.add_typer(typer.Typer(), name="study")

        @app.command()
        def extra_thing() -> None:
            print("plugin extra")

    plugins = load_plugins(entry_points=[], extra={"greedy": _plugin(register_commands=commands)})
    app = _core_app()
    warnings = plugins.register_commands(app)
    assert warnings == [
        "plugin 'greedy' tried to add the command 'run', which mmcore already provides; the plugin's command was not added",
        "plugin 'greedy' tried to add the command 'study', which mmcore already provides; the plugin's command was not added",
    ]
    runner = CliRunner()
    assert runner.invoke(app, ["run"]).output == "core run\n"
    assert runner.invoke(app, ["extra-thing"]).output == "plugin extra\n"


def test_two_plugins_cannot_share_a_command_name_and_a_failing_hook_keeps_none_of_its_commands():
    def first(app: typer.Typer) -> None:
        @app.command("convert")
        def convert() -> None:
            print("first")

    def second(app: typer.Typer) -> None:
        @app.command("convert")
        def convert() -> None:
            print("second")

    def failing(app: typer.Typer) -> None:
        @app.command("half")
        def half() -> None:
            print("half")

        sys.exit(0)

    extra = {"first": _plugin(register_commands=first), "second": _plugin(register_commands=second),
             "failing": _plugin(register_commands=failing)}
    app = _core_app()
    warnings = load_plugins(entry_points=[], extra=extra).register_commands(app)
    assert "plugin 'second' tried to add the command 'convert', which plugin 'first' already provides; the plugin's command was not added" in warnings
    assert "plugin 'failing' failed to add its commands: SystemExit: 0" in warnings
    runner = CliRunner()
    assert runner.invoke(app, ["convert"]).output == "first\n"
    assert runner.invoke(app, ["half"]).exit_code != 0  # not left behind half-registered


def test_an_unresolvable_hint_does_not_drop_the_ranges_of_the_other_options(tmp_path):
    """``from __future__ import annotations`` with ``ModalitySpec`` imported under TYPE_CHECKING only:
    before, every hint of the factory was dropped and ``rate: 5.0`` passed validation."""
    module = types.ModuleType("mmcore_test_lazy_hints")
    exec(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import mmcore, torch\n"
        "if TYPE_CHECKING:\n"
        "    from mmcore import ModalitySpec\n"
        "def lazy(spec: ModalitySpec, dim: int, rate: mmcore.Fraction = 0.5):\n"
        "    return torch.nn.Linear(spec.dim, dim)\n",
        module.__dict__,
    )
    plugins = load_plugins(entry_points=[], extra={"lazy": _plugin(register_encoders=lambda register: register("lazy.enc", module.lazy))})
    (option,) = plugins.registry.get("encoder", "lazy.enc").options()
    assert option.name == "rate" and "Annotated" in str(option.annotation)
    tree = apply_overrides(tiny_recipe(tmp_path), ["model.encoders.m1={type: lazy.enc, rate: 5.0}"])
    with pytest.raises(RecipeError, match=r"model\.encoders\.m1\.rate: expected float in \[0, 1\), got float 5\.0"):
        validate_recipe(tree, plugins.registry, "test")


def test_an_entry_point_interrupting_its_import_or_naming_a_missing_object_is_skipped(tmp_path, monkeypatch):
    (tmp_path / "mmcore_test_interrupts.py").write_text("raise KeyboardInterrupt\n")
    (tmp_path / "mmcore_test_empty.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [md.EntryPoint(name="interrupts", value="mmcore_test_interrupts", group="mmcore"),
              md.EntryPoint(name="empty", value="mmcore_test_empty:plugin", group="mmcore")]
    plugins = load_plugins(entry_points=points)
    errors = {i.name: i.error for i in plugins.infos}
    assert errors["interrupts"] == "failed to load: KeyboardInterrupt: "
    assert errors["empty"] == "failed to load: AttributeError: module 'mmcore_test_empty' has no attribute 'plugin'"
    assert "mmcore.mlp" in plugins.registry.names("encoder")
