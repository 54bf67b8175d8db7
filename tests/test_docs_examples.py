"""The Python snippets of CONTRIBUTING.md and docs/multigpu-and-logging.md, run as a newcomer would.

A doc example that stops working is found by a reader first; these keep the two snippets a
plugin author copies (a registered component, a logger plugin) honest, in a few seconds.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import mmcore
from mmcore.builtins.imputers import ZeroImputer
from mmcore.engine.trainer import run
from mmcore.plugins import get_registry, load_plugins
from mmcore.recipe import load_recipe
from mmcore.testing import run_contract, tiny_recipe

ROOT = Path(__file__).resolve().parent.parent


FancyImputer = ZeroImputer  # CONTRIBUTING.md's step 1 is any factory; the snippet under test is steps 2 and 4


@mmcore.hookimpl
def register_imputers(register: mmcore.Register) -> None:
    register("myplugin.fancy", FancyImputer)


def test_contributing_registration_snippet_passes_the_contract_and_tiny_recipe_wants_it_installed(tmp_path) -> None:
    module = types.ModuleType("myplugin_plugin")
    module.register_imputers = register_imputers
    registry = load_plugins(entry_points=[], extra={"myplugin": module}).registry
    run_contract(registry, "imputer", "myplugin.fancy")  # step 4 of "Adding a component", as written
    # tiny_recipe validates against the installed plugins (get_registry()), as CONTRIBUTING.md says
    with pytest.raises(mmcore.RecipeError, match=r"unknown imputer 'myplugin\.fancy'"):
        tiny_recipe(tmp_path, "train.epochs=2", imputer={"type": "myplugin.fancy"})


class Printer(mmcore.Logger):
    """docs/multigpu-and-logging.md's logger plugin, verbatim but for the docstring."""

    def log_epoch(self, epoch, step, scalars):
        print(epoch, scalars["select.val.macro_f1"])


@pytest.fixture
def printer_registered() -> Iterator[None]:
    registry = get_registry()
    registry.register("logger", "myplugin.printer", Printer, origin="docs-example")
    try:
        yield
    finally:
        registry.remove_origin("docs-example")


def test_logger_snippet_prints_the_selection_score_after_every_validation(tmp_path, capsys,
                                                                           printer_registered) -> None:
    recipe = tiny_recipe(tmp_path, "train.epochs=2", "train.select=val.macro_f1",
                         logging=[{"type": "mmcore.jsonl"}, {"type": "myplugin.printer"}])
    result = run(recipe, show_progress=False)
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()]
    epochs = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()
              if "select.val.macro_f1" in line]
    assert [int(p[0]) for p in printed] == [1, 2] == [e["epoch"] for e in epochs]
    assert [float(p[1]) for p in printed] == pytest.approx([e["select.val.macro_f1"] for e in epochs], abs=1e-12)


def test_write_features_takes_the_plain_folder_name_docs_datasets_shows(tmp_path, monkeypatch) -> None:
    features = pytest.importorskip("mmcore_corpora.features")
    monkeypatch.chdir(tmp_path)
    dataset = get_registry().get("dataset", "mmcore.synthetic").build({}, {"samples": 60, "dim": 4})
    written = features.write_features(dataset, "feats")  # a str, as docs/datasets.md writes out_dir
    assert sorted(p.name for p in written) == ["test.safetensors", "train.safetensors", "val.safetensors"]
    back = get_registry().get("dataset", "corpora.features").build({}, {"root": "feats"})
    assert [m.name for m in back.modalities] == [m.name for m in dataset.modalities]
    assert torch.equal(back.split("train").target, dataset.split("train").target)


def test_readme_recipe_block_is_the_quickstart_recipe(tmp_path) -> None:
    """README's "A recipe" is read as the quickstart's own: resolved, the two must not differ."""
    pytest.importorskip("mmcore_corpora")  # corpora.handwritten; redcore comes with the same install line
    block = re.search(r"## A recipe\n\n```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md lost its '## A recipe' yaml block"
    (tmp_path / "readme.yaml").write_text(block.group(1))
    shown = load_recipe(tmp_path / "readme.yaml", [], get_registry())
    shipped = load_recipe(ROOT / "recipes" / "quickstart.yaml", [], get_registry())
    assert shown == shipped
