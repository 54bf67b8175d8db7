"""The error of a study file that cannot run as written, shared by its section readers."""

from __future__ import annotations

from pathlib import Path

from mmcore.errors import MMCoreError


class StudyError(MMCoreError):
    """A study file that cannot run as written: exit 2, nothing started."""

    exit_code = 2


def fail(path: Path, key: str, expected: str) -> StudyError:
    """``<file>: <key>: <what was expected>``, the one line a study file's problem prints."""
    return StudyError(f"{path}: {key}: {expected}")
