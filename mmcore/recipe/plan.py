"""The resolved recipe read once into typed objects: what the session and the trainer consume.

Validation has already given every value its type (ints are ints, a float key holds a float, a
default is written out), so the engine has nothing to cast or default: ``plan_of`` reads each key
the engine needs exactly once, and the trainer reads ``plan.train.epochs`` instead of
``int(recipe["train"]["epochs"])``. ``train.select`` is parsed here too, by the one function that
checks it (``mmcore.recipe.crosschecks.parse_select``), once the conditions and the task are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class TrainPlan:
    """``train:`` of a resolved recipe (``mmcore.recipe.schema.Train`` documents each key)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    log_every: int | None  # None: about LOG_POINTS lines over the run (mmcore.engine.trainer.log_interval)
    grad_clip: float | None
    select: str  # as written: val.<metric> or val.<condition>.<metric>
    max_steps: int | None
    modality_dropout: float
    length_batches: bool  # batch_order: length
    dropout_masks: str  # auto, torch or fast (mmcore.fastdropout.apply_dropout_masks)
    task_loss: str
    optimizer: Mapping[str, Any]  # the optimiser section, for mmcore.engine.optim
    schedule: Mapping[str, Any]

    @property
    def lr(self) -> float:
        """The base learning rate that the schedule scales."""
        return self.optimizer["lr"]


@dataclass(frozen=True)
class RunPlan:
    """What the training loop reads of a resolved recipe besides the components it builds."""

    seed: int
    compile: bool
    heads: bool  # model.unimodal_heads is set
    unimodal_weight: float  # weight of the unimodal heads' losses; 0.0 without heads
    imputer: str  # the imputer's registered name (for messages about loss groups)
    balancer: str  # the balancer's registered name
    train: TrainPlan


def train_plan(train: Mapping[str, Any]) -> TrainPlan:
    """``train:`` as a ``TrainPlan``."""
    return TrainPlan(
        epochs=train["epochs"],
        batch_size=train["batch_size"],
        eval_batch_size=train["eval_batch_size"],
        log_every=train["log_every"],
        grad_clip=train["grad_clip"],
        select=train["select"],
        max_steps=train["max_steps"],
        modality_dropout=train["modality_dropout"],
        length_batches=train["batch_order"] == "length",
        dropout_masks=train["dropout_masks"],
        task_loss=train["task_loss"],
        optimizer=train["optimizer"],
        schedule=train["schedule"],
    )


def plan_of(recipe: Mapping[str, Any]) -> RunPlan:
    """A resolved recipe (``validate_recipe``'s result) as a ``RunPlan``."""
    heads = recipe["model"]["unimodal_heads"]
    return RunPlan(
        seed=recipe["seed"],
        compile=recipe["compile"],
        heads=bool(heads),
        unimodal_weight=heads["weight"] if heads else 0.0,
        imputer=recipe["model"]["imputer"]["type"],
        balancer=recipe["balancer"]["type"],
        train=train_plan(recipe["train"]),
    )
