"""A synthetic multimodal classification dataset with modalities of unequal strength.

Why it exists: missing-modality methods are about *which* modality is lost, so a test bed needs
modalities that carry different amounts of class information. Here modality ``m`` shows each
sample's class mean scaled by ``signal[m]`` plus Gaussian noise; by default the strengths fall
linearly from the first modality to the last, so losing ``m0`` hurts most and the last one is
weak but still better than chance. Everything is drawn from one seeded ``torch.Generator``, so a
seed fixes every tensor and every sample id.

Generative model, for sample ``i`` of class ``c`` and modality ``m``::

    mu[m, c]  ~ a random unit vector in R^D            (class means, one set per modality)
    x[i, m]   = signal[m] * mu[m, c] + noise * eps     (vector mode)
    x[i, m, t] = signal[m] * mu[m, c] + noise * eps_t  for t < length[i, m], zero after (sequence mode)

Two class means are about ``signal * sqrt(2)`` apart, so ``signal / noise`` reads as a
signal-to-noise ratio: with 4 classes, 2.0 gives roughly 80% accuracy for a single vector and
0.75 roughly 45% (chance is 25%). In sequence mode, pooling the valid frames averages the noise
down, so the same strengths are easier there.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from mmcore.errors import DataError
from mmcore.nn import length_mask
from mmcore.recipe.hints import AtLeast, NonNegative, Positive, PositiveInt
from mmcore.types import ModalitySpec, SplitData, TaskSpec

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_STRONGEST, DEFAULT_WEAKEST = 2.0, 0.75  # default signal strengths of m0 and of the last modality


class Synthetic:
    """Gaussian class clusters per modality, with per-modality signal strength; vectors or padded sequences."""

    # Tiny configurations for mmcore.testing's contract suite: one vector, one sequence dataset.
    contract_options = [
        {"modalities": 2, "classes": 3, "samples": 60, "dim": 4},
        {"modalities": 3, "classes": 2, "samples": 40, "dim": 3, "sequence": True, "max_len": 6},
    ]

    def __init__(
        self,
        modalities: PositiveInt = 3,
        classes: Annotated[int, AtLeast(2)] = 4,
        samples: PositiveInt = 1200,
        dim: PositiveInt = 16,
        sequence: bool = False,
        max_len: PositiveInt = 12,
        signal: list[NonNegative] | None = None,
        noise: Positive = 1.0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        seed: int = 0,
    ) -> None:
        strengths = _check_options(
            modalities, classes, samples, dim, sequence, max_len, signal, noise, val_fraction, test_fraction
        )
        self.modalities = [
            ModalitySpec(f"m{i}", dim, sequence=sequence, max_len=max_len if sequence else None)
            for i in range(modalities)
        ]
        self.task = TaskSpec("classification", num_classes=classes, class_names=tuple(f"c{k}" for k in range(classes)))
        self.signal = strengths  # [M] float, kept for reports and tests

        gen = torch.Generator().manual_seed(int(seed))
        target = (torch.arange(samples) % classes)[torch.randperm(samples, generator=gen)]  # balanced classes
        split_of = _stratified_split(target, classes, val_fraction, test_fraction, gen)
        features, lengths = _draw_features(target, strengths, classes, dim, sequence, max_len, noise, gen)

        ids = torch.arange(samples, dtype=torch.int64)
        self._splits: dict[str, SplitData] = {}
        for code, name in enumerate(SPLITS):
            rows = torch.nonzero(split_of == code).squeeze(1)
            self._splits[name] = SplitData(
                features={k: v.index_select(0, rows) for k, v in features.items()},
                lengths={k: v.index_select(0, rows) for k, v in lengths.items()},
                target=target.index_select(0, rows),
                ids=ids.index_select(0, rows),
            )

    def split(self, name: str) -> SplitData:
        """The split's tensors (shared, not copied: do not modify them in place)."""
        if name not in self._splits:
            raise DataError(f"mmcore.synthetic has splits {', '.join(SPLITS)}; got '{name}'")
        return self._splits[name]


def _check_options(
    modalities: int,
    classes: int,
    samples: int,
    dim: int,
    sequence: bool,
    max_len: int,
    signal: list[float] | None,
    noise: float,
    val_fraction: float,
    test_fraction: float,
) -> Tensor:
    """Check what spans several options (single-option ranges are in the signature) and return
    the per-modality signal strengths ``[M]``."""
    problems = []
    if samples < classes:
        problems.append(f"'samples' ({samples}) must be at least 'classes' ({classes})")
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        problems.append(
            f"'val_fraction' and 'test_fraction' must be in (0, 1) with a sum below 1, "
            f"got {val_fraction} and {test_fraction}"
        )
    if signal is not None and len(signal) != modalities:
        problems.append(f"'signal' needs one strength per modality ({modalities} values), got {len(signal)}")
    if problems:
        raise DataError("mmcore.synthetic: " + "; ".join(problems))
    if signal is None:
        return torch.linspace(DEFAULT_STRONGEST, DEFAULT_WEAKEST, modalities)
    return torch.tensor([float(s) for s in signal])


def _stratified_split(
    target: Tensor, classes: int, val_fraction: float, test_fraction: float, gen: torch.Generator
) -> Tensor:
    """``[N]`` split code per sample (0 train, 1 val, 2 test), the same fractions within every class.

    Vectorised: rank each sample within its class in a random order, then cut the ranks.
    """
    n = target.shape[0]
    order = torch.randperm(n, generator=gen)
    by_class = order[torch.argsort(target[order], stable=True)]  # class-major, random within a class
    counts = torch.bincount(target, minlength=classes)  # [C]
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - starts[target[by_class]]
    n_test = torch.round(counts * test_fraction).long()
    n_val = torch.round(counts * val_fraction).long()
    if int((counts - n_test - n_val).min()) < 1 or int(n_val.sum()) < 1 or int(n_test.sum()) < 1:
        raise DataError(
            f"mmcore.synthetic: samples={n} are too few for classes={classes} with val_fraction={val_fraction} "
            f"and test_fraction={test_fraction}: a split would be empty"
        )
    cls_test, cls_val = n_test[target], n_val[target]
    split = torch.zeros(n, dtype=torch.int64)
    split[rank < cls_test + cls_val] = 1
    split[rank < cls_test] = 2
    return split


def _draw_features(
    target: Tensor,
    strengths: Tensor,
    classes: int,
    dim: int,
    sequence: bool,
    max_len: int,
    noise: float,
    gen: torch.Generator,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Features (and lengths in sequence mode) for every sample, one modality at a time."""
    n = target.shape[0]
    features: dict[str, Tensor] = {}
    lengths: dict[str, Tensor] = {}
    for m in range(strengths.shape[0]):
        means = torch.randn(classes, dim, generator=gen)
        means = means / means.norm(dim=1, keepdim=True).clamp(min=1e-12)  # unit vectors
        centre = strengths[m] * means[target]  # [N, D]
        if not sequence:
            features[f"m{m}"] = centre + noise * torch.randn(n, dim, generator=gen)
            continue
        low = max(1, max_len // 3)
        length = torch.randint(low, max_len + 1, (n,), generator=gen)
        frames = centre.unsqueeze(1) + noise * torch.randn(n, max_len, dim, generator=gen)
        valid = length_mask(length, max_len).unsqueeze(-1)
        features[f"m{m}"] = torch.where(valid, frames, 0.0)  # the class signal lives in valid frames only
        lengths[f"m{m}"] = length
    return features, lengths
