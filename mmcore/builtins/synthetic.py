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

from typing import Annotated, Literal

import torch
from torch import Tensor

from mmcore.builtins.latent import LatentParams, check_latent, draw_latent, latent_params
from mmcore.errors import DataError
from mmcore.montecarlo import mc_bayes_accuracy
from mmcore.oracle import frame_counts, per_sample
from mmcore.nn import length_mask
from mmcore.options.hints import AtLeast, NonNegative, Positive, PositiveInt
from mmcore.transform import InputTransform
from mmcore.types import SPLITS, ModalitySpec, SplitData, TaskSpec

DEFAULT_STRONGEST, DEFAULT_WEAKEST = 2.0, 0.75  # default signal strengths of m0 and of the last modality


class Synthetic:
    """Gaussian class clusters per modality, with per-modality signal strength; vectors or padded sequences."""

    # Tiny configurations for mmcore.testing's contract suite: one vector, one sequence dataset.
    contract_options = [
        {"modalities": 2, "classes": 3, "samples": 60, "dim": 4},
        {"modalities": 3, "classes": 2, "samples": 40, "dim": 3, "sequence": True, "max_len": 6},
        {"modalities": 3, "classes": 3, "samples": 60, "dim": 4, "tau": 1.0},  # the latent test bed: checks oracle()
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
        names: list[str] | None = None,
        dims: list[PositiveInt] | None = None,
        min_lens: list[PositiveInt] | None = None,
        max_lens: list[PositiveInt] | None = None,
        lengths: Literal["independent", "correlated"] = "independent",
        tau: NonNegative | None = None,
        alpha: list[NonNegative] | None = None,
        gamma: list[NonNegative] | None = None,
        nuisance: NonNegative = 0.0,
        task: Literal["classification", "regression"] = "classification",
    ) -> None:
        """The generator's options (``mmcore components mmcore.synthetic`` lists them).

        Args:
            modalities: number of modalities M.
            classes: number of classes.
            samples: samples over all splits.
            dim: feature width of every modality (see ``dims``).
            sequence: frame sequences [N, T, D] with lengths instead of vectors.
            max_len: padded length T of every sequence modality (see ``max_lens``).
            signal: per-modality class signal strength (default: falling from 2.0 to 0.75).
            noise: standard deviation of the Gaussian noise.
            val_fraction: share of each class in the validation split.
            test_fraction: share of each class in the test split.
            seed: seeds every tensor and id.
            names: modality names (default m0, m1, ...), e.g. [a, v, l].
            dims: per-modality feature widths, overriding ``dim`` (IEMOCAP's shapes: [130, 342, 1024]).
            min_lens: per-modality shortest sequence (default max_len // 3).
            max_lens: per-modality longest (padded) sequence, overriding ``max_len``.
            lengths: ``independent`` draws each modality's length on its own; ``correlated``
                draws one duration per sample that places every modality's length at the same
                point of its range (as a/v/l follow an utterance's duration on real IEMOCAP),
                so that length bucketing can group short and long samples.
            tau: turns on the shared-latent generator (mmcore.builtins.latent) with this spread of
                the shared latent around its class mean; 0 keeps modalities conditionally independent.
            alpha: per-modality loading of the shared latent (latent generator; default all 1).
            gamma: per-modality private class signal (latent generator; default 1.5 falling to 0.5).
            nuisance: per-sample private noise of each modality (latent generator; frames share it).
            task: regression predicts a linear function of the shared latent (latent generator).
        """
        latent = tau is not None or task == "regression"
        # describe checks the latent options too, so `mmcore validate` reports them before a run
        self.modalities, self.task = self.describe(
            modalities, classes, dim=dim, sequence=sequence, max_len=max_len, names=names, dims=dims,
            min_lens=min_lens, max_lens=max_lens, task=task, tau=tau, alpha=alpha, gamma=gamma,
            nuisance=nuisance, signal=signal if latent else None,
        )
        strengths = _check_options(
            modalities, classes, samples, dim, sequence, max_len, None if latent else signal, noise, val_fraction, test_fraction
        )
        lows = _lows(self.modalities, min_lens)
        self.signal = strengths  # [M] float, kept for reports and tests
        self.latent: LatentParams | None = None  # the shared-latent generator's constants (its oracle needs them)
        if latent:
            self.latent = latent_params(modalities, classes, float(tau or 0.0), alpha, gamma, nuisance, noise, task == "regression")

        if latent and lengths != "independent":
            raise DataError("mmcore.synthetic: 'lengths: correlated' is not supported with the latent generator ('tau')")
        gen = torch.Generator().manual_seed(int(seed))
        target = (torch.arange(samples) % classes)[torch.randperm(samples, generator=gen)]  # balanced classes
        split_of = _stratified_split(target, classes, val_fraction, test_fraction, gen)
        # one shared duration per sample, drawn only when asked, so independent draws stay as they were
        correlated = lengths == "correlated" and sequence
        features, lengths_of, target = self._draw(target, strengths, classes, lows, noise, gen, correlated)
        self._splits = _splits_of(features, lengths_of, target, split_of)

    def _draw(
        self, target: Tensor, strengths: Tensor, classes: int, lows: list[int], noise: float, gen: torch.Generator,
        correlated: bool,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
        """Every sample's features, lengths and target, from the class-means generator or the
        shared-latent one (which also draws regression targets); keeps what their oracles need."""
        if self.latent is not None:
            features, lengths_of, target, self.embeddings = draw_latent(target, self.latent, self.modalities, lows, gen)
            return features, lengths_of, target
        duration = torch.rand(len(target), generator=gen) if correlated else None
        features, lengths_of, self.centres = _draw_features(target, strengths, classes, self.modalities, lows, noise, gen, duration)
        self.noise = float(noise)
        return features, lengths_of, target

    @classmethod
    def describe(
        cls,
        modalities: int = 3,
        classes: int = 4,
        dim: int = 16,
        sequence: bool = False,
        max_len: int = 12,
        names: list[str] | None = None,
        dims: list[int] | None = None,
        min_lens: list[int] | None = None,
        max_lens: list[int] | None = None,
        task: str = "classification",
        tau: float | None = None,
        alpha: list[float] | None = None,
        gamma: list[float] | None = None,
        nuisance: float = 0.0,
        signal: list[float] | None = None,
        **_: object,
    ) -> tuple[list[ModalitySpec], TaskSpec]:
        """The modality specs and task these options give, without drawing any tensor; raises
        ``DataError`` for options that contradict each other (validation reports it, exit 2)."""
        per = {"names": names, "dims": dims, "min_lens": min_lens, "max_lens": max_lens}
        wrong = [f"'{k}' needs {modalities} values, got {len(v)}" for k, v in per.items() if v is not None and len(v) != modalities]
        if names is not None and len(set(names)) != len(names):
            wrong.append(f"'names' must be distinct, got {names}")
        if not sequence and (min_lens is not None or max_lens is not None):
            wrong.append("'min_lens' and 'max_lens' need sequence: true")
        if min_lens is not None:
            highs = max_lens or [max_len] * modalities
            wrong += [f"min_lens[{i}]={lo} exceeds the longest sequence {hi}" for i, (lo, hi) in enumerate(zip(min_lens, highs)) if lo > hi]
        if tau is None and task != "regression" and (alpha is not None or gamma is not None or nuisance):
            wrong.append("'alpha', 'gamma' and 'nuisance' belong to the latent generator; set 'tau' (0 or more) to use them")
        if wrong:
            raise DataError("mmcore.synthetic: " + "; ".join(wrong))
        specs = [
            ModalitySpec(
                (names or [f"m{i}" for i in range(modalities)])[i],
                (dims or [dim] * modalities)[i],
                sequence=sequence,
                max_len=(max_lens or [max_len] * modalities)[i] if sequence else None,
            )
            for i in range(modalities)
        ]
        if tau is not None or task == "regression":
            problems = check_latent(modalities, classes, [s.dim for s in specs], float(tau or 0.0), alpha, gamma, signal)
            if problems:
                raise DataError("mmcore.synthetic: " + "; ".join(problems))
        if task == "regression":
            return specs, TaskSpec("regression")
        return specs, TaskSpec("classification", num_classes=classes, class_names=tuple(f"c{k}" for k in range(classes)))

    MC_DRAWS = 64  # Monte Carlo draws per row for the plain generator's ceiling

    @property
    def oracle_method(self) -> str:
        if self.latent is None:
            return (f"Monte Carlo (mmcore.montecarlo): the Bayes rule scored on {self.MC_DRAWS} fresh draws per row "
                    "given its pattern and lengths; accuracy_se is its standard error")
        return "closed form (mmcore.oracle): Bayes accuracy / MSE per sample given its pattern and lengths, averaged"

    def oracle(self, split: SplitData, masks: dict[str, Tensor]) -> dict[str, dict[str, float]] | None:
        """The Bayes ceiling per condition (``accuracy``, or ``mse`` for regression) on this split
        under these masks: closed form for the latent generator, Monte Carlo (with
        ``accuracy_se``) for the plain one, whose class means are a random draw."""
        if self.latent is None:
            frames = frame_counts(split, [s.name for s in self.modalities])
            out = {}
            for name, mask in masks.items():
                p, se = mc_bayes_accuracy(self.centres, self.noise, split.target, mask.cpu(), frames, self.MC_DRAWS)
                out[name] = {"accuracy": p, "accuracy_se": se}
            return out
        frames = frame_counts(split, [s.name for s in self.modalities])
        metric = "mse" if self.latent.regression else "accuracy"
        return {name: {metric: float(per_sample(self.latent, mask.cpu(), frames).mean())} for name, mask in masks.items()}

    def input_transform(self) -> InputTransform:
        """Drawn directly in the model's input space: nothing to apply."""
        return InputTransform.identity()

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


def _splits_of(features: dict[str, Tensor], lengths: dict[str, Tensor], target: Tensor, split_of: Tensor) -> dict[str, SplitData]:
    """The rows of each split (``split_of`` holds each sample's index into ``SPLITS``); a sample's
    id is its row in the whole draw."""
    ids = torch.arange(len(target), dtype=torch.int64)
    out = {}
    for code, name in enumerate(SPLITS):
        rows = torch.nonzero(split_of == code).squeeze(1)
        out[name] = SplitData(
            features={k: v.index_select(0, rows) for k, v in features.items()},
            lengths={k: v.index_select(0, rows) for k, v in lengths.items()},
            target=target.index_select(0, rows),
            ids=ids.index_select(0, rows),
        )
    return out


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


def _lows(specs: list[ModalitySpec], min_lens: list[int] | None) -> list[int]:
    """Shortest sequence per modality: ``min_lens``, or a third of the padded length."""
    if min_lens is not None:
        return list(min_lens)
    return [max(1, (s.max_len or 1) // 3) for s in specs]


def _draw_features(
    target: Tensor,
    strengths: Tensor,
    classes: int,
    specs: list[ModalitySpec],
    lows: list[int],
    noise: float,
    gen: torch.Generator,
    duration: Tensor | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], list[Tensor]]:
    """Features (and lengths for sequences) for every sample, one modality at a time, and each
    modality's scaled class means ``[C, D]`` (the Monte Carlo ceiling needs them).

    ``duration [N]`` in [0, 1), when given, sets every modality's length to the same quantile of
    its range instead of an independent draw."""
    n = target.shape[0]
    features: dict[str, Tensor] = {}
    lengths: dict[str, Tensor] = {}
    centres: list[Tensor] = []
    for m, spec in enumerate(specs):
        means = torch.randn(classes, spec.dim, generator=gen)
        means = means / means.norm(dim=1, keepdim=True).clamp(min=1e-12)  # unit vectors
        centres.append(strengths[m] * means)
        centre = strengths[m] * means[target]  # [N, D]
        if not spec.sequence:
            features[spec.name] = centre + noise * torch.randn(n, spec.dim, generator=gen)
            continue
        max_len = int(spec.max_len or 1)
        if duration is None:
            length = torch.randint(lows[m], max_len + 1, (n,), generator=gen)
        else:
            length = lows[m] + (duration * (max_len - lows[m] + 1)).long().clamp(max=max_len - lows[m])
        frames = centre.unsqueeze(1) + noise * torch.randn(n, max_len, spec.dim, generator=gen)
        valid = length_mask(length, max_len).unsqueeze(-1)
        features[spec.name] = torch.where(valid, frames, 0.0)  # the class signal lives in valid frames only
        lengths[spec.name] = length
    return features, lengths, centres
