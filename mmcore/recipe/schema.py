"""The recipe reference: every key a recipe may hold, its type, its default and what it means.

These dataclasses are a declaration, read by ``checks.resolve_section``; nothing instantiates
them. A field without a default is required; ``Annotated[...]`` adds a range or marks a
component node, whose options come from the registered factory's signature instead of from
here. A key left out of a recipe gets the default below in the resolved recipe that is written
to the run directory, so a run can always be repeated from its own ``recipe.yaml``.

Example (DESIGN §5)::

    name: redcore-handwritten
    dataset: {type: corpora.handwritten}
    missing:
      train: {rates: {fou: 0.1, kar: 0.5, pix: 0.7}, policy: fixed}
    model:
      encoders: {default: {type: mmcore.mlp, layers: [256]}}
      imputer: {type: redcore.vib, kl_weight: 8.0e-4}
      unimodal_heads: true
    balancer: {type: redcore.relative_advantage, target: recon}
    train: {epochs: 60, optimizer: {type: adam, lr: 2.0e-4}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mmcore.components import KIND_TABLE
from mmcore.options.hints import (  # the named ranges live in hints, where plugins import them too
    Count,
    Fraction,
    Matches,
    NodeOf,
    NonEmpty,
    NonNegative,
    Positive,
    PositiveInt,
    Rate,
    StartsWith,
    TrueMeansDefaults,
)
from mmcore.options.hints import Between  # the learning rate's plausible range

# NAME_MAX, the longest file name Linux and macOS file systems take, is 255 bytes.
RunName = Annotated[
    str, Matches(r"(?!\.\.?$)[^/\\\x00-\x1f\x7f]{1,255}", "a directory name: 1 to 255 characters, no '/', '\\' or control characters")
]
Device = Annotated[str, Matches(r"auto|cpu|cuda|cuda:[0-9]+", "auto, cpu, cuda or cuda:N")]

# Component nodes: {type: <registered name>, **options of that component}, or just the name;
# one per kind of mmcore.components.KIND_TABLE, each under the alias name the table gives it.
NODE: dict[str, Any] = {k.name: Annotated[dict, NodeOf(k.name)] for k in KIND_TABLE}
DatasetNode = NODE["dataset"]
EncoderNode = NODE["encoder"]
ImputerNode = NODE["imputer"]
FusionNode = NODE["fusion"]
BalancerNode = NODE["balancer"]
LoggerNode = NODE["logger"]


def node(name: str) -> Any:
    """A component-node default: ``{type: name}`` (its options' defaults are filled in too)."""
    return field(default_factory=lambda: {"type": name})


# ---------------------------------------------------------------- missing:


@dataclass(kw_only=True)
class MaskSpec:
    """Per-sample random masks: per-modality rates, or one sample-level rate (not both)."""

    rates: dict[str, Rate] = field(default_factory=dict)  # modality -> probability that a sample lacks it
    sample_rate: Rate | None = None  # η of CPM-Net/GCNet: probability that a sample is incomplete
    min_present: Count = 1  # every sample keeps at least this many modalities
    # mcar: missingness independent of the data; mar: driven by an always-present modality's
    # features; mnar: by each modality's own features or by the label (see mmcore.mechanisms)
    mechanism: Literal["mcar", "mar", "mnar"] = "mcar"
    depends_on: str | None = None  # mar: the driving modality (rate 0); mnar: self (default) or label
    strength: float = 2.0  # mar / mnar: log-odds of missing per standard deviation of the driver


@dataclass(kw_only=True)
class TrainMissing(MaskSpec):
    """Which modalities training samples lack. A mask is a pure function of (seed, sample id, spec)."""

    # fixed: a sample keeps its mask every epoch (the data is really missing);
    # resample: masks are redrawn each epoch, as the RedCore reference code does in effect
    policy: Literal["fixed", "resample"] = "fixed"


@dataclass(kw_only=True)
class RandomCondition:
    """An evaluation condition of random masks: ``{random: {rates: {a: 0.5}}, seed: 1, name: half}``."""

    random: MaskSpec  # the masks' distribution
    seed: int = 0  # seed of these masks, independent of the training seed
    name: str = "random"  # label in reports; give each random condition its own


# A listed condition: a subset string ("a+v"), a list of present modalities ([a, v]), or random masks.
Condition = str | list[str] | RandomCondition


@dataclass(kw_only=True)
class EvalMissing:
    """The availability conditions that validation and test report, each separately and averaged."""

    # "all": every non-empty subset; "full": everything present; one subset ("a+v"); or a list of
    # conditions, in which "all" and "full" expand in place ([all, {random: ..., name: r40}])
    conditions: str | Annotated[list[Condition], NonEmpty()] | RandomCondition = "all"


@dataclass(kw_only=True)
class Frames:
    """Frames missing inside a present sequence modality, in segments (mmcore.frames)."""

    rate: Rate = 0.0  # probability that a frame is dropped at training (0: no frame is dropped)
    segment: PositiveInt = 1  # frames per dropped segment (contiguous)
    eval_rate: Rate | None = None  # the rate at validation and test; null: the training rate
    seed: int = 0  # seed of the validation and test frames (training frames use the run's seed)
    modalities: list[str] | None = None  # sequence modalities it applies to; null: every sequence modality


@dataclass(kw_only=True)
class Missing:
    """Missing-modality protocol. Modality names are checked once the dataset is built."""

    train: TrainMissing = field(default_factory=TrainMissing)
    eval: EvalMissing = field(default_factory=EvalMissing)
    frames: Frames = field(default_factory=Frames)


# ---------------------------------------------------------------- model:


@dataclass(kw_only=True)
class UnimodalHeads:
    """A small classifier per modality on its completed latent, trained with the task loss."""

    layers: list[PositiveInt] = field(default_factory=lambda: [128, 128])  # hidden widths of each head
    dropout: Fraction = 0.0  # dropout between hidden layers
    weight: NonNegative = 1.0  # weight of the unimodal losses in the total loss


@dataclass(kw_only=True)
class Model:
    """Encoders -> imputer -> fusion, all sharing the latent width ``dim``."""

    dim: PositiveInt = 128  # latent width d of every modality
    # "default" and/or modality names -> encoder node; a named modality overrides the default
    encoders: Annotated[dict[str, EncoderNode], NonEmpty()] = field(
        default_factory=lambda: {"default": {"type": "mmcore.mlp"}}
    )
    imputer: ImputerNode = node("mmcore.zero")  # completes the latents of absent modalities
    fusion: FusionNode = node("mmcore.concat")  # latents of all modalities -> prediction
    # false: none; true: heads with the defaults below; or a mapping of those options
    unimodal_heads: Annotated[bool | UnimodalHeads, TrueMeansDefaults()] = False
    # weights of encoders, fusion and unimodal heads (not the imputer, which owns its init):
    # default: PyTorch's; kaiming_normal: RedCore's reference (std sqrt(2/fan_in), zero biases)
    init: Literal["default", "kaiming_normal"] = "default"


# ---------------------------------------------------------------- train:


@dataclass(kw_only=True)
class Optimizer:
    """The torch optimiser; options that do not apply to the chosen type are ignored."""

    type: Literal["adam", "adamw", "sgd"] = "adam"
    # base learning rate (the schedule scales it); above 10 no optimiser here converges
    lr: Annotated[Positive, Between(0.0, 10.0)] = 1e-3
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)  # adam / adamw (torch defaults)
    weight_decay: NonNegative = 0.0
    momentum: Rate = 0.9  # sgd only
    # foreach: torch's multi-tensor update, the same numbers as its per-tensor loop (the CPU default)
    # and faster; fused: one fused kernel per step, ~3x faster again on a CPU, rounding differs
    implementation: Literal["foreach", "fused"] = "foreach"


@dataclass(kw_only=True)
class Schedule:
    """Learning-rate multiplier per step: warm-up, then hold, then decay to 0 at the last epoch."""

    # linear: per step to 0; linear_epoch: RedCore's reference, per epoch, ending at 1/(decay epochs + 1)
    type: Literal["constant", "linear", "linear_epoch", "cosine"] = "constant"
    constant_epochs: Count = 0  # epochs at the full rate before decaying (RedCore: 30 of 60)
    warmup_epochs: Count = 0  # epochs of linear ramp from 0 at the start


@dataclass(kw_only=True)
class Train:
    """The training loop. Model selection uses the validation split only."""

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt = 1024  # evaluation holds no gradients: bigger batches are fine
    optimizer: Optimizer = field(default_factory=Optimizer)
    schedule: Schedule = field(default_factory=Schedule)
    grad_clip: Positive | None = None  # max global gradient norm; null: no clipping
    select: Annotated[str, StartsWith("val.")] = "val.macro_f1"  # metric that picks the best checkpoint
    # steps between metric lines (the only host syncs); null: about LOG_POINTS lines per run, at
    # most every 50 steps (mmcore.engine.steps.log_interval), so a short run still draws a curve
    log_every: PositiveInt | None = None
    task_loss: Literal["auto", "ce", "l1", "mse"] = "auto"  # auto: ce for classification, l1 for regression
    # stop (resumably) once this many optimisation steps are done in total; the schedule still
    # spans ``epochs``, so `mmcore resume RUN train.max_steps=...` continues exactly. null: no limit
    max_steps: PositiveInt | None = None
    # probability of hiding each present modality of a training sample per step, for any imputer
    # (never all of a sample's present ones; seeded by seed, epoch and sample id; mmcore.engine.dropout)
    modality_dropout: Rate = 0.0
    # how training batches are drawn: shuffle (uniformly), or length (shuffled, then rows of similar
    # total length batched together, so per-batch padding bites; mmcore.engine.batching.length_order).
    # On a CPU length was the slower order on IEMOCAP-shaped data, correlated lengths or not: packed
    # frames already drop the padding (benchmarks/README.md, issue 25's sixth session; measured
    # before frames: auto packed nearly full training batches)
    batch_order: Literal["shuffle", "length"] = "shuffle"
    # torch: nn.Dropout's Bernoulli masks; fast: 16-bit masks from 64-bit draws, p rounded to
    # 1/65536 and different draws, several times cheaper on a CPU (mmcore.fastdropout); auto: fast
    # inside sequence encoders on a CPU, torch's everywhere else (vector models draw as before)
    dropout_masks: Literal["auto", "torch", "fast"] = "auto"
    # skip: in training, a sequence modality's encoder runs only on the rows where that modality
    # is present (absent rows are zeroed after encoding anyway: the same function, less work, fewer
    # dropout draws; off under a whole-forward compile); encode: every row, as before (mmcore.engine.model.encode_present)
    absent_rows: Literal["skip", "encode"] = "skip"


# ---------------------------------------------------------------- data:


@dataclass(kw_only=True)
class Data:
    """How the loaded splits are checked before training (``mmcore.datacheck.check_splits``)."""

    # error: NaN or inf in any feature stops the run with the split, modality and row count;
    # absent: a row whose features of a modality are non-finite counts as missing that modality
    nonfinite: Literal["error", "absent"] = "error"


# ---------------------------------------------------------------- the recipe


@dataclass(kw_only=True)
class Recipe:
    """One training run: what data, which components, how to train. Only ``name`` and ``dataset`` are required."""

    name: RunName  # the run's name; its directories go to <output>/<name>/<timestamp>/
    seed: Count = 0  # seeds weights, batch order and training masks
    device: Device = "auto"  # auto: cuda when available, else cpu
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast (CUDA, or the CPU's bf16 autocast)
    compile: bool = False  # torch.compile the model
    # seconds a process of a multi-process run (--nproc, torchrun) waits for the others at a
    # collective before the run stops with one line (gloo's own wait is 30 minutes); resumable
    rank_timeout: PositiveInt = 600  # NCCL's default wait (10 minutes), so one bound fits CPU and GPU runs
    output: str = "runs"  # root of the run directories
    dataset: DatasetNode  # a registered dataset and its options
    data: Data = field(default_factory=Data)  # checks of the loaded data
    missing: Missing = field(default_factory=Missing)
    model: Model = field(default_factory=Model)
    balancer: BalancerNode = node("mmcore.uniform")  # modality balancing; mmcore.uniform leaves weights at 1
    train: Train = field(default_factory=Train)
    # where scalars go (main rank only): the metrics.jsonl record and the progress bar by default
    logging: list[LoggerNode] = field(default_factory=lambda: [{"type": "mmcore.jsonl"}, {"type": "mmcore.console"}])
