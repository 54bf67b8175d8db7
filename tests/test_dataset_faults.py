"""A third-party dataset that misbehaves is named in one line before any run directory is made.

Each fake dataset below has one bug a plugin author could ship: ``split`` or a ``modalities``
property that raises (``sys.exit`` included, which used to end ``mmcore run`` with a traceback),
specs that are not ``ModalitySpec``, tensors that are sparse or on the ``meta`` device, an
``unusable`` mask of the wrong shape or one that hides every modality, a ``describe`` that
disagrees with the data. The contract suite (``mmcore.testing.check_dataset``) reports the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from mmcore import ModalitySpec, SplitData, TaskSpec, hookimpl
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.plugins import load_plugins
from mmcore.recipe import apply_overrides, dump_yaml, validate_recipe
from mmcore.testing import check_dataset, tiny_recipe

SIZES = {"train": 40, "val": 20, "test": 20}
SPECS = [ModalitySpec("a", 4), ModalitySpec("b", 4, sequence=True, max_len=5)]


def _split(name: str) -> SplitData:
    n, offset = SIZES[name], 1000 * list(SIZES).index(name)
    g = torch.Generator().manual_seed(offset)
    lengths = torch.randint(1, 6, (n,), generator=g)
    seq = torch.randn(n, 5, 4, generator=g) * (torch.arange(5)[None, :, None] < lengths[:, None, None])
    return SplitData(
        features={"a": torch.randn(n, 4, generator=g), "b": seq},
        lengths={"b": lengths},
        target=torch.randint(0, 3, (n,), generator=g),
        ids=torch.arange(n) + offset,
    )


class Faulty:
    """A dataset with one bug, chosen by the option ``bug``."""

    def __init__(self, bug: str = "none") -> None:
        self.bug = bug
        self.task = TaskSpec("classification", 3)
        self._specs: list[Any] = [("a", 4), ("b", 4)] if bug == "tuples" else list(SPECS)

    @property
    def modalities(self) -> list[Any]:
        if self.bug == "lazy_raise":
            raise RuntimeError("lazy modalities failed")
        return self._specs

    @classmethod
    def describe(cls, bug: str = "none") -> tuple[list[Any], TaskSpec]:
        if bug == "describe_exit":
            sys.exit(4)
        if bug == "describe_classes":
            return ["a", "b"], TaskSpec("classification", 7)
        if bug == "describe_names":
            return ["x", "y"], TaskSpec("classification", 3)
        return list(SPECS), TaskSpec("classification", 3)

    def split(self, name: str) -> SplitData:
        if self.bug == "split_raise":
            raise RuntimeError("load boom")
        if self.bug == "split_exit" and name == "val":
            sys.exit(5)
        s = _split(name)
        n = len(s)
        if self.bug == "meta":
            s.features["a"] = s.features["a"].to("meta")
        if self.bug == "sparse":
            s.features["a"] = s.features["a"].to_sparse()
        if self.bug == "unusable_float":
            s.unusable = torch.ones(n, 7)
        if self.bug == "unusable_all" and name == "test":
            s.unusable = torch.ones(n, 2, dtype=torch.bool)
        if self.bug == "noncontiguous":
            s.features["a"] = torch.randn(4, n).t()
        return s


class Plugin:
    @hookimpl
    def register_datasets(self, register: Any) -> None:
        register("fz.data", Faulty)


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load_plugins(extra={"fz": Plugin()})


def _recipe(out: Path, plugins: Any, bug: str, *overrides: str) -> dict[str, Any]:
    tree = tiny_recipe(out, "train.epochs=1", "train.batch_size=16")
    tree = apply_overrides(tree, [f"dataset={{type: fz.data, bug: {bug}}}", "missing.train={rates: {a: 0.2, b: 0.2}}", *overrides])
    return validate_recipe(tree, plugins.registry, "test")


CASES = [
    ("split_raise", "dataset 'fz.data' (plugin fz) split('train') failed: RuntimeError: load boom"),
    ("split_exit", "dataset 'fz.data' (plugin fz) split('val') failed: SystemExit: 5"),
    ("lazy_raise", "dataset 'fz.data' (plugin fz) failed to build: RuntimeError: lazy modalities failed"),
    ("tuples", "dataset fz.data: modalities must be mmcore.ModalitySpec objects, got tuple ('a', 4)"),
    ("meta", "dataset fz.data, split 'train', modality 'a': features: a tensor on the meta device, which holds no values; "
             "expected one with data (on the CPU)"),
    ("sparse", "dataset fz.data, split 'train', modality 'a': features: a torch.sparse_coo tensor; expected a dense one "
               "(convert with .to_dense())"),
    ("unusable_float", "dataset fz.data, split 'train': unusable must be None or a [40, 2] bool tensor (one column per "
                       "modality), got torch.float32 tensor of shape [40, 7]"),
    ("unusable_all", "dataset fz.data, split 'test': unusable marks every modality of 20 of 20 rows; no prediction can be "
                     "made from them"),
]


@pytest.mark.parametrize(("bug", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_faulty_dataset_stops_the_run_with_one_line_and_no_run_directory(tmp_path, plugins, bug, expected):
    with pytest.raises(MMCoreError) as info:
        run(_recipe(tmp_path, plugins, bug), plugins=plugins, show_progress=False)
    assert str(info.value) == expected
    assert not any(tmp_path.iterdir())  # nothing was made under output


def test_sys_exit_while_loading_is_exit_1_with_one_line_through_the_cli(tmp_path, plugins, monkeypatch):
    """Before: a traceback ending in ``SystemExit: 5``, from a dataset's ``split``."""
    import mmcore.plugins as loader
    from mmcore.cli import app

    monkeypatch.setattr(loader, "_cached", plugins)
    tree = apply_overrides(tiny_recipe(tmp_path / "runs", "train.epochs=1"),
                           ["dataset={type: fz.data, bug: split_exit}", "missing.train={rates: {a: 0.2, b: 0.2}}"])
    (tmp_path / "r.yaml").write_text(dump_yaml(tree))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == \
        ["error: dataset 'fz.data' (plugin fz) split('val') failed: SystemExit: 5"]
    assert not (tmp_path / "runs").exists()


def test_sys_exit_in_describe_skips_its_checks_like_any_exception(tmp_path, plugins):
    """Before: ``SystemExit`` escaped ``validate`` (the documented rule: if describe raises, the
    checks that need it are skipped and the run checks the loaded data)."""
    result = run(_recipe(tmp_path, plugins, "describe_exit"), plugins=plugins, show_progress=False)
    assert (result.run_dir / "eval.json").is_file()


def test_describe_disagreeing_with_the_data_warns_and_the_run_uses_the_data(tmp_path, plugins):
    """Such a dataset ran before, so it still runs; the warning says why validate may have been wrong."""
    message = ("dataset fz.data: describe() says the task is classification with 7 classes, the loaded dataset's is "
               "classification with 3 classes; the run uses the loaded dataset's (mmcore validate checked the recipe by describe())")
    with pytest.warns(UserWarning) as caught:
        result = run(_recipe(tmp_path, plugins, "describe_classes"), plugins=plugins, show_progress=False)
    assert [str(w.message) for w in caught if "describe()" in str(w.message)] == [message]
    assert (result.run_dir / "eval.json").is_file()


def test_describe_with_other_names_is_named_before_the_recipe_error_it_causes(tmp_path, plugins):
    recipe = _recipe(tmp_path, plugins, "describe_names", "missing.train={rates: {x: 0.2, y: 0.2}}")  # valid by describe()
    with pytest.warns(UserWarning, match=r"describe\(\) says modalities x, y, the loaded dataset has a, b"):
        with pytest.raises(MMCoreError, match="missing.train.rates.x: not a modality of this dataset; available: a, b"):
            run(recipe, plugins=plugins, show_progress=False)
    assert not any(tmp_path.iterdir())


def test_non_contiguous_features_are_accepted_as_before(tmp_path, plugins):
    result = run(_recipe(tmp_path, plugins, "noncontiguous"), plugins=plugins, show_progress=False)
    assert (result.run_dir / "eval.json").is_file()


CONTRACT = [
    ("split_raise", "dataset 'fz.data' (plugin fz): split('train') raised RuntimeError: load boom"),
    ("split_exit", "dataset 'fz.data' (plugin fz): split('val') raised SystemExit: 5"),
    ("meta", "split 'train' modality 'a': features: a tensor on the meta device"),
    ("sparse", "split 'train' modality 'a': features: a torch.sparse_coo tensor; expected a dense one"),
    ("unusable_float", "split 'train': unusable must be None or a [40, 2] bool tensor"),
    ("unusable_all", "split 'test': unusable marks every modality of 20 of 20 rows"),
]


@pytest.mark.parametrize(("bug", "expected"), CONTRACT, ids=[c[0] for c in CONTRACT])
def test_the_contract_suite_names_the_same_faults(plugins, bug, expected):
    with pytest.raises(AssertionError) as info:
        check_dataset(plugins.registry.get("dataset", "fz.data"), options={"bug": bug})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("bug", "expected"), [
    ("describe_classes", r"describe\(\) says the task is classification with 7 classes, the loaded dataset's is classification with 3"),
    ("describe_names", r"describe\(\) says modalities x, y, the loaded dataset has a, b"),
])
def test_the_contract_suite_warns_where_a_run_warns(plugins, bug, expected):
    """A run goes on with the loaded data, so a plugin's own tests that passed before still pass."""
    with pytest.warns(FutureWarning, match=expected):
        check_dataset(plugins.registry.get("dataset", "fz.data"), options={"bug": bug})


def test_the_contract_suite_passes_a_sound_dataset(plugins):
    check_dataset(plugins.registry.get("dataset", "fz.data"), options={"bug": "none"})
