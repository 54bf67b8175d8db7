"""Paths checked before they are used: readers never block, writers fail before the work.

Opening a FIFO for reading waits for a writer that may never come, and a character device
can stream forever; so every reader asks ``stat`` (which never blocks) for the kind of the
path first and accepts only regular files and folders (``require_file``, ``require_dir``,
``require_input``). Every command that writes checks each output path up front
(``check_output_file``, ``check_output_dir``), so that an unwritable ``--out`` is one line before
minutes of work, not a traceback after them. The write check creates and removes a probe
file in the nearest existing folder: ``os.access`` says yes to root on ``/proc`` and on
read-only mounts in containers, an actual create never lies.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from mmcore.errors import MMCoreError


class PathError(MMCoreError):
    """A path of the wrong kind (FIFO, device, socket, folder for a file) or not writable."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def _stat(path: Path, what: str) -> os.stat_result | None:
    try:
        return os.stat(path)  # follows links: a link to a FIFO is a FIFO
    except (FileNotFoundError, NotADirectoryError):  # a file in the way: nothing can exist below it
        return None
    except OSError as exc:
        raise PathError(f"{what}: cannot inspect {path}: {exc.strerror or exc}") from exc


def require_input(path: Path, what: str) -> Path:
    """``path`` if it is a regular file or a folder; a one-line error otherwise (never opens it)."""
    path = Path(path)
    st = _stat(path, what)
    if st is None:
        raise PathError(f"{what}: not found: {path}")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise PathError(f"{what}: {path} is {_kind(st.st_mode)}; expected a regular file or a folder")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file (or a link to one); a one-line error otherwise."""
    path = Path(path)
    st = _stat(path, what)
    if st is None:
        raise PathError(f"{what}: not found: {path}")
    if not stat.S_ISREG(st.st_mode):
        raise PathError(f"{what}: {path} is {_kind(st.st_mode)}; expected a regular file")
    return path


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder; a one-line error otherwise."""
    path = Path(path)
    st = _stat(path, what)
    if st is None:
        raise PathError(f"{what}: not found: {path}")
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{what}: {path} is {_kind(st.st_mode)}; expected a folder")
    return path


def is_readable_kind(path: Path) -> bool:
    """True for a regular file or folder: what a reader may open without blocking."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


_WHY = {  # errno -> the plain reason a test file could not be created
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.ENOENT: "this file system does not allow new files",  # /proc, /sys: the folder exists
}


def _probe_writable(folder: Path, target: str, what: str) -> None:
    """Create and remove a probe file in ``folder``; a one-line error naming ``target`` (what the
    command would write), the folder tested and the reason in words if that fails."""
    probe = folder / f".mmcore-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        reason = _WHY.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()
        raise PathError(f"{what}: cannot write {target}: a test file could not be created in {folder} ({reason})") from exc
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def check_output_dir(path: Path, what: str, target: str | None = None) -> Path:
    """A folder that a command will create (parents included) or write into, checked up front.
    ``target`` names what will be written there in the message (default: into the folder)."""
    path = Path(path)
    target = target or f"into {path}"
    st = _stat(path, what)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{what}: {path} is {_kind(st.st_mode)}; expected a folder (or a path to create)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise PathError(f"{what}: cannot create {path}: {base} is {_kind(os.stat(base).st_mode)}, not a folder")
    _probe_writable(base, target, what)
    return path


def check_output_file(path: Path, what: str) -> Path:
    """A file that a command will write (its folder may still have to be created), checked up front."""
    path = Path(path)
    st = _stat(path, what)
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise PathError(f"{what}: {path} is {_kind(st.st_mode)}; expected a file to write")
    if st is not None and not os.access(path, os.W_OK):
        raise PathError(f"{what}: cannot write {path}: permission denied")
    check_output_dir(path.parent if str(path.parent) else Path("."), what, str(path))
    return path
