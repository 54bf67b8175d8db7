"""A component that raises in its forward pass is named in one line, with its plugin."""

from __future__ import annotations

from typing import Any

import pytest
from torch import Tensor, nn

from mmcore import hookimpl
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.plugins import load_plugins
from mmcore.recipe import validate_recipe
from mmcore.testing import tiny_recipe


class Exploding(nn.Module):
    """An encoder with a bug: a shape error in its forward pass."""

    def __init__(self, spec: Any, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(spec.dim + 1, dim)  # one input too many

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.proj(x)


class BuggyPlugin:
    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register("buggy.exploding", Exploding)


def test_a_raising_encoder_is_named_with_its_plugin_and_modality(tmp_path):
    plugins = load_plugins(extra={"buggy": BuggyPlugin()})
    tree = tiny_recipe(tmp_path)
    tree["model"]["encoders"] = {"default": tree["model"]["encoders"]["default"], "m1": {"type": "buggy.exploding"}}
    recipe = validate_recipe(tree, plugins.registry, "test")
    with pytest.raises(MMCoreError) as info:
        run(recipe, plugins=plugins, show_progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("training step 0: encoder 'buggy.exploding' (plugin buggy) for modality 'm1' raised RuntimeError")
