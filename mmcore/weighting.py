"""Scale a balancer's fixed weights to a stated total, so that ablations compare like with like.

Balancers put different total weight on their target group: ``mmcore.uniform`` gives every
modality 1 (mean 1, ‖w‖₂ = √M), ``baselines.inverse_rate`` normalises to mean 1, and
``redcore.relative_advantage`` keeps β on the unit sphere (‖β‖₂ = 1, i.e. 1/√M per modality when
equal). A comparison of "how the weight is shared" is confounded by "how much weight there is"
unless the arms are put at the same scale; these two options do that:

- ``norm: mean`` — the weights' mean equals ``total`` (default 1: uniform's weights are all 1);
- ``norm: l2``   — their Euclidean norm equals ``total`` (default 1: relative advantage's scale,
  so ``mmcore.uniform`` at ``norm: l2`` is the constant β = 1/√M).

The direction of the weight vector never changes; only its length does.
"""

from __future__ import annotations

import math
from typing import Literal

from mmcore.errors import MMCoreError

Norm = Literal["mean", "l2"]
NORMS: tuple[str, ...] = ("mean", "l2")


def scale_weights(values: list[float], norm: Norm = "mean", total: float = 1.0) -> list[float]:
    """``values`` rescaled so that their ``norm`` (mean or Euclidean length) equals ``total``.

    The values must be non-negative with a positive norm (a weight vector of zeros has no
    direction to keep); ``total`` must be positive and finite.
    """
    if norm not in NORMS:
        raise MMCoreError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not (math.isfinite(total) and total > 0):
        raise MMCoreError(f"total must be a positive finite number, got {total}")
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise MMCoreError(f"weights must be a non-empty list of non-negative finite numbers, got {values}")
    size = sum(values) / len(values) if norm == "mean" else math.sqrt(sum(v * v for v in values))
    if size <= 0:
        raise MMCoreError(f"weights {values} are all zero; they have no direction to scale")
    return [total * v / size for v in values]
