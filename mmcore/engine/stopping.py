"""Whether a stop signal still has anything to stop: a finished command exits 0.

``mmcore run`` turns SIGTERM into an interrupt (``clitools.sigterm_as_interrupt``) so that a
scheduler's stop leaves a resumable run and exit code 130. Once the run's last file is written
there is nothing left to stop, and a signal that lands in the moments before the process ends
would otherwise turn a complete run into exit 130 (or -15, after the handler is restored) at
random. The trainer calls ``mark_complete`` after its last write; the command's handler then
ignores SIGTERM, and an interrupt that still arrives is read as success.
"""

from __future__ import annotations

import threading

_complete = threading.Event()


def mark_complete() -> None:
    """The command's work is written in full: a stop from now on changes nothing."""
    _complete.set()


def complete() -> bool:
    return _complete.is_set()


def reset() -> None:
    """A new command starts (in one process, tests run several): nothing is complete yet."""
    _complete.clear()
