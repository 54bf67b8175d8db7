"""What ``run``, ``resume`` and ``mmcore eval`` share: data on the device, masks, conditions, model.

``build_session`` is the one code path that turns a resolved recipe into these objects; nothing
else builds a dataset or a model again, so a saved run is evaluated with exactly what it was
trained with.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcore.conditions import Condition
from mmcore.engine.build import build_dataset, build_model, eval_conditions, train_missing_spec
from mmcore.engine.evaluate import condition_mask_table
from mmcore.frames import drop_frames
from mmcore.engine.model import MultimodalModel
from mmcore.engine.runtime import Runtime
from mmcore.missing import MissingSpec
from mmcore.plugins import Plugins, get_plugins
from mmcore.recipe.crosschecks import describe_dataset, parse_select
from mmcore.recipe.plan import RunPlan, plan_of
from mmcore.registry import Registry
from mmcore.types import EVAL_SPLITS, SPLITS, Dataset, ModalitySpec, SplitData, TaskSpec


@dataclass
class Session:
    """Everything built from a recipe before training or evaluation starts."""

    recipe: dict[str, Any]  # the resolved recipe
    runtime: Runtime
    plugins: Plugins
    dataset: Dataset
    specs: list[ModalitySpec]  # modality order of every [B, M] tensor
    task: TaskSpec
    splits: dict[str, SplitData]  # train/val/test, on runtime.device
    train_spec: MissingSpec  # the training missingness protocol
    conditions: list[Condition]  # evaluation conditions, in recipe order
    eval_masks: dict[str, dict[str, torch.Tensor]]  # split -> condition -> [N, M] bool, on the device
    select: tuple[str, str]  # (condition or AVERAGE, metric) that picks the best checkpoint
    model: MultimodalModel  # on runtime.device, freshly initialised from the recipe's seed
    # the splits before ``missing.frames`` dropped any frame (only those it changed): what the
    # manifest's checksums describe, and what a frame-rate curve starts from
    clean: dict[str, SplitData] = field(default_factory=dict)
    # the run this session's model trained in (``mmcore.engine.guards``): a session trains once
    trained_in: Path | None = None

    @property
    def plan(self) -> RunPlan:
        """The recipe's settings, typed (``mmcore.recipe.plan``): what a ``Trainer`` reads, once,
        when it is made (a test may swap ``recipe`` between a run and its resume)."""
        return plan_of(self.recipe)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def clean_split(self, name: str) -> SplitData:
        return self.clean.get(name, self.splits[name])


def _checked_splits(plan: RunPlan, dataset: Dataset, registry: Registry) -> dict[str, SplitData]:
    """Every split, checked once against the dataset's specs (dtype, shapes, finite values), and
    the specs against the factory's ``describe`` (what ``mmcore validate`` checked the recipe by).

    A plugin's ``split`` that raises (``sys.exit`` included) is one line naming the dataset and
    its plugin; its own ``MMCoreError``s (a missing file) and Ctrl-C pass as they are."""
    from mmcore.datacheck import check_splits, described_mismatch

    component = registry.get("dataset", plan.dataset["type"])
    splits: dict[str, SplitData] = {}
    for name in SPLITS:
        with component.blame(f"split('{name}') failed"):
            splits[name] = dataset.split(name)
    specs, task = list(dataset.modalities), dataset.task
    checked = check_splits(plan.dataset["type"], splits, specs, task, nonfinite=plan.nonfinite)
    described = describe_dataset(dict(plan.dataset), registry)
    mismatch = described_mismatch(plan.dataset["type"], described, specs, task) if described is not None else None
    if mismatch is not None:
        warnings.warn(f"{mismatch}; the run uses the loaded dataset's (mmcore validate checked the recipe by describe())", stacklevel=2)
    return checked


def build_session(recipe: dict[str, Any], runtime: Runtime, plugins: Plugins | None = None) -> Session:
    """Dataset, splits on the device, masks, conditions and a freshly initialised model, from the
    recipe's plan (read once here); what names modalities is checked against the loaded data."""
    plugins = plugins or get_plugins()
    registry = plugins.registry
    plan = plan_of(recipe)
    seed = plan.seed
    torch.manual_seed(seed)
    dataset = build_dataset(plan.dataset, registry)
    specs, task = list(dataset.modalities), dataset.task
    splits = {name: split.to(runtime.device) for name, split in _checked_splits(plan, dataset, registry).items()}
    names = [s.name for s in specs]  # after the checks: a spec that is not a ModalitySpec is named there
    frames = plan.missing.frames
    dropped = {name: drop_frames(split, specs, frames, seed, name == "train") for name, split in splits.items()}
    clean = {name: split for name, split in splits.items() if dropped[name] is not split}
    splits = dropped
    train_spec = train_missing_spec(plan, names)
    conditions = eval_conditions(plan, names)
    eval_masks = {s: condition_mask_table(conditions, splits[s], len(names)) for s in EVAL_SPLITS}
    select = parse_select(plan.train.select, [c.name for c in conditions], task)
    torch.manual_seed(seed)  # model initialisation does not depend on how the data was made
    model = build_model(plan, specs, task, registry).to(runtime.device)
    return Session(recipe, runtime, plugins, dataset, specs, task, splits, train_spec, conditions, eval_masks, select, model, clean)
