"""Modality contributions: exact Shapley values from per-condition results.

A model evaluated under every non-empty subset S of its M modalities gives a cooperative game
v(S) = the metric under condition S. The Shapley value of modality i (Shapley 1953) is its
average marginal gain over all orders in which modalities could be added:

    φ_i = Σ_{S ⊆ N∖{i}} |S|! (M − |S| − 1)! / M! · (v(S ∪ {i}) − v(S))

The values sum to v(N) − v(∅) (efficiency). No model is evaluated with nothing present, so
v(∅) is a baseline the caller states — 0 by default, then the values split the full score;
chance level (e.g. 1/C accuracy) is the other common choice. The values are exact, so every
subset must have been evaluated; with M > 8 that is 255+ conditions and the report says "not
available" rather than estimating. Conditions are named as ``mmcore.conditions`` names them:
present modalities in dataset order joined by ``+`` (``a+v``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

MAX_MODALITIES = 8  # 2^8 − 1 = 255 conditions: beyond that nobody evaluates every subset


@dataclass(frozen=True)
class Contributions:
    """Shapley values per modality, or why there are none."""

    values: dict[str, float] | None  # modality -> φ, in modality order; None when not available
    baseline: float  # v(∅)
    full: float | None  # v(N)
    reason: str | None = None  # why values is None


def _unusable(missing: list[str], diverged: list[str], total: int) -> str:
    """Why the values are missing: subsets not evaluated, and subsets evaluated to NaN or ±inf
    (``"a+v = nan"``, a diverged model), said apart, since the fix differs (evaluate more; look at the run)."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {total} subsets were not evaluated ({_shown(missing)}); "
                     "evaluate with conditions: all")
    if diverged:
        parts.append(f"{len(diverged)} of {total} subsets were evaluated but are not finite ({_shown(diverged)}): "
                     "the model diverged or the metric is undefined there")
    return "; ".join(parts)


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (", …" if len(keys) > 4 else "")


def subset_key(subset: Sequence[str], modalities: Sequence[str]) -> str:
    """The condition name of a subset, in dataset modality order (``mmcore.conditions``)."""
    return "+".join(m for m in modalities if m in subset)


def shapley(results: Mapping[str, float], modalities: Sequence[str], baseline: float = 0.0) -> Contributions:
    """Exact Shapley values of each modality for ``results`` (``condition name -> value``)."""
    modalities = list(modalities)
    m = len(modalities)
    if m == 0 or m > MAX_MODALITIES:
        return Contributions(None, baseline, None, f"not available: exact values need 1 to {MAX_MODALITIES} modalities, got {m}")
    subsets = [subset_key(s, modalities) for k in range(1, m + 1) for s in combinations(modalities, k)]
    missing = [key for key in subsets if key not in results]
    diverged = [f"{key} = {float(results[key])}" for key in subsets
                if key in results and not math.isfinite(float(results[key]))]
    if missing or diverged:
        return Contributions(None, baseline, None, "not available: " + _unusable(missing, diverged, 2**m - 1))

    def v(subset: tuple[str, ...]) -> float:
        return float(results[subset_key(subset, modalities)]) if subset else float(baseline)

    values: dict[str, float] = {}
    for i in modalities:
        others = [x for x in modalities if x != i]
        total = 0.0
        for k in range(m):
            weight = math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m)
            total += weight * sum(v(tuple(s) + (i,)) - v(tuple(s)) for s in combinations(others, k))
        values[i] = total
    return Contributions(values, float(baseline), v(tuple(modalities)))


def modalities_of(conditions: Sequence[str]) -> list[str] | None:
    """The modality order implied by condition names: that of the condition naming the most
    modalities (the full set), or None when no condition is a subset name."""
    parts = [c.split("+") for c in conditions]
    if not parts:
        return None
    best = max(parts, key=len)
    names = set(best)
    if len(names) < len(best) or "" in names:  # "a++" (a modality named "+"): no modality order to read
        return None
    if any(not set(p) <= names for p in parts if len(p) > 1):
        return None
    return best
