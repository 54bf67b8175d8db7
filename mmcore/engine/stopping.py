"""Whether a stop signal still has anything to stop: a finished command exits 0.

``mmcore run`` turns SIGTERM into an interrupt (``clitools.sigterm_as_interrupt``) so that a
scheduler's stop leaves a resumable run and exit code 130. Once the final evaluation's numbers
are computed there is nothing worth stopping (writing them takes moments), and a signal that
lands then, or in the moments before the process ends, would otherwise turn a complete run into
exit 130 (or -15, after the handler is restored) at random. The trainer calls ``mark_complete``
once only files are left to write; the handler then ignores SIGTERM, so they are written and the
command exits 0, and an interrupt that reaches the command after the run returned is success.
"""

from __future__ import annotations

import threading

_complete = threading.Event()


def mark_complete() -> None:
    """Only the results are left to write: a SIGTERM from now on is ignored (they are written)."""
    _complete.set()


def complete() -> bool:
    return _complete.is_set()


def reset() -> None:
    """A new command starts (in one process, tests run several): nothing is complete yet."""
    _complete.clear()
