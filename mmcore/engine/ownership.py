"""Who owns a run directory: ``own_run_dir`` on top of ``runlock.hold_run_lock``, safe to nest.

Every command that writes into a run directory (``run``, ``resume``, a sweep's worker, ``study``,
``eval``) holds the directory's lock for as long as it writes. The lock is an ``flock`` on a file
descriptor, so taking it twice in one process (the sweep worker, then the trainer it calls)
would refuse the process itself; this wrapper counts nested holds per directory and takes the
real lock once, at the outermost level. Only the main rank of a distributed run takes it: the
other ranks write nothing into the directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from mmcore.engine.runlock import RunLockedError, hold_run_lock

__all__ = ["RunLockedError", "own_run_dir", "owned"]

_held: dict[str, int] = {}


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def owned(run_dir: Path) -> bool:
    """True while this process holds ``run_dir``'s lock."""
    return _key(run_dir) in _held


@contextlib.contextmanager
def own_run_dir(run_dir: Path, action: str, *, main_rank: bool = True) -> Iterator[None]:
    """Hold ``run_dir`` for the block, or fail at once naming the owner's pid (``RunLockedError``).

    ``main_rank=False`` (a non-zero rank) holds nothing. A nested hold of a directory this
    process already owns is a no-op.
    """
    key = _key(run_dir)
    if not main_rank:
        yield
        return
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    with hold_run_lock(Path(run_dir), action=action):
        _held[key] = 1
        try:
            yield
        finally:
            _held.pop(key, None)
