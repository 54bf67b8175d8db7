"""Shared fixtures: the core's tiny resolved recipe (``mmcore.testing.tiny_recipe``)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from mmcore.testing import tiny_recipe


@pytest.fixture
def make_recipe(tmp_path) -> Callable[..., dict[str, Any]]:
    """``make_recipe("train.epochs=2", ...)``: the tiny recipe with overrides, resolved, writing under tmp_path."""

    def make(*overrides: str) -> dict[str, Any]:
        return tiny_recipe(tmp_path / "runs", *overrides)

    return make
