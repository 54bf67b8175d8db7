"""Helpers of the recipe tests: write a recipe file, collect the problems a RecipeError lists, and
the tiny recipe text that sweep, study and old-layout tests fill with their output folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

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


SMALL_RECIPE = """\
name: tiny
device: cpu
output: {output}
dataset: {{type: mmcore.synthetic, modalities: 2, classes: 3, samples: 200, dim: 8}}
missing: {{train: {{rates: {{m0: 0.3, m1: 0.3}}}}, eval: {{conditions: all}}}}
model:
  dim: 8
  encoders: {{default: {{type: mmcore.mlp, layers: [8]}}}}
  fusion: {{type: mmcore.concat, layers: [8]}}
train: {{epochs: 1, batch_size: 64, log_every: 1}}
"""  # .format(output=...): two modalities, 200 samples, one epoch, a line every step


def small_recipe_file(tmp_path: Path, text: str = SMALL_RECIPE) -> Path:
    """``text`` (``SMALL_RECIPE`` by default) written as ``tmp_path/tiny.yaml``, runs under ``tmp_path/runs``."""
    path = tmp_path / "tiny.yaml"
    path.write_text(text.format(output=tmp_path / "runs"))
    return path


def quiet_console() -> Console:
    """A console whose output goes nowhere (a sweep's or study's progress lines)."""
    return Console(file=io.StringIO(), width=120)
