"""What ``run``, ``resume`` and ``mmcore eval`` share: data on the device, masks, conditions, model.

``build_session`` is the one code path that turns a resolved recipe into these objects; nothing
else builds a dataset or a model again, so a saved run is evaluated with exactly what it was
trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mmcore.conditions import AVERAGE, Condition
from mmcore.engine.build import build_dataset, build_model, eval_conditions, train_missing_spec
from mmcore.engine.evaluate import condition_mask_table
from mmcore.frames import drop_frames, frame_spec
from mmcore.engine.model import MultimodalModel
from mmcore.engine.runtime import Runtime
from mmcore.errors import MMCoreError
from mmcore.metrics import TASK_METRICS
from mmcore.missing import MissingSpec
from mmcore.plugins import Plugins, get_plugins
from mmcore.text import did_you_mean
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

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    def clean_split(self, name: str) -> SplitData:
        return self.clean.get(name, self.splits[name])


def parse_select(select: str, conditions: list[str], task: TaskSpec) -> tuple[str, str]:
    """``val.macro_f1`` → (average, macro_f1); ``val.<condition>.<metric>`` → (condition, metric).

    Checked before training, so that a typo never surfaces after the first epoch.
    """
    parts = select.split(".")
    if parts[0] != "val" or len(parts) not in (2, 3):
        raise MMCoreError(f"train.select: '{select}' must be 'val.<metric>' or 'val.<condition>.<metric>'")
    if len(parts) == 3 and parts[1] not in conditions:
        raise MMCoreError(f"train.select: unknown condition '{parts[1]}'; available: {', '.join(conditions)}")
    metric = parts[-1]
    allowed = TASK_METRICS[task.kind]
    if metric not in allowed:
        raise MMCoreError(
            f"train.select: '{metric}' is not a {task.kind} metric;{did_you_mean(metric, list(allowed))}"
            f" available: {', '.join(allowed)}"
        )
    return (parts[1], metric) if len(parts) == 3 else (AVERAGE, metric)


def _checked_splits(recipe: dict[str, Any], dataset: Dataset) -> dict[str, SplitData]:
    """Every split, checked once against the dataset's specs (dtype, shapes, finite values)."""
    splits = {name: dataset.split(name) for name in SPLITS}
    try:
        from mmcore.datacheck import check_splits
    except ImportError:  # pragma: no cover - the data checks ship with the core
        return splits
    policy = (recipe.get("data") or {}).get("nonfinite", "error")
    return check_splits(recipe["dataset"]["type"], splits, list(dataset.modalities), dataset.task, nonfinite=policy)


def build_session(recipe: dict[str, Any], runtime: Runtime, plugins: Plugins | None = None) -> Session:
    """Dataset, splits on the device, masks, conditions and a freshly initialised model."""
    plugins = plugins or get_plugins()
    registry = plugins.registry
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    dataset = build_dataset(recipe, registry)
    specs, task = list(dataset.modalities), dataset.task
    names = [s.name for s in specs]
    splits = {name: split.to(runtime.device) for name, split in _checked_splits(recipe, dataset).items()}
    frames = frame_spec(recipe["missing"].get("frames"))
    dropped = {name: drop_frames(split, specs, frames, seed, name == "train") for name, split in splits.items()}
    clean = {name: split for name, split in splits.items() if dropped[name] is not split}
    splits = dropped
    train_spec = train_missing_spec(recipe, names)
    conditions = eval_conditions(recipe, names)
    eval_masks = {s: condition_mask_table(conditions, splits[s], len(names)) for s in EVAL_SPLITS}
    select = parse_select(recipe["train"]["select"], [c.name for c in conditions], task)
    torch.manual_seed(seed)  # model initialisation does not depend on how the data was made
    model = build_model(recipe, specs, task, registry).to(runtime.device)
    return Session(recipe, runtime, plugins, dataset, specs, task, splits, train_spec, conditions, eval_masks, select, model, clean)
