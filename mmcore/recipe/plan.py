"""The resolved recipe read once into typed objects: what the session and the trainer consume.

Validation has already given every value its type (ints are ints, a float key holds a float, a
default is written out), so the engine has nothing to cast or default: ``plan_of`` reads each key
the engine needs exactly once, and the trainer reads ``plan.train.epochs`` instead of
``int(recipe["train"]["epochs"])``. Component nodes stay the resolved mappings
(``{type: name, **options}``): their factories' signatures are their types. What needs the loaded
data is finished by the session with the one function that checks it: the evaluation conditions
(``mmcore.conditions.parse_conditions``), ``train.select`` (``crosschecks.parse_select``) and the
training spec against the modalities (``crosschecks.spec_problems``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from mmcore.errors import MMCoreError, RecipeError
from mmcore.frames import FrameSpec, frame_spec
from mmcore.missing import SPEC_KEYS, MissingSpec

Node = Mapping[str, Any]  # a resolved component node: {type: registered name, **options}


@dataclass(frozen=True)
class TrainPlan:
    """``train:`` of a resolved recipe (``mmcore.recipe.schema.Train`` documents each key)."""

    epochs: int
    batch_size: int
    eval_batch_size: int
    log_every: int | None  # None: about LOG_POINTS lines over the run (mmcore.engine.steps.log_interval)
    grad_clip: float | None
    select: str  # as written: val.<metric> or val.<condition>.<metric>
    max_steps: int | None
    modality_dropout: float
    length_batches: bool  # batch_order: length
    dropout_masks: str  # auto, torch or fast (mmcore.fastdropout.apply_dropout_masks)
    skip_absent: bool  # absent_rows: skip (mmcore.engine.model.MultimodalModel.encode)
    task_loss: str
    optimizer: Mapping[str, Any]  # the optimiser section, for mmcore.engine.optim
    schedule: Mapping[str, Any]

    @property
    def lr(self) -> float:
        """The base learning rate that the schedule scales."""
        return self.optimizer["lr"]


@dataclass(frozen=True)
class HeadsPlan:
    """``model.unimodal_heads`` when set."""

    layers: tuple[int, ...]  # hidden widths of each head
    dropout: float
    weight: float  # weight of the unimodal losses in the total loss


@dataclass(frozen=True)
class ModelPlan:
    """``model:`` of a resolved recipe."""

    dim: int  # latent width of every modality
    encoders: Mapping[str, Node]  # modality (or "default") -> encoder node
    imputer: Node
    fusion: Node
    heads: HeadsPlan | None  # None: no unimodal heads
    init: str  # default | kaiming_normal

    def encoder(self, modality: str) -> Node:
        """The node that builds ``modality``'s encoder (its own, else ``default``)."""
        return self.encoders.get(modality, self.encoders.get("default"))  # type: ignore[return-value]


@dataclass(frozen=True)
class MissingPlan:
    """``missing:`` of a resolved recipe."""

    train: MissingSpec  # the training protocol; its modality names are checked against the loaded data
    conditions: Any  # missing.eval.conditions as written: they name modalities, so the session parses them
    frames: FrameSpec


@dataclass(frozen=True)
class RunPlan:
    """What the engine reads of a resolved recipe."""

    name: str
    output: str  # root of the run directories
    seed: int
    device: str
    precision: str
    compile: bool
    rank_timeout: int  # seconds a rank waits for the others at a collective (mmcore.engine.ddp)
    dataset: Node
    nonfinite: str  # data.nonfinite: error | absent
    model: ModelPlan
    missing: MissingPlan
    balancer: Node
    logging: tuple[Node, ...] | None  # None: the default loggers (mmcore.engine.build.DEFAULT_LOGGING)
    train: TrainPlan

    @property
    def heads(self) -> bool:
        """Whether the model has unimodal heads."""
        return self.model.heads is not None

    @property
    def unimodal_weight(self) -> float:
        """Weight of the unimodal heads' losses; 0.0 without heads."""
        return self.model.heads.weight if self.model.heads is not None else 0.0


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
        skip_absent=train["absent_rows"] == "skip",
        task_loss=train["task_loss"],
        optimizer=train["optimizer"],
        schedule=train["schedule"],
    )


def model_plan(model: Mapping[str, Any]) -> ModelPlan:
    """``model:`` as a ``ModelPlan``."""
    heads = model["unimodal_heads"]
    return ModelPlan(
        dim=model["dim"],
        encoders=model["encoders"],
        imputer=model["imputer"],
        fusion=model["fusion"],
        heads=HeadsPlan(tuple(heads["layers"]), heads["dropout"], heads["weight"]) if heads else None,
        init=model["init"],
    )


def missing_spec(train: Mapping[str, Any]) -> MissingSpec:
    """``missing.train`` as a ``MissingSpec`` (its constructor checks the cross-field invariants)."""
    return MissingSpec(**{k: dict(train[k]) if k == "rates" else train[k] for k in SPEC_KEYS})


def missing_plan(missing: Mapping[str, Any]) -> MissingPlan:
    """``missing:`` as a ``MissingPlan``."""
    try:
        spec = missing_spec(missing["train"])
    except MMCoreError as error:  # validation reports it; this covers a recipe that skipped validation
        raise RecipeError([f"missing.train: {error}"]) from None
    return MissingPlan(spec, missing["eval"]["conditions"], frame_spec(missing["frames"]))


def plan_of(recipe: Mapping[str, Any]) -> RunPlan:
    """A resolved recipe (``validate_recipe``'s result) as a ``RunPlan``."""
    logging = recipe["logging"]
    return RunPlan(
        name=recipe["name"],
        output=recipe["output"],
        seed=recipe["seed"],
        device=recipe["device"],
        precision=recipe["precision"],
        compile=recipe["compile"],
        rank_timeout=recipe["rank_timeout"],
        dataset=recipe["dataset"],
        nonfinite=recipe["data"]["nonfinite"],
        model=model_plan(recipe["model"]),
        missing=missing_plan(recipe["missing"]),
        balancer=recipe["balancer"],
        logging=None if logging is None else tuple(logging),
        train=train_plan(recipe["train"]),
    )
