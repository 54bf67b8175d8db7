"""The data types every component speaks.

Components exchange a small number of plain objects: modality specs (what a dataset holds),
a task spec (what is predicted), whole splits as tensors, and the imputer's output. Keeping
them in one module is what lets a plugin written elsewhere line up with the engine.

Conventions used throughout:
- Modalities have a fixed order, the order of ``Dataset.modalities``. Per-modality tensors
  are indexed by that order: latents are ``[B, M, d]``, masks ``[B, M]`` (True = present),
  per-modality loss terms ``[M]``.
- Sample ids are int64 and unique within a dataset (across its splits). Training masks are a
  pure function of (seed, id, spec), so ids must be stable between runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

SPLITS: tuple[str, ...] = ("train", "val", "test")  # the splits a dataset provides, in this order
EVAL_SPLITS: tuple[str, ...] = ("val", "test")  # the splits evaluation reports
UNIMODAL_GROUP = "unimodal"  # the loss group the engine adds when unimodal heads are on


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of a dataset, as encoders, imputers and fusion heads are told about it."""

    name: str  # short identifier used in recipes (missing rates, per-modality encoders)
    dim: int  # feature width D of one vector or one frame
    sequence: bool = False  # True: features are [N, T, D] with lengths; False: [N, D]
    max_len: int | None = None  # T for sequence modalities (padded length), None for vectors


@dataclass(frozen=True)
class TaskSpec:
    """What the model predicts. Classification gives logits over ``num_classes``; regression one value."""

    kind: Literal["classification", "regression"]
    num_classes: int | None = None  # classification only
    class_names: tuple[str, ...] | None = None  # optional, for reports

    @property
    def out_dim(self) -> int:
        """Width of the fusion head's output."""
        return int(self.num_classes) if self.kind == "classification" else 1


@dataclass
class SplitData:
    """A whole split held as tensors, so that batches are index selections on the device."""

    features: dict[str, Tensor]  # modality -> [N, D] (float) or [N, T, D] (float, zero padded)
    lengths: dict[str, Tensor]  # sequence modality -> [N] int64 valid lengths (vectors: absent)
    target: Tensor  # [N] int64 class index, or [N] float32 regression target
    ids: Tensor  # [N] int64 sample ids, unique within the dataset
    # [N, M] bool in modality order, True where a row's features of that modality are unusable
    # (non-finite in the files) and must be treated as absent; set by mmcore.datacheck under
    # `data.nonfinite: absent`, whose rows are zeroed. None: every row is usable.
    unusable: Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def to(self, device: torch.device | str) -> "SplitData":
        """Move every tensor once; the training loop then never copies data from the host."""
        return SplitData(**self._each(lambda t: t.to(device)))

    def rows(self, start: int, stop: int) -> "Batch":
        """Rows ``[start, stop)`` as a batch of views: nothing is copied (evaluation walks a split
        in order, and a copy of a 300-row, 1024-wide sequence modality cost more than encoding it
        in length order saved)."""
        return Batch(**self._each(lambda t: t[start:stop]))

    def select(self, index: Tensor) -> "Batch":
        """The rows ``index`` as a batch (an index selection, no Python per sample)."""
        return Batch(**self._each(lambda t: t.index_select(0, index)))

    def _each(self, change: Callable[[Tensor], Tensor]) -> dict[str, Any]:
        """Every field with ``change`` applied to each of its tensors: the one list of the fields."""
        return {
            "features": {k: change(v) for k, v in self.features.items()},
            "lengths": {k: change(v) for k, v in self.lengths.items()},
            "target": change(self.target),
            "ids": change(self.ids),
            "unusable": None if self.unusable is None else change(self.unusable),
        }


@dataclass
class Batch:
    """A mini-batch: the same fields as ``SplitData`` for B rows."""

    features: dict[str, Tensor]
    lengths: dict[str, Tensor]
    target: Tensor
    ids: Tensor
    unusable: Tensor | None = None  # [B, M] bool, as in SplitData: AND its negation into the present mask

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@runtime_checkable
class Dataset(Protocol):
    """What a dataset factory returns.

    ``split(name)`` is called with ``"train"``, ``"val"`` and ``"test"``; tensors may live on the
    CPU, the engine moves them to the device once.

    Optional: ``input_transform() -> mmcore.InputTransform | None`` declares how the dataset's
    raw features became what ``split`` returns (e.g. standardisation with training statistics).
    The run stores it, and ``mmcore eval``, ``predict`` and ``export`` apply it to raw inputs
    (see ``mmcore.transform``); without it, ``predict`` feeds inputs to the model as given.
    """

    modalities: list[ModalitySpec]
    task: TaskSpec

    def split(self, name: str) -> SplitData: ...


@dataclass
class ImputerOutput:
    """What an imputer returns: the completed latents and its per-modality loss terms.

    ``losses`` maps a loss group (``"recon"``, ``"kl"``, ...) to a ``[M]`` tensor, one term per
    modality, already scaled by the imputer's own weights. A modality with no sample to compute
    a term on contributes exactly 0 (never NaN). The engine adds ``Σ_m w[group, m] · L[group, m]``
    to the loss, where ``w`` is 1 unless the balancer targets that group.

    ``monitors`` maps a name to a detached ``[M]`` statistic that explains what the imputer does
    (the VIB's mean ‖z_m‖² and σ²_m): the engine logs it as ``name.<modality>`` in metrics.jsonl
    beside the loss terms and never adds it to the loss, so it is evidence, not an objective.
    """

    z: Tensor  # [B, M, d] completed latent per modality
    losses: dict[str, Tensor] = field(default_factory=dict)  # group -> [M]
    monitors: dict[str, Tensor] = field(default_factory=dict)  # name -> [M] detached, logged only


@dataclass
class StepStats:
    """Detached per-modality statistics of one training step, given to ``Balancer.observe``.

    Everything stays on the device so that observing never forces a host sync.
    """

    step: int  # optimisation steps done before this one (0 for the first)
    losses: dict[str, Tensor]  # group -> [M] detached, unweighted by the balancer
    present_counts: Tensor  # [M] number of samples in the batch where each modality is present
    unimodal_confidence: Tensor | None = None  # [M] mean softmax prob. of the true class per head
    batch_size: int = 0  # rows of the (global) batch these statistics describe
    # only when the balancer's ``needs`` asks for it (mmcore.components.Balancer):
    # group -> per modality -> gradient of that group's weighted loss w.r.t. each parameter of
    # ``model.encoders[m]`` (in ``parameters()`` order, zeros where unused), averaged over ranks
    group_grads: dict[str, list[list[Tensor]]] | None = None
