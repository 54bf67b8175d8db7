"""The component kinds, what the framework passes to their factories, and the base classes.

A component is a factory (class or function) registered under a dotted name. The framework
calls it with the *injected* keyword arguments of its kind (below) plus the user's options from
the recipe; every other keyword parameter, with its type hint and default, is a recipe option.

| kind     | injected                                  | returns                                             |
| -------- | ----------------------------------------- | --------------------------------------------------- |
| dataset  | —                                         | an object satisfying ``mmcore.types.Dataset``       |
| encoder  | ``spec: ModalitySpec``, ``dim: int``      | ``nn.Module``: ``(x, lengths) -> [B, dim]``         |
| imputer  | ``specs: list[ModalitySpec]``, ``dim``    | ``nn.Module``: ``(h, present) -> ImputerOutput``    |
| fusion   | ``specs``, ``dim``, ``out_dim: int``      | ``nn.Module``: ``(z, present) -> [B, out_dim]``     |
| balancer | ``modalities: list[str]``, and ``missing_rates: dict[str, float]`` if the factory asks | a ``Balancer`` |
| logger   | —                                         | a ``Logger``                                        |

Encoders see only their own modality. ``h`` and ``z`` are ``[B, M, d]`` in dataset modality
order and ``present`` is ``[B, M]`` bool; rows of absent modalities in ``h`` are zero.
"""

from __future__ import annotations

import unittest
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from mmcore.types import Dataset, StepStats

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn


class ContractSkip(unittest.SkipTest):
    """Raised by a factory's ``contract_options``: the component cannot be built without options the
    contract suite cannot invent (a data path) or an extra that is not installed. It lives here, with
    the component protocol, so production code raises it without importing ``mmcore.testing``
    (which re-exports it)."""


@dataclass(frozen=True)
class Kind:
    """One component kind: the single declaration the hooks, registry, schema and contract
    suite derive their tables from (``KIND_TABLE`` below)."""

    name: str  # "encoder": the registry's kind and the recipe reference's word for it
    hook: str  # "register_encoders": the hook through which plugins register this kind
    injected: frozenset[str]  # parameters the framework supplies; never recipe options
    node: str  # "EncoderNode": the alias ``mmcore.recipe.schema`` declares for a node of this kind
    returns: str  # what a factory must return, in words, for messages and the manual
    accepts: Callable[[Any], bool]  # whether a built object is one (checked by Component.build)


def _kind(name: str, plural: str, injected: tuple[str, ...], returns: str, accepts: Callable[[Any], bool]) -> Kind:
    return Kind(name, f"register_{plural}", frozenset(injected), f"{name.capitalize()}Node", returns, accepts)


def _is_module(obj: Any) -> bool:
    from torch import nn

    return isinstance(obj, nn.Module)


# The one table of component kinds (DESIGN §3). Adding a kind here and writing its hookspec in
# ``mmcore.hookspecs`` and its check in ``mmcore.testing`` is all it takes; a test keeps them in step.
KIND_TABLE: tuple[Kind, ...] = (
    _kind("dataset", "datasets", (), "an mmcore.Dataset (modalities, task, split())", lambda o: isinstance(o, Dataset)),
    _kind("encoder", "encoders", ("spec", "dim"), "an nn.Module", _is_module),
    _kind("imputer", "imputers", ("specs", "dim"), "an nn.Module", _is_module),
    _kind("fusion", "fusions", ("specs", "dim", "out_dim"), "an nn.Module", _is_module),
    _kind("balancer", "balancers", ("modalities", "missing_rates"), "an mmcore.Balancer", lambda o: isinstance(o, Balancer)),
    _kind("logger", "loggers", (), "an mmcore.Logger", lambda o: isinstance(o, Logger)),
)

@dataclass(frozen=True)
class FactoryAttribute:
    """An optional attribute a factory of some kinds may carry, and what the framework does with it.

    One row each, so ``mmcore components NAME`` shows what a component declares, and a test keeps
    CONTRIBUTING.md's list of them complete."""

    name: str
    kinds: tuple[str, ...]  # the kinds whose factories it is read from
    meaning: str  # one line for ``mmcore components NAME`` and the manual


_MODULES = ("encoder", "imputer", "fusion")
_ALL = ("dataset", *_MODULES, "balancer", "logger")
FACTORY_ATTRIBUTES: tuple[FactoryAttribute, ...] = (
    FactoryAttribute("describe", ("dataset",), "(modalities, task) from the options alone: validate checks names and metrics"),
    FactoryAttribute("loss_groups", ("imputer",), "its loss groups (or a function of the options): validate checks balancer.target"),
    FactoryAttribute("needs", ("balancer",), "the optional StepStats fields it reads; the engine computes only those"),
    FactoryAttribute("task_kinds", ("balancer",), "the task kinds it is defined for; validate refuses the others"),
    FactoryAttribute("target_required", ("balancer",), "it weighs its target group, which must exist even at the default"),
    FactoryAttribute("calibration", ("balancer",), "a module the engine builds with the model and puts before the imputer"),
    FactoryAttribute("contract_options", _ALL, "the options the contract suite builds it with (or a function raising ContractSkip)"),
    FactoryAttribute("contract_requires", _ALL, "modules the contract check needs installed (else it is skipped)"),
    FactoryAttribute("contract_modalities", _MODULES, "the modality kinds (vector, sequence) its contract check uses"),
)


def declared_attributes(kind: str, factory: Any) -> list[tuple[FactoryAttribute, Any]]:
    """The rows of ``FACTORY_ATTRIBUTES`` that ``factory`` (of ``kind``) carries, with their values."""
    rows = []
    for row in FACTORY_ATTRIBUTES:
        value = getattr(factory, row.name, None)
        if kind in row.kinds and value is not None and not (row.name == "needs" and value == frozenset()):
            rows.append((row, value))
    return rows


KIND: dict[str, Kind] = {k.name: k for k in KIND_TABLE}
KINDS: tuple[str, ...] = tuple(KIND)

# Parameters the framework supplies; they are never recipe options.
INJECTED: dict[str, frozenset[str]] = {k.name: k.injected for k in KIND_TABLE}


@dataclass
class StepView:
    """What ``Balancer.extra_loss`` sees of one training step (tensors with their gradients)."""

    step: int  # optimisation steps done before this one
    prediction: Tensor  # [B, out_dim] the fusion head's output
    unimodal: Tensor | None  # [B, M, out_dim] the unimodal heads' outputs, when on
    z: Tensor  # [B, M, d] completed latents
    h: Tensor  # [B, M, d] encodings, absent rows zeroed
    target: Tensor  # [B] labels (classification) or values (regression)
    present: Tensor  # [B, M] bool, after modality dropout
    probe: Callable[[Tensor], Tensor]  # present mask [B, M] -> prediction [B, out_dim], no grad, eval mode
    # mean of a tensor over ranks (identity in one process): for statistics a balancer keeps
    # from this hook, so that its state agrees on every rank (each rank calls it every step)
    mean_over_ranks: Callable[[Tensor], Tensor] = lambda t: t
    # [B] each row's task loss of the fusion head (with its gradient; its mean is the step's task
    # loss): what a balancer needs to reweight rows, e.g. by availability pattern (group DRO)
    task_rows: Tensor | None = None


@dataclass
class EpochView:
    """What ``Balancer.end_epoch`` sees after each epoch's validation."""

    epoch: int  # epochs done (1 after the first)
    step: int  # optimisation steps done
    val: dict[str, dict[str, float]]  # condition (and "average") -> metric -> value, as logged
    latents: Callable[[], tuple[Tensor, Tensor, Tensor]]  # () -> (z [N, M, d], target [N], present [N, M]) of the train split, eval mode
    # split ("train": this epoch's masks; "val": every usable modality present) -> {"task": scalar
    # mean task loss of the fusion head, "unimodal": [M] the heads' (when on)}, eval mode, no grad
    losses: Callable[[str], dict[str, Tensor]] = lambda split: {}


# The StepStats fields a balancer may ask for in ``needs``; the engine computes nothing else.
STEP_NEEDS = frozenset({"unimodal_confidence", "group_grads"})


class Balancer:
    """Base class for modality-balancing strategies; the defaults do nothing.

    A balancer owns the per-modality weights of one loss group (``target``), may rescale
    gradients between backward and the optimiser step, and watches detached statistics after
    every step. It is a plain object rather than a module because its state is a handful of
    numbers that must survive a checkpoint as JSON.

    The hooks, in the order the engine calls them each step (``mmcore.engine.trainer.Trainer.step``):
    ``weights()`` → ``extra_loss(view)`` (added to the loss) → backward → ``modulate_gradients``
    (``stats.group_grads`` filled when asked) → optimiser step → ``observe(stats)``; and after
    each epoch's validation, ``end_epoch(view)``. ``needs`` names the optional ``StepStats``
    fields to compute (``STEP_NEEDS``); ``gradient_groups`` the groups for ``group_grads``
    (``task`` is the fusion head's task loss). ``target_required = True`` says that ``target`` must be a loss group of the model even
    at its default (a non-default target must exist for every balancer; ``mmcore.lossgroups``).

    Rules for subclasses: keep state in tensors on the device (``observe`` runs every step and
    must not force a host sync); make ``state_dict`` JSON-able; ``load_state_dict`` must restore
    behaviour exactly, so that a resumed run equals an uninterrupted one. Return a *new* tensor
    from ``weights`` after an update rather than writing into the old one (autograd holds it).
    What ``observe`` and the hooks receive is already pooled over ranks, so state agrees on every
    rank without the balancer calling ``torch.distributed``.
    """

    target: str = "recon"
    needs: frozenset[str] = frozenset()
    gradient_groups: tuple[str, ...] = ()
    target_required: bool | None = None

    def __init__(self, modalities: list[str], target: str = "recon") -> None:
        self.modalities = list(modalities)
        self.target = target
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> "Balancer":
        """Move internal tensors; called once by the engine before training."""
        self.device = torch.device(device)
        return self

    def weights(self) -> Tensor:
        """``[M]`` weights of the target group's per-modality terms, on ``self.device``."""
        return torch.ones(len(self.modalities), device=self.device)

    def modulate_gradients(self, model: "nn.Module", stats: StepStats) -> None:
        """Optionally rescale gradients after backward (e.g. OGM-GE). ``model.encoders`` is a
        ``ModuleDict`` keyed by modality name."""

    def observe(self, stats: StepStats) -> None:
        """See the step's detached statistics (after the optimiser step)."""

    def extra_loss(self, view: StepView) -> Tensor | None:
        """A scalar term added to this step's loss (PMR's prototype loss), or None for none.
        Logged as ``balancer_loss``. Runs on every rank's own batch, like the task loss."""
        return None

    def end_epoch(self, view: EpochView) -> None:
        """After each epoch's validation, before the checkpoints are written (G-Blending's
        weights from validation, PMR's prototypes from the training latents)."""

    def log_values(self) -> dict[str, Tensor]:
        """Tensors to log at logging steps (read from the device only then)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def declared_needs(balancer: Balancer | type[Balancer]) -> frozenset[str] | None:
    """The ``needs`` a balancer class (or an instance's) declares itself, or None if none does."""
    cls = balancer if isinstance(balancer, type) else type(balancer)
    for klass in cls.__mro__:
        if klass is Balancer:
            break
        if "needs" in vars(klass):
            return frozenset(klass.needs) & STEP_NEEDS
    return None


def requested_stats(balancer: Balancer) -> frozenset[str]:
    """The optional ``StepStats`` fields to compute for this balancer.

    A class that declares ``needs`` gets exactly those. One written before ``needs`` existed that
    overrides ``observe`` or ``modulate_gradients`` still gets ``unimodal_confidence``, as it
    always did (declare ``needs = frozenset({"unimodal_confidence"})``, or ``frozenset()``, instead).
    """
    declared = declared_needs(balancer)
    if declared is not None:
        return declared
    cls = type(balancer)
    legacy = cls.observe is not Balancer.observe or cls.modulate_gradients is not Balancer.modulate_gradients
    return frozenset({"unimodal_confidence"}) if legacy else frozenset()


class Logger:
    """Base class for loggers: where the scalars of a run go besides the terminal.

    The engine calls a logger on the main rank only, in this order: ``open`` once (with the run
    directory and, on resume, the step the run continues from), then ``log_step`` at every
    logging step and ``log_epoch`` after every validation, and ``close`` once, also when the
    run fails. Values are plain Python numbers already read from the device, so a logger never
    forces a host sync. ``mmcore.jsonl`` (the run's record, ``metrics.jsonl``) is one of these.
    """

    def open(self, run_dir: "Path", resume_step: int | None = None) -> None:
        """Start writing under ``run_dir``; ``resume_step`` is set when a run is resumed, and a
        logger whose record has lines past it drops them (they were written after the
        checkpoint the run continues from)."""

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        """Mean losses, learning rate and balancer values since the previous logging step."""

    def progress(self, step: int, total: int, epoch: int, epochs: int) -> None:
        """Called after every optimisation step with plain integers (no device values), for
        progress displays; ``step`` counts the steps done, out of ``total``."""

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        """Validation results of one epoch (``val.<metric>`` averaged over conditions, and the
        selection value)."""

    def close(self) -> None:
        """Flush and release files; called once, also when training fails."""
