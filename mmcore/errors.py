"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from typing import Callable


class MMCoreError(Exception):
    """Base class: the message is complete and meant for the user. Exit code 1."""

    exit_code = 1


class RecipeError(MMCoreError):
    """One or more problems in a recipe, each already formatted with file and dotted path."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class RegistryError(MMCoreError):
    """A component name clash or an invalid registration."""


class DataError(MMCoreError):
    """Dataset files missing, malformed or inconsistent."""


class Interrupted(MMCoreError, KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run, sweep or study; the message says how to continue.

    Also a ``KeyboardInterrupt``, so a library loop's ``except KeyboardInterrupt`` stops on it as
    on a Ctrl-C anywhere else; still an ``MMCoreError`` (exit code 130, one line in the CLI), so
    ``except MMCoreError`` handlers behave as before (a loop that must stop catches it first)."""

    exit_code = 130


def checker(where: str) -> "Callable[[bool, str], None]":
    """``check(ok, message)`` raising ``MMCoreError("<where>: <message>")`` when ``ok`` is false: the
    one-line option checks of a component, named once (``_check = checker(NAME)``)."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise MMCoreError(f"{where}: {message}")

    return check
