"""Helpers for command-line commands, shared by the core CLI and plugins' commands.

A plugin that adds a command through ``register_commands`` decorates it with
``friendly_errors`` so that its user mistakes end the same way as the core's: one red line on
stderr and the error's exit code (``MMCORE_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from mmcore.errors import MMCoreError

err_console = Console(stderr=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MMCoreError into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MMCoreError as exc:
            if os.environ.get("MMCORE_DEBUG"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("[red]interrupted[/]: the last completed epoch is in checkpoints/last; continue with `mmcore resume RUN_DIR`")
            raise typer.Exit(130)

    return wrapper
