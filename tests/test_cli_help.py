"""Every command, argument and option of the CLI (plugins' commands included) has help text."""

from __future__ import annotations

from typing import Any

import typer

from mmcore import cli


def _undocumented(command: Any, path: list[str]) -> list[str]:
    missing = [] if (command.help or "").strip() or not path else [" ".join(path)]
    for param in command.params:
        if param.name != "help" and not (getattr(param, "help", None) or "").strip():
            missing.append(f"{' '.join(path)} {param.name}")
    for name, sub in (getattr(command, "commands", None) or {}).items():
        missing += _undocumented(sub, [*path, name])
    return missing


def test_every_command_and_option_has_help() -> None:
    cli._add_plugin_commands()
    root = typer.main.get_command(cli.app)
    assert len(getattr(root, "commands", {})) >= 10  # the walk sees the real command tree
    assert _undocumented(root, []) == []


def test_every_bundled_component_option_has_help() -> None:
    """What `mmcore components NAME` prints under each option (the factory docstring's Args)."""
    from mmcore.plugins import get_registry

    bundled = ("mmcore", "redcore", "baselines", "corpora")
    components = [c for c in get_registry().all() if c.name.split(".")[0] in bundled]
    assert {c.name.split(".")[0] for c in components} >= {"mmcore"}
    missing = [f"{c.name}.{o.name}" for c in components for o in c.options() if not o.help.strip()]
    assert missing == []
