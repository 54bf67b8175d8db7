"""The pattern distribution's numerics: which of the 2^M presence patterns a missingness protocol
allows, and the probabilities that meet its per-modality rates exactly.

Split from ``mmcore.missing`` (which owns the spec, its checks and the masks) because this is
pure numpy on pattern tables and is shared with ``mmcore.mechanisms``, which fits the same
exponential family per sample. Patterns are rows of ``all_patterns``: bit j of the row index is
modality j present; that order is part of the reproducibility contract of the masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmcore.errors import MMCoreError


def all_patterns(m: int) -> np.ndarray:
    """All 2^m patterns; row c has modality j present iff bit j of c is set (the fixed order)."""
    codes = np.arange(2**m, dtype=np.int64)
    return ((codes[:, None] >> np.arange(m)) & 1).astype(bool)


def sample_rate_probs(x: np.ndarray, eta: float, k: int) -> np.ndarray:
    """CPM-Net/GCNet protocol: complete with prob. 1-η, else uniform over proper patterns with >= k present."""
    count = x.sum(1)
    full = count == x.shape[1]
    incomplete = (count >= k) & ~full
    if eta > 0 and not incomplete.any():
        raise MMCoreError(
            f"sample_rate={eta} is infeasible: with {x.shape[1]} modality(ies) and min_present={k} "
            f"no pattern is incomplete"
        )
    probs = np.zeros(len(x))
    probs[full] = 1.0 - eta
    if incomplete.any():
        probs[incomplete] = eta / incomplete.sum()
    return probs


def calibration_support(x: np.ndarray, rates: np.ndarray, k: int, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The allowed patterns (bool ``[P]``), the free modalities (bool ``[M]``) and the target
    presence probabilities ``1 - rates``, or the one-line error of infeasible rates.

    Rates of exactly 0 or 1 pin a modality: it is never free and never enters a fit. On the
    feasibility boundary (the free presences sum to exactly what ``min_present`` still needs)
    only patterns with exactly ``k`` present stay allowed.
    """
    t = 1.0 - rates  # target presence probabilities
    always, never = t >= 1.0, t <= 0.0
    free = ~always & ~never
    count = x.sum(1)
    k_free = k - int(always.sum())  # presences the free modalities must still supply
    free_sum = float(t[free].sum())
    if free_sum < k_free - 1e-12:
        raise MMCoreError(
            f"missing rates {format_rates(names, rates)} are infeasible with min_present={k}: they sum to "
            f"{rates.sum():.10g} but at most {x.shape[1] - k} of {x.shape[1]} modalities can be missing per sample"
        )
    allowed = x[:, always].all(1) & ~x[:, never].any(1) & (count >= k)
    if k_free > 0 and abs(free_sum - k_free) <= 1e-12:  # boundary: every sample has exactly k present
        allowed &= count == k
    return allowed, free, t


def calibrated_probs(x: np.ndarray, rates: np.ndarray, k: int, names: Sequence[str]) -> np.ndarray:
    """Independent Bernoulli presence conditioned on >= k present, calibrated to the exact rates.

    The family p(x) ∝ exp(θ·x) on the allowed patterns is the conditioned Bernoulli(sigmoid θ);
    the θ whose marginals P(x_m = 1) equal 1 - r_m is the fixed point of the moment equations,
    found here by damped Newton steps on the convex dual (log Z(θ) - θ·t).
    """
    allowed, free, t = calibration_support(x, rates, k, names)
    xf = x[allowed][:, free].astype(np.float64)
    theta = fit_natural_params(xf, t[free])
    probs = np.zeros(len(x))
    probs[allowed] = _softmax(xf @ theta)
    err = np.abs(probs @ x - t).max()
    if not err <= 1e-9:
        raise MMCoreError(
            f"could not calibrate missing rates {format_rates(names, rates)} with min_present={k} "
            f"(marginal error {err:.2g}); the rates are too close to infeasible"
        )
    return probs


def fit_natural_params(xf: np.ndarray, target: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Solve E_θ[x] = target for p(x) ∝ exp(θ·x) over the rows of ``xf`` (damped Newton)."""
    with np.errstate(divide="ignore"):
        theta = np.log(target) - np.log1p(-target)  # exact when the count constraint is inactive
    if xf.shape[1] == 0:
        return theta

    def dual(th: np.ndarray) -> float:
        s = xf @ th
        return float(s.max() + np.log(np.exp(s - s.max()).sum()) - th @ target)

    for _ in range(max_iter):
        p = _softmax(xf @ theta)
        mean = p @ xf
        grad = mean - target
        if np.abs(grad).max() < 1e-13:
            break
        hess = (xf * p[:, None]).T @ xf - np.outer(mean, mean)
        step_dir = np.linalg.lstsq(hess, -grad, rcond=None)[0]  # H is singular on the boundary face
        f0, slope, step = dual(theta), float(grad @ step_dir), 1.0
        while step > 1e-12 and dual(theta + step * step_dir) > f0 + 1e-4 * step * slope + 1e-15 * abs(f0):
            step /= 2
        theta = theta + step * step_dir
    return theta


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max())
    return e / e.sum()


def format_rates(names: Sequence[str], rates: np.ndarray) -> str:
    return "{" + ", ".join(f"{n}: {r:.10g}" for n, r in zip(names, rates)) + "}"
