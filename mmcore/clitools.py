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
import sys
import threading
from typing import Any, Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from mmcore.engine import stopping
from mmcore.engine.launch import report_to_agent
from mmcore.errors import MMCoreError

PIPE_WIDTH = 1000  # columns when output is not a terminal: a table row or a hint stays one line
PIPE_RULE_WIDTH = 100  # a rule (a section header) there: PIPE_WIDTH dashes made `... | head` unreadable


class _PipeConsole(Console):
    """A console that does not wrap text but draws its rules ``PIPE_RULE_WIDTH`` wide: a rule
    fills the console's width, which is only a bound on text here, not a screen's."""

    def rule(self, title: Any = "", *, characters: str = "─", style: Any = "rule.line", align: Any = "center") -> None:
        self.print(Rule(title, characters=characters, style=style, align=align), width=PIPE_RULE_WIDTH)


def make_console(stderr: bool = False) -> Console:
    """A console that wraps at the terminal's width, or not at all when the output is a file or
    a pipe (rich would otherwise assume 80 columns and break tables and paths into pieces a
    log reader or ``grep`` cannot follow), where rules stay ``PIPE_RULE_WIDTH`` wide.
    ``COLUMNS`` still wins when set."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not (hasattr(stream, "isatty") and stream.isatty()) and "COLUMNS" not in os.environ
    return _PipeConsole(stderr=stderr, width=PIPE_WIDTH) if piped else Console(stderr=stderr)


err_console = make_console(stderr=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's or ``kill``'s stop) like Ctrl-C while a command runs, so it
    ends with the same clean message, exit code 130 and resumable state.

    Once the work is complete (``mmcore.engine.stopping``) SIGTERM is ignored, and in the process
    ``mmcore.cli.main`` started it stays ignored after the command returns (the handler is not
    put back), so a finished run exits 0. A command called in-process (a test's ``CliRunner``, a
    script) gets its caller's handler back: the caller ignored SIGTERM for the rest of its life.
    """
    stopping.reset()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        if not stopping.complete():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if not (stopping.complete() and _ENDS_PROCESS[0]):
            signal.signal(signal.SIGTERM, previous)


_ENDS_PROCESS = [False]  # True in ``mmcore.cli.main``'s process, which exits once its command returns


def command_ends_process() -> None:
    """Called by the ``mmcore`` entry point: a SIGTERM after a command's work is complete stays
    ignored until the process exits (``sigterm_as_interrupt``)."""
    _ENDS_PROCESS[0] = True


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
            lines = str(exc).splitlines() or [type(exc).__name__]
            if not report_to_agent(lines):  # a rank of `--nproc`: the agent prints the first failure once
                for line in lines:
                    err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:  # outside training (the trainer says what can be resumed itself)
            if stopping.complete():  # Ctrl-C after the last file was written: the work is done
                raise typer.Exit(0)
            if not report_to_agent(["interrupted"]):
                err_console.print("[red]interrupted[/]")
            raise typer.Exit(130)
        except (MemoryError, RuntimeError) as exc:  # out of memory: one line with the phase and sizes
            from mmcore.engine.sizes import is_out_of_memory, out_of_memory_message

            if os.environ.get("MMCORE_DEBUG") or not is_out_of_memory(exc):
                raise
            line = out_of_memory_message()
            del exc  # let the traceback's frames (and their tensors) go before printing
            if not report_to_agent([line]):
                err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1)

    return wrapper


def component_view(registry: Any, name: str) -> str:
    """``mmcore components NAME``: a component's whole docstring and, per option, its type with
    range, default and help (the ``Args:`` entry of its docstring, see ``mmcore.registry``)."""
    from mmcore.recipe import type_name
    from mmcore.registry import REQUIRED, did_you_mean

    found = registry.lookup(name)
    if not found:
        names = sorted({c.name for c in registry.all()})
        plugin = name.split(".", 1)[0]
        if plugin in registry.failed:
            raise MMCoreError(f"unknown component '{name}': plugin '{plugin}' was skipped: {registry.failed[plugin]}")
        raise MMCoreError(f"unknown component '{name}';{did_you_mean(name, names)} see `mmcore components` for the list")
    blocks = []
    for comp in found:
        lines = [f"{comp.name}  ({comp.kind}, plugin {comp.origin})", "", comp.description or comp.full_doc or "(no docstring)", ""]
        options = comp.options()
        lines.append("options:" if options else "options: none")
        for opt in options:
            default = "required" if opt.default is REQUIRED else f"default {opt.default!r}"
            lines.append(f"  {opt.name}: {type_name(opt.annotation)}, {default}")
            if opt.help:
                lines.append(f"      {opt.help}")
        lines += _declared_lines(comp)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _declared_lines(comp: Any) -> list[str]:
    """``declares:`` and the optional factory attributes it carries (``FACTORY_ATTRIBUTES``)."""
    from mmcore.components import declared_attributes

    rows = declared_attributes(comp.kind, comp.factory)
    if not rows:
        return []
    lines = ["declares:"]
    for row, value in rows:
        if callable(value):
            shown = "a function"
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            shown = f"{len(value)} option sets"
        elif isinstance(value, (set, frozenset, tuple, list)):
            shown = ", ".join(sorted(map(str, value)))
        else:
            shown = repr(value)
        lines.append(f"  {row.name}: {shown}")
        lines.append(f"      {row.meaning}")
    return lines
