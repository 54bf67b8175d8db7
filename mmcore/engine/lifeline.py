"""Child processes that die with their parent: no orphan keeps training a run.

A sweep's run, the torchrun agent behind ``--nproc`` and that agent's ranks are child processes.
When their parent is killed with SIGKILL it has no chance to stop them, and an orphan that
keeps writing checkpoints beside a restarted parent is two writers on one run directory.

The spawner puts its pid into ``MMCORE_PARENT_PID`` and the child calls ``bind_to_parent`` at
start-up: on Linux ``prctl(PR_SET_PDEATHSIG)`` asks the kernel to signal the child when the
parent dies, and a ``getppid`` check afterwards closes the window in which the parent died
before the call. Elsewhere (macOS has no parent-death signal) a daemon thread polls ``getppid``
once a second and signals the process itself when it has been re-parented: best effort, seconds
late rather than never.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PARENT_ENV = "MMCORE_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child that should die with this process (``os.environ`` plus ``env``)."""
    return {**os.environ, **(env or {}), PARENT_ENV: str(os.getpid())}


def _prctl_deathsig(sig: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, sig: int) -> None:
    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os.kill(os.getpid(), sig)

    threading.Thread(target=poll, name="mmcore-lifeline", daemon=True).start()


def bind_to_parent(sig: int = signal.SIGTERM) -> bool:
    """Receive ``sig`` when the process named by ``MMCORE_PARENT_PID`` ends; False when not asked to.

    SIGTERM lets a single-process run stop cleanly (it becomes an interrupt, resumable); ranks of
    a distributed run take SIGKILL, because a rank blocked in a collective would not run a
    Python handler until the collective's timeout.
    """
    text = os.environ.get(PARENT_ENV, "")
    if not text.isdigit():
        return False
    parent = int(text)
    if sys.platform.startswith("linux") and _prctl_deathsig(sig):
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)
        return True
    if os.getppid() != parent:
        os.kill(os.getpid(), sig)
    _watch_parent(parent, sig)
    return True


def terminate_group(process: "object", sig: int = signal.SIGTERM) -> None:
    """Signal a child started with ``start_new_session=True`` and everything it started."""
    pid = getattr(process, "pid", None)
    if pid is None or getattr(process, "poll")() is not None:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, AttributeError):
        try:
            process.terminate()  # type: ignore[attr-defined]
        except ProcessLookupError:
            pass
