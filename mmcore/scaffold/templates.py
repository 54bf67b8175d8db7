"""The files ``mmcore new plugin`` writes; ``@@name@@`` and friends are filled in by ``new_plugin``."""

from __future__ import annotations

# One small, correct component per kind: it passes the contract suite unchanged.
COMPONENTS: dict[str, str] = {
    "balancer": '''
class Flat(mmcore.Balancer):
    """Weights every modality's term of the target group by one constant.

    Args:
        target: the loss group whose per-modality terms this balancer weights.
        weight: the weight of every modality's term.
    """

    # The unimodal heads' terms exist beside every imputer; a target that is missing is then an
    # error at validation, not a balancer that silently weighs nothing.
    target_required = True

    def __init__(self, modalities: list[str], target: str = "unimodal", weight: mmcore.NonNegative = 1.0) -> None:
        super().__init__(modalities, target=target)
        self.weight = float(weight)  # the range is in the signature: checked before this runs

    def weights(self) -> torch.Tensor:
        return torch.full((len(self.modalities),), self.weight, device=self.device)

''',
    "imputer": '''
class MeanOfPresent(nn.Module):
    """Fills each absent latent with a learned map of the mean of the present ones.

    Args:
        scale: factor on the mean before the learned map.
    """

    def __init__(self, specs: list[mmcore.ModalitySpec], dim: int, scale: mmcore.Positive = 1.0) -> None:
        super().__init__()
        self.scale = float(scale)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> mmcore.ImputerOutput:
        keep = present.unsqueeze(-1)
        h = torch.where(keep, h, torch.zeros((), dtype=h.dtype, device=h.device))  # never read absent rows
        mean = h.sum(1) / present.sum(1, keepdim=True).clamp_min(1).to(h.dtype)
        fill = self.proj(self.scale * mean).unsqueeze(1).expand_as(h)
        return mmcore.ImputerOutput(z=torch.where(keep, h, fill), losses={})

''',
    "encoder": '''
class MeanMLP(nn.Module):
    """The mean over a sequence's valid frames (or the vector itself), then an MLP to ``dim``.

    Args:
        layers: hidden widths of the MLP.
        dropout: dropout probability after each hidden layer.
    """

    def __init__(
        self,
        spec: mmcore.ModalitySpec,
        dim: int,
        layers: list[mmcore.PositiveInt] = [32],  # noqa: B006 - never mutated
        dropout: mmcore.Fraction = 0.0,
    ) -> None:
        super().__init__()
        self.net = mlp(spec.dim, list(layers), out_dim=dim, dropout=dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(masked_mean(x, lengths) if x.dim() == 3 else x)

''',
    "fusion": '''
class MaskedMean(nn.Module):
    """The mean of the present modalities' latents, then a linear head.

    Args:
        dropout: dropout probability before the head.
    """

    def __init__(self, specs: list[mmcore.ModalitySpec], dim: int, out_dim: int, dropout: mmcore.Fraction = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        w = present.unsqueeze(-1).to(z.dtype)
        return self.head(self.drop((z * w).sum(1) / w.sum(1).clamp_min(1)))

''',
}

HOOKS = {"balancer": "register_balancers", "imputer": "register_imputers", "encoder": "register_encoders", "fusion": "register_fusions"}
CLASSES = {"balancer": "Flat", "imputer": "MeanOfPresent", "encoder": "MeanMLP", "fusion": "MaskedMean"}
# How the registry, the tests' tiny recipe and the example recipe name each component.
SHORTS = {"balancer": "flat", "imputer": "mean_of_present", "encoder": "mean_mlp", "fusion": "masked_mean"}
# The tiny-recipe node that puts the component in (``mmcore_recipe(**node)``), "@@full@@" its name.
NODES: dict[str, str] = {
    "balancer": '{"balancer": {"type": "@@full@@"}}',
    "imputer": '{"imputer": {"type": "@@full@@"}}',
    "encoder": '{"encoders": {"default": {"type": "@@full@@"}}}',
    "fusion": '{"fusion": {"type": "@@full@@"}}',
}

HOOK = '''

@mmcore.hookimpl
def @@hook@@(register: mmcore.Register) -> None:
    from mmcore_@@name@@.component import @@class@@

    register("@@full@@", @@class@@)
'''

FILES: dict[str, str] = {
    "pyproject.toml": '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "mmcore-@@name@@"
version = "0.0.1"
description = "An mmcore plugin"
requires-python = ">=3.10"
dependencies = ["mmcore"]

# The entry-point name is the plugin's name and the namespace of its components.
[project.entry-points.mmcore]
@@name@@ = "mmcore_@@name@@.plugin"

[tool.setuptools]
packages = ["mmcore_@@name@@"]
''',
    "mmcore_{name}/__init__.py": '''"""The @@name@@ plugin for mmcore."""
''',
    "mmcore_{name}/component.py": '''"""The plugin's components: @@kinds@@ (written by `mmcore new plugin`; make them yours)."""

from __future__ import annotations

import torch
from torch import nn

import mmcore
from mmcore.nn import masked_mean, mlp  # noqa: F401 - shared layers the templates of other kinds use

@@component@@''',
    "mmcore_{name}/plugin.py": '''"""The hooks through which mmcore finds this plugin (entry point ``@@name@@``): one per kind."""

from __future__ import annotations

import mmcore
@@hooks@@''',
    "tests/test_{name}.py": '''"""The contract suite on every component of this plugin, and a short training run with each."""

from __future__ import annotations

import pytest

from mmcore.testing import parametrize_with_contracts

# Each component in the kit's tiny recipe, the rest of the model left as the kit has it.
NODES = {
@@nodes@@}


@parametrize_with_contracts("@@name@@")
def test_contract(case):
    case.run()


@pytest.mark.parametrize("name", list(NODES))
def test_trains_and_resumes_in_the_tiny_recipe(mmcore_recipe, mmcore_run, name):
    recipe = mmcore_recipe("train.epochs=2", **NODES[name])
    straight = mmcore_run(recipe)
    assert straight.results is not None and "test" in straight.results
    half = mmcore_run(recipe, max_steps=3)
    assert half.stopped_early and half.step == 3
    resumed = mmcore_run(recipe, resume=half.run_dir)
    assert resumed.step == straight.step
''',
    "recipes/{name}.yaml": '''# mmcore run recipes/@@name@@.yaml
name: @@name@@-synthetic
dataset: {type: mmcore.synthetic, samples: 600}
missing:
  train: {rates: {m0: 0.2, m1: 0.4, m2: 0.6}}
@@yaml@@train: {epochs: 5, batch_size: 64}
''',
    "README.md": '''# mmcore-@@name@@

An mmcore plugin with @@listing@@.

```bash
pip install -e .
python -m pytest                       # the contract suite and a short training run
mmcore plugins                         # @@name@@ and its components
mmcore components @@first@@      # a component's options, ranges and help
mmcore run recipes/@@name@@.yaml
```
''',
}
