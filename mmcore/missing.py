"""Missingness masks: which modalities each sample has, at training and at evaluation time.

Why it is built this way:
- A training mask is a pure function of (seed, sample id, spec) -- and of the epoch under
  ``policy: resample`` -- so a sample keeps its pattern across epochs and runs, and the mask of
  an id never depends on batch composition or order. The randomness is a counter-based hash
  (splitmix64), not torch's global RNG, which other code is free to consume.
- Each sample's whole pattern is drawn from an explicit categorical distribution over the 2^M
  patterns, by inverse CDF with one uniform per sample. The distribution is calibrated so that
  the realised per-modality missing rates equal the requested ones *after* the ``min_present``
  constraint -- naive "drop independently, then repair empty samples" lowers the realised rates.
- Masks are bool ``[N, M]``, True = present, modality order as given.
- A row's unusable modalities (``SplitData.unusable``: non-finite features under
  ``data.nonfinite: absent``, fully dropped frames, or marked by the dataset) count as absent
  *before* its pattern is drawn, so the draw hides usable modalities only and ``min_present``
  holds among them: the row draws from the same protocol restricted to its usable modalities
  (the same natural parameters θ under per-modality rates, the same η under ``sample_rate``),
  with ``min_present`` lowered to the number of usable modalities (rate-1 ones aside) when
  fewer remain -- then all of them are kept. Rows with every modality usable draw exactly as
  if no row were unusable (same uniform, same distribution, bit for bit), so the rates are
  calibrated on them alone and unusable rows come on top: over the split modality m is missing
  about u_m + (1 - u_m)·r_m of the time, u_m its unusable fraction, or less where
  ``min_present`` binds on rows with fewer usable modalities (they keep more of them: at rates
  0.3 and ``min_present: 2`` a modality never unusable is missing 0.21 of a split with 30% such
  rows); ``realised_rates`` of the final masks is the exact figure.

The hashing and the distribution run in numpy on the host; compute a split's masks once (per
epoch under ``resample``) and index-select them on the device rather than calling per batch.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.patterns import all_patterns, calibrated_probs, calibration_support, fit_natural_params, sample_rate_probs
from mmcore.registry import did_you_mean

if TYPE_CHECKING:
    from mmcore.types import SplitData

MAX_MODALITIES = 16  # 2^16 patterns is still a small dense table
STREAM_TRAIN = 0x7472  # hash streams keep training and evaluation draws independent
STREAM_EVAL = 0x6576
_MASK64 = (1 << 64) - 1

# --------------------------------------------------------------------------- hashing


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """One splitmix64 step (Steele, Lea & Flood 2014; constants from Vigna's reference code).

    numpy uint64 arithmetic wraps modulo 2^64 by definition, which is what the mixer needs.
    """
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_uniform(seed: int, ids: Tensor, stream: int, epoch: int = 0) -> Tensor:
    """Uniforms in [0, 1), one per id, fixed by (seed, stream, epoch, id) alone.

    Each key part is folded in with xor then a bijective mix, so for fixed (seed, stream, epoch)
    distinct ids give distinct 64-bit states. Returns float64 on the CPU (not every accelerator
    has float64, and the uniforms only feed the host-side inverse CDF).
    """
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise MMCoreError(f"sample ids must be a 1-D integer tensor, got {_describe(ids)}")
    raw = ids.detach().to("cpu", torch.int64).numpy().view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(raw.shape, int(seed) & _MASK64, dtype=np.uint64)
        h = _splitmix64(h)
        h = _splitmix64(h ^ np.uint64(int(stream) & _MASK64))
        h = _splitmix64(h ^ np.uint64(int(epoch) & _MASK64))
        h = _splitmix64(h ^ raw)
    # The top 53 bits give every double in [0, 1) on a 2^-53 grid.
    return torch.from_numpy((h >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"{type(x).__name__}"


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class MissingSpec:
    """How often modalities are missing: per-modality rates, or a sample-level rate η."""

    rates: dict[str, float] = field(default_factory=dict)  # modality -> missing rate; unnamed: 0
    sample_rate: float | None = None  # η of CPM-Net/GCNet: P(sample is incomplete)
    policy: Literal["fixed", "resample"] = "fixed"  # fixed: a sample keeps its pattern every epoch
    min_present: int = 1  # every sample keeps at least this many modalities
    # mcar: independent of the data (Rubin 1976); mar / mnar: depends on the data (mmcore.mechanisms)
    mechanism: Literal["mcar", "mar", "mnar"] = "mcar"
    depends_on: str | None = None  # mar: an always-present modality; mnar: "self" (default) or "label"
    strength: float = 2.0  # mar / mnar: log-odds of missing per standard deviation of the driver

    def __post_init__(self) -> None:
        """The cross-field invariants. Each field's type and range is checked one level up, by the
        recipe schema (``mmcore.recipe.schema.MaskSpec``), before a spec is made from a recipe."""
        object.__setattr__(self, "rates", {str(k): float(v) for k, v in self.rates.items()})
        if self.sample_rate is not None:
            if self.rates:
                raise MMCoreError(
                    f"give either per-modality 'rates' or a 'sample_rate', not both "
                    f"(rates={self.rates}, sample_rate={self.sample_rate})"
                )
            object.__setattr__(self, "sample_rate", float(self.sample_rate))
        _check_mechanism(self)

    def __hash__(self) -> int:  # rates is a dict; hash its sorted items (used to cache distributions)
        rates = tuple(sorted(self.rates.items()))
        return hash((rates, self.sample_rate, self.policy, self.min_present, self.mechanism, self.depends_on, self.strength))


MNAR_DRIVERS = ("self", "label")


def _check_mechanism(spec: MissingSpec) -> None:
    """The mechanism against the other fields; which modalities exist is checked later, in ``_check_names``."""
    object.__setattr__(spec, "strength", float(spec.strength))
    if spec.mechanism == "mcar":
        if spec.depends_on is not None:
            raise MMCoreError(f"depends_on={spec.depends_on!r} needs mechanism 'mar' or 'mnar'; mcar depends on nothing")
        return
    if spec.sample_rate is not None:
        raise MMCoreError(f"mechanism '{spec.mechanism}' needs per-modality 'rates', not a 'sample_rate'")
    if spec.mechanism == "mar" and not isinstance(spec.depends_on, str):
        raise MMCoreError("mechanism 'mar' needs depends_on: the always-present modality whose features drive the missingness")
    if spec.mechanism == "mnar":
        driver = "self" if spec.depends_on is None else spec.depends_on
        if driver not in MNAR_DRIVERS:
            hint = did_you_mean(str(driver), list(MNAR_DRIVERS))
            raise MMCoreError(f"mechanism 'mnar': depends_on must be 'self' or 'label', got {driver!r};{hint}")
        object.__setattr__(spec, "depends_on", driver)


def check_keys(node: Mapping, allowed: Sequence[str], where: str) -> None:
    """Unknown keys of a recipe mapping are errors with a did-you-mean."""
    for key in node:
        if key not in allowed:
            hint = did_you_mean(str(key), list(allowed))
            raise MMCoreError(f"{where}: unknown key '{key}';{hint} expected: {', '.join(allowed)}")


MECHANISM_KEYS = ("mechanism", "depends_on", "strength")
SPEC_KEYS = ("rates", "sample_rate", "policy", "min_present", *MECHANISM_KEYS)


def parse_spec(node: Any, where: str = "missing.train", keys: Sequence[str] = SPEC_KEYS) -> MissingSpec:
    """A ``MissingSpec`` from a recipe mapping; unknown keys are errors with a did-you-mean."""
    if not isinstance(node, Mapping):
        raise MMCoreError(f"{where}: expected a mapping with {', '.join(keys)}, got {_describe(node)}")
    check_keys(node, keys, where)
    try:
        return MissingSpec(**dict(node))
    except MMCoreError as err:
        raise MMCoreError(f"{where}: {err}") from None


# --------------------------------------------------------------------------- pattern distribution


def _check_names(spec: MissingSpec, modalities: Sequence[str]) -> None:
    if len(modalities) == 0 or len(modalities) > MAX_MODALITIES:
        raise MMCoreError(f"missingness supports 1 to {MAX_MODALITIES} modalities, got {len(modalities)}")
    if len(set(modalities)) != len(modalities):
        raise MMCoreError(f"modality names must be unique, got {list(modalities)}")
    for name in spec.rates:
        if name not in modalities:
            raise MMCoreError(
                f"missing rate for unknown modality '{name}';{did_you_mean(name, list(modalities))} "
                f"available: {', '.join(modalities)}"
            )
    if spec.min_present > len(modalities):
        raise MMCoreError(f"min_present={spec.min_present} exceeds the {len(modalities)} modalities")
    if spec.mechanism == "mar":
        driver = str(spec.depends_on)
        if driver not in modalities:
            raise MMCoreError(
                f"mechanism 'mar': depends_on names unknown modality '{driver}';"
                f"{did_you_mean(driver, list(modalities))} available: {', '.join(modalities)}"
            )
        if spec.rates.get(driver, 0.0) > 0.0:
            raise MMCoreError(
                f"mechanism 'mar': the driver '{driver}' must be always present (rate 0), "
                f"got rate {spec.rates[driver]}; under mar missingness depends on observed data only"
            )


@functools.lru_cache(maxsize=64)
def _distribution(spec: MissingSpec, modalities: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    _check_names(spec, modalities)
    x = all_patterns(len(modalities))
    if spec.sample_rate is not None:
        probs = sample_rate_probs(x, spec.sample_rate, spec.min_present)
    else:
        rates = np.array([spec.rates.get(n, 0.0) for n in modalities], dtype=np.float64)
        probs = calibrated_probs(x, rates, spec.min_present, modalities)
    support = probs > 0
    patterns, probs = x[support], probs[support] / probs[support].sum()
    patterns.flags.writeable = False
    probs.flags.writeable = False
    return patterns, probs


def pattern_distribution(spec: MissingSpec, modalities: Sequence[str]) -> tuple[Tensor, Tensor]:
    """The support of the pattern distribution (bool ``[P, M]``) and its probabilities (float64 ``[P]``).

    Patterns keep the enumeration order of ``all_patterns`` (bit j of the row index = modality
    j present); that order is part of the reproducibility contract of the masks. Under mar /
    mnar each sample has its own distribution (``mmcore.mechanisms``); this is then the mcar
    distribution with the same per-modality marginals, which the population shares.
    """
    patterns, probs = _distribution(spec, tuple(modalities))
    return torch.from_numpy(patterns.copy()), torch.from_numpy(probs.copy())


def marginal_rates(spec: MissingSpec, modalities: Sequence[str]) -> dict[str, float]:
    """The realised probability that a sample lacks each modality, whatever the protocol
    (per-modality rates after ``min_present``, or the sample-level η protocol)."""
    patterns, probs = _distribution(spec, tuple(modalities))
    absent = (~patterns).astype(np.float64) * probs.reshape(-1, 1)
    return {m: float(absent[:, i].sum()) for i, m in enumerate(modalities)}


def check_spec(spec: MissingSpec, modalities: Sequence[str]) -> None:
    """Raise the one-line error of an unknown modality, too large ``min_present`` or infeasible rates."""
    _distribution(spec, tuple(modalities))


def _inverse_cdf(patterns: np.ndarray, probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(probs)
    cdf[-1] = 1.0  # u < 1, so every draw lands inside the support despite rounding
    index = np.searchsorted(cdf, u, side="right")
    return patterns[np.minimum(index, len(cdf) - 1)]


def draw_masks(spec: MissingSpec, modalities: Sequence[str], u: Tensor, usable: np.ndarray | None = None) -> Tensor:
    """Masks bool ``[N, M]`` from one uniform per sample, by inverse CDF over the patterns.

    ``usable`` (bool ``[N, M]``, from ``usable_rows``) redraws the rows lacking some modality
    from the protocol restricted to their usable ones (module docstring); the other rows keep
    the plain draw, so their masks do not depend on whether any row is unusable."""
    patterns, probs = _distribution(spec, tuple(modalities))
    out = _inverse_cdf(patterns, probs, u.numpy())
    if usable is None:
        return torch.from_numpy(out)
    for key, rows in unusable_groups(usable):
        own, own_probs = _usable_distribution(spec, tuple(modalities), key)
        out[rows] = _inverse_cdf(own, own_probs, u.numpy()[rows])
    return torch.from_numpy(out)


def usable_rows(split: SplitData | None, n: int, num_modalities: int) -> np.ndarray | None:
    """The split's usable modalities, bool ``[N, M]`` on the host, or None when every row has all."""
    unusable = getattr(split, "unusable", None)
    if unusable is None:
        return None
    if tuple(unusable.shape) != (n, num_modalities):
        raise MMCoreError(
            f"the split's unusable mask has shape {tuple(unusable.shape)}, expected ({n}, {num_modalities}) for its rows and modalities"
        )
    usable = ~unusable.detach().to("cpu", torch.bool).numpy()
    return None if usable.all() else usable


def unusable_groups(usable: np.ndarray) -> list[tuple[tuple[bool, ...], np.ndarray]]:
    """The rows lacking some modality, grouped by which modalities they have (at most 2^M - 1 groups)."""
    lacking = np.flatnonzero(~usable.all(1))
    keys, inverse = np.unique(usable[lacking], axis=0, return_inverse=True)
    return [(tuple(bool(b) for b in key), lacking[inverse.reshape(-1) == g]) for g, key in enumerate(keys)]


@functools.lru_cache(maxsize=64)
def _natural_params(spec: MissingSpec, modalities: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """θ of the calibrated family (the fit ``calibrated_probs`` makes) and the free modalities it
    covers, for rows that draw from that family restricted to their usable modalities."""
    _distribution(spec, modalities)  # the checks and the calibration error, first
    x = all_patterns(len(modalities))
    rates = np.array([spec.rates.get(n, 0.0) for n in modalities], dtype=np.float64)
    allowed, free, t = calibration_support(x, rates, spec.min_present, modalities)
    return fit_natural_params(x[allowed][:, free].astype(np.float64), t[free]), free


def usable_support(spec: MissingSpec, modalities: Sequence[str], usable: Sequence[bool]) -> np.ndarray:
    """Which of the 2^M patterns a row with these usable modalities may take under per-modality
    rates: no unusable one, the rate-0 ones it has, no rate-1 one, and at least
    min(min_present, its usable modalities that are not rate 1) present -- exactly that many
    where the rates sit on the feasibility boundary (every allowed pattern has min_present)."""
    x = all_patterns(len(modalities))
    have = np.array(usable, dtype=bool)
    rates = np.array([spec.rates.get(n, 0.0) for n in modalities], dtype=np.float64)
    allowed = calibration_support(x, rates, spec.min_present, modalities)[0]
    always, never = rates <= 0.0, rates >= 1.0
    k = min(spec.min_present, int((have & ~never).sum()))
    count = x.sum(1)
    support = ~x[:, ~have].any(1) & x[:, always & have].all(1) & ~x[:, never].any(1) & (count >= k)
    if (x[allowed].sum(1) == spec.min_present).all():  # the boundary: exactly min_present each
        support &= count == k
    return support


@functools.lru_cache(maxsize=256)
def _usable_distribution(spec: MissingSpec, modalities: tuple[str, ...], usable: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The pattern distribution of a row that has only the ``usable`` modalities."""
    x = all_patterns(len(modalities))
    if spec.sample_rate is not None:
        probs = _sample_rate_within(x, np.array(usable, dtype=bool), spec.sample_rate, spec.min_present)
    else:
        theta, free = _natural_params(spec, modalities)
        support = usable_support(spec, modalities, usable)
        logits = x[support][:, free].astype(np.float64) @ theta
        probs = np.zeros(len(x))
        probs[support] = np.exp(logits - logits.max())
    keep = probs > 0
    return x[keep], probs[keep] / probs[keep].sum()


def _sample_rate_within(x: np.ndarray, have: np.ndarray, eta: float, k: int) -> np.ndarray:
    """The η protocol on a row's usable modalities: all of them with probability 1 - η, else one
    of their proper subsets with at least min(k, usable) present, each equally likely; all of
    them when there is no such subset."""
    inside, count, s = ~x[:, ~have].any(1), x.sum(1), int(have.sum())
    full = inside & (count == s)
    incomplete = inside & (count >= min(k, s)) & (count < s)
    probs = np.zeros(len(x))
    if not incomplete.any():
        probs[full] = 1.0
        return probs
    probs[full] = 1.0 - eta
    probs[incomplete] = eta / incomplete.sum()
    return probs


def spec_masks(spec: MissingSpec, modalities: Sequence[str], u: Tensor, split: SplitData | None) -> Tensor:
    """Masks bool ``[N, M]`` (on the CPU) from one uniform per sample: ``draw_masks`` under mcar,
    the data-dependent draw of ``mmcore.mechanisms`` under mar / mnar, which reads ``split``.
    The split's unusable modalities are absent, and ``min_present`` holds among the usable ones."""
    if spec.mechanism == "mcar":
        return draw_masks(spec, modalities, u, usable_rows(split, len(u), len(modalities)))
    from mmcore.mechanisms import draw_dependent  # it builds on this module

    if split is None:
        raise MMCoreError(f"mechanism '{spec.mechanism}' draws masks from the data: pass the split")
    return draw_dependent(spec, modalities, u, split)


def train_masks(
    spec: MissingSpec, modalities: list[str], ids: Tensor, seed: int, epoch: int = 0, split: SplitData | None = None
) -> Tensor:
    """Presence masks bool ``[N, M]`` for training, on the ids' device.

    Under ``policy: fixed`` the epoch is ignored: a sample's pattern is its own, every epoch.
    ``policy: resample`` redraws per epoch (what the RedCore reference code does in effect).
    Under mar / mnar a mask also depends on the split's data (``ids`` are then the split's ids).
    With a split whose rows have unusable modalities, those are absent and the rows' draws keep
    ``min_present`` among the usable ones (module docstring); ``ids`` are then the split's ids.
    """
    draw_epoch = epoch if spec.policy == "resample" else 0
    u = hash_uniform(seed, ids, STREAM_TRAIN, draw_epoch)
    return spec_masks(spec, modalities, u, split).to(ids.device)


# --------------------------------------------------------------------------- reporting


def mask_hash(mask: Tensor) -> str:
    """sha256 over the shape and the bool bytes, so the manifest pins the exact masks used."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise MMCoreError(f"mask_hash expects a bool tensor, got {_describe(mask)}")
    h = hashlib.sha256(("bool" + str(tuple(mask.shape))).encode())
    h.update(mask.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def realised_rates(mask: Tensor) -> list[float]:
    """The fraction of samples missing each modality (one host sync)."""
    if not isinstance(mask, Tensor) or mask.dim() != 2 or mask.shape[0] == 0:
        raise MMCoreError(f"realised_rates expects a non-empty [N, M] mask, got {_describe(mask)}")
    n = int(mask.shape[0])
    return [1.0 - c / n for c in mask.sum(0).tolist()]
