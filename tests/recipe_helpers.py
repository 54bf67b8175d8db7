"""Helpers of the recipe tests: write a recipe file, collect the problems a RecipeError lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmcore.errors import RecipeError


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def raises(fn: Any, *args: Any, **kwargs: Any) -> list[str]:
    """The problems of the RecipeError that ``fn`` raises."""
    with pytest.raises(RecipeError) as info:
        fn(*args, **kwargs)
    return info.value.problems
