"""Helpers for command-line commands, shared by the core CLI and plugins' commands.

A plugin that adds a command through ``register_commands`` decorates it with
``friendly_errors`` so that its user mistakes end the same way as the core's: one red line on
stderr and the error's exit code (``MMCORE_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape

from mmcore.errors import MMCoreError

err_console = Console(stderr=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's or ``kill``'s stop) like Ctrl-C while a command runs, so it
    ends with the same clean message, exit code 130 and resumable state."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn MMCoreError into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with sigterm_as_interrupt():
                return fn(*args, **kwargs)
        except MMCoreError as exc:
            if os.environ.get("MMCORE_DEBUG"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:  # outside training (the trainer says what can be resumed itself)
            err_console.print("[red]interrupted[/]")
            raise typer.Exit(130)

    return wrapper
