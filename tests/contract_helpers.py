"""What the contract-catching tests assert of a check: it fails with one line, warns with one
line (a rule new in this release), or passes without a warning."""

from __future__ import annotations

import warnings
from typing import Any

import pytest


def fails(check: Any, factory: Any, fragment: str) -> str:
    """Run ``check`` on ``factory`` expecting an AssertionError whose one-line message has ``fragment``."""
    with pytest.raises(AssertionError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a warned rule it also breaks is beside the point
        check(factory)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message, message
    return message


def warns(check: Any, factory: Any, fragment: str) -> str:
    """Run ``check`` on ``factory`` expecting it to pass with a FutureWarning that has ``fragment``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(factory)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    hits = [m for m in messages if fragment in m]
    assert hits, messages
    assert "\n" not in hits[0] and "a later version of the contract suite will fail on it" in hits[0], hits[0]
    return hits[0]


def passes_quietly(check: Any, factory: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        check(factory)
