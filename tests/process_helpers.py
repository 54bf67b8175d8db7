"""Helpers of the process-table tests: which processes still run for a command (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def processes_mentioning(text: str) -> list[str]:
    """Pids whose command line contains ``text`` (Linux /proc; elsewhere nothing is found)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:  # the process ended while we looked
            continue
    return found
