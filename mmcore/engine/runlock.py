"""One owner process per run directory (DESIGN §6): a lock that a dead owner does not keep.

The lock is an ``fcntl.flock`` on ``<run>/.lock``, held for the life of the owning process (or
of the ``with`` block). The kernel drops it when the process dies, however it dies, so a killed
run never blocks its own resume. The owner's pid is written into the file so that a refused
second process can name it. Platforms without ``fcntl`` (Windows) run unlocked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mmcore.errors import MMCoreError

try:  # POSIX only; on other platforms the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunLockedError(MMCoreError):
    """Another live process owns this run directory."""


def _owner_pid(handle) -> str:
    handle.seek(0)
    text = handle.read().strip()
    return text or "unknown"


@contextlib.contextmanager
def hold_run_lock(run_dir: Path, *, action: str = "use") -> Iterator[None]:
    """Own ``run_dir`` for the duration of the block, or fail at once naming the owner's pid.

    ``action`` goes into the message ("resume", "evaluate", …) so the user sees what was refused.
    Re-entrant within one process is not supported: hold it once, at the outermost level.
    """
    if fcntl is None:
        yield
        return
    path = Path(run_dir) / LOCK_NAME
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise MMCoreError(f"{run_dir}: cannot open the run lock {path}: {exc.strerror or exc}") from exc
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"{run_dir}: cannot {action}: the run is in use by process {_owner_pid(handle)} "
                "(wait for it to finish or stop it first)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
