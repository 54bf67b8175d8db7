"""Missingness that depends on the data: the ``mar`` and ``mnar`` mechanisms of a missing spec.

Definitions (Rubin 1976, "Inference and missing data", Biometrika 63(3):581-592; Little & Rubin,
"Statistical Analysis with Missing Data", 3rd ed. 2019, §1.3). With R a sample's presence
pattern, X_obs / X_mis the features it keeps / loses and Y its label:

- ``mcar``: P(R | X, Y) = P(R), the pattern depends on nothing (``mmcore.missing``);
- ``mar``: P(R | X, Y) = P(R | X_obs), it depends on observed data only -- here the features of a
  modality that is always present (``depends_on: <modality>``, whose rate must be 0);
- ``mnar``: anything else -- here a modality's own features (``depends_on: self``) or the label
  (``depends_on: label``; the label is observed when training, but never at prediction time,
  which is where the missingness has to be modelled, so it is filed under mnar).

How the drop depends on the driver (ours, patterned on the weighted-sum-score amputation of
mice's ``ampute``: Schouten, Lugtig & Vink 2018, "Generating missing values for simulation
purposes: a multivariate amputation procedure", J. Stat. Comput. Simul. 88(15):2909-2930). A
driver's features are standardised per feature over the split, averaged with equal weights
(ampute's default weights) and the resulting score standardised again: s_i has mean 0 and
variance 1 over the split. Sample i's pattern then follows the exponential family of
``mmcore.missing`` (independent presences conditioned on ``min_present``) with presence
parameters θ_m - β·s_im, β = ``strength`` (log-odds of missing per standard deviation, larger
driver = more often missing; negative flips it). θ is fitted so that the mean over the split
of every sample's P_i(m missing) equals the requested rate r_m exactly -- ampute finds its
logistic shift by binary search for the same purpose. A label driver is the standardised class
index (classification) or target (regression).

How this differs from the field's practice, so numbers are compared knowingly:
- iMML's ``Amputer`` (ocbe-uio/imml, ``imml/ampute/amputer.py``): its ``mnar`` draws how many
  modalities a sample loses (with given weights) and which, from the random generator alone; the
  patterns are structured but independent of the data. Ours reads the data.
- ICYM2I (Choi, Jeanselme, Elias & Joshi, arXiv 2505.16953) studies missingness associated with
  the label and other modalities under the MAR assumption and corrects for it by inverse
  probability weighting; we generate such masks, we do not correct for them.
- ampute works on patterns with per-pattern frequencies; we keep mmcore's per-modality rates,
  exact in expectation (as under mcar the realised fraction is binomial around them), and
  ``min_present``.

A mask stays a pure function of (seed, sample id, spec) given the split's data: the uniform is
the id's hash, and the standardisation and θ depend on the split as a set, never on row order
or batching. It is a function of the whole split, so subsetting the split changes it.

Rows with unusable modalities (``SplitData.unusable``) follow ``mmcore.missing``'s rule: θ is
fitted as if every row were whole, so the other rows' masks do not change, and such a row draws
from its own family restricted to its usable modalities, keeping min(``min_present``, usable).
Under ``mar`` a row whose driver itself is unusable has no observed driver: its features are a
fill (zeros under ``data.nonfinite: absent``), and P(R | X_obs) may not read them. Such a row
draws as under ``mcar`` with the same rates (``mmcore.missing.draw_masks``, restricted to its
usable modalities): the unconditional distribution, the same for any fill. The split's driver
statistics and θ stay as if every row were whole, so rows with a usable driver keep their masks
bit for bit -- and, as before, still see the fill through those split-wide statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.missing import MissingSpec, check_spec, draw_masks, unusable_groups, usable_rows, usable_support
from mmcore.patterns import all_patterns, calibration_support, fit_natural_params, format_rates
from mmcore.types import SplitData


def standardise(v: np.ndarray) -> np.ndarray:
    """Mean 0, variance 1 over the split; a constant driver gives zeros (mcar in effect)."""
    c = v - v.mean()
    sd = float(np.sqrt((c * c).mean())) if c.size else 0.0
    return c / sd if sd > 1e-12 else np.zeros_like(c)


def feature_score(split: SplitData, name: str) -> np.ndarray:
    """ampute's equal-weight sum score of a modality's standardised features, standardised.

    Sequence modalities average over their valid frames (padding never counts).
    """
    x = split.features[name].detach().to("cpu", torch.float64)
    if x.dim() == 3:
        t = x.shape[1]
        valid = torch.arange(t)[None, :] < split.lengths[name].detach().cpu()[:, None]  # [N, T]
        frames = x[valid]  # [frames, D]
        if len(frames) == 0:  # no valid frame in the whole split: no driver (torch would warn, then give NaN)
            return np.zeros(len(x))
        mean, sd = frames.mean(0), frames.std(0, unbiased=False)
        z = (x - mean) / torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        z = z * valid[..., None]
        per_sample = z.sum((1, 2)) / (valid.sum(1).clamp(min=1) * x.shape[2])
    else:
        mean, sd = x.mean(0), x.std(0, unbiased=False)
        per_sample = ((x - mean) / torch.where(sd > 1e-12, sd, torch.ones_like(sd))).mean(1)
    return standardise(per_sample.numpy())


def driver_scores(spec: MissingSpec, modalities: Sequence[str], split: SplitData) -> np.ndarray:
    """Standardised driver score per sample and modality, float64 ``[N, M]``."""
    n, m = len(split), len(modalities)
    if spec.depends_on == "label":
        column = standardise(split.target.detach().to("cpu", torch.float64).numpy())
    elif spec.mechanism == "mar":
        column = feature_score(split, str(spec.depends_on))
    else:  # mnar on each modality's own features
        return np.stack([feature_score(split, name) for name in modalities], axis=1).reshape(n, m)
    return np.repeat(column.reshape(n, 1), m, axis=1)


def _rows_softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _fit_shared(xf: np.ndarray, shift: np.ndarray, target: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """θ with mean_i E_{θ + shift_i}[x] = target: damped Newton on the convex dual
    mean_i log Z_i(θ) - θ·target, started from the mcar solution (exact when shift is 0)."""
    theta = fit_natural_params(xf, target)
    if xf.shape[1] == 0:
        return theta
    offset = shift @ xf.T  # [N, P]: each sample's fixed log-weight of each pattern

    def dual(th: np.ndarray) -> float:
        s = offset + xf @ th
        top = s.max(1, keepdims=True)
        return float((top[:, 0] + np.log(np.exp(s - top).sum(1))).mean() - th @ target)

    for _ in range(max_iter):
        p = _rows_softmax(offset + xf @ theta)
        mean = p @ xf  # [N, F]
        grad = mean.mean(0) - target
        if np.abs(grad).max() < 1e-13:
            break
        hess = (xf * p.mean(0)[:, None]).T @ xf - mean.T @ mean / len(mean)
        step_dir = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        f0, slope, step = dual(theta), float(grad @ step_dir), 1.0
        while step > 1e-12 and dual(theta + step * step_dir) > f0 + 1e-4 * step * slope + 1e-15 * abs(f0):
            step /= 2
        theta = theta + step * step_dir
    return theta


def sample_distributions(spec: MissingSpec, modalities: Sequence[str], split: SplitData) -> tuple[np.ndarray, np.ndarray]:
    """The allowed patterns (bool ``[P, M]``) and each sample's probabilities over them ``[N, P]``.

    The split-mean of each sample's missing probability equals the spec's rate (checked to 1e-9).
    """
    patterns, probs, _ = _fitted(spec, modalities, split)
    return patterns, probs


def _fitted(spec: MissingSpec, modalities: Sequence[str], split: SplitData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sample_distributions``, and each sample's natural parameters θ + shift_i over all M
    modalities (0 where pinned), which rows with unusable modalities draw from."""
    check_spec(spec, modalities)  # unknown driver, min_present, infeasible rates: one-line errors
    rates = np.array([spec.rates.get(n, 0.0) for n in modalities], dtype=np.float64)
    x = all_patterns(len(modalities))
    allowed, free, t = calibration_support(x, rates, spec.min_present, modalities)
    patterns = x[allowed]
    xf = patterns[:, free].astype(np.float64)
    shift = -spec.strength * driver_scores(spec, modalities, split)[:, free]
    theta = _fit_shared(xf, shift, t[free])
    probs = _rows_softmax(shift @ xf.T + xf @ theta)
    err = np.abs(probs.mean(0) @ patterns - t).max() if len(probs) else 0.0
    if not err <= 1e-9:
        raise MMCoreError(
            f"mechanism '{spec.mechanism}' cannot meet missing rates {format_rates(modalities, rates)} with "
            f"min_present={spec.min_present} and strength={spec.strength} on this split (marginal error {err:.2g})"
        )
    natural = np.zeros((len(probs), len(modalities)))
    natural[:, free] = shift + theta
    return patterns, probs, natural


def _rows_inverse_cdf(patterns: np.ndarray, probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0  # u < 1, so every draw lands inside the support despite rounding
    index = (cdf <= u[:, None]).sum(1)  # searchsorted(side="right") row by row
    return patterns[np.minimum(index, patterns.shape[0] - 1)].copy()


def draw_dependent(spec: MissingSpec, modalities: Sequence[str], u: Tensor, split: SplitData) -> Tensor:
    """Masks bool ``[N, M]`` by inverse CDF over each sample's own pattern distribution; a row
    with unusable modalities over its family restricted to the usable ones, or under mcar when
    the mar driver is one of them (module docstring)."""
    if len(u) != len(split):
        raise MMCoreError(f"mechanism '{spec.mechanism}': {len(u)} uniforms for a split of {len(split)} rows")
    patterns, probs, natural = _fitted(spec, modalities, split)
    if len(probs) == 0:
        return torch.zeros((0, len(modalities)), dtype=torch.bool)
    out = _rows_inverse_cdf(patterns, probs, u.numpy())
    usable = usable_rows(split, len(u), len(modalities))
    if usable is not None:
        x = all_patterns(len(modalities))
        driver = list(modalities).index(spec.depends_on) if spec.mechanism == "mar" else None
        for key, rows in unusable_groups(usable):
            if driver is not None and not key[driver]:  # no observed driver: the unconditional draw
                out[rows] = draw_masks(spec, modalities, u[torch.from_numpy(rows)], usable[rows]).numpy()
                continue
            own = x[usable_support(spec, modalities, key)]
            logits = natural[rows] @ own.T.astype(np.float64)
            out[rows] = _rows_inverse_cdf(own, _rows_softmax(logits), u.numpy()[rows])
    return torch.from_numpy(out)
