"""MissBench's two diagnostics: the Modality Equity Index (MEI) and Modality Learning Index (MLI).

Source: Pham, Nguyen, Le and Nguyen, "MissBench: Benchmarking Multimodal Affective Analysis under
Imbalanced Missing Modalities", arXiv 2603.09874 (2026). The paper defines MEI as how fairly the
modalities contribute across missing-modality configurations, and MLI as optimisation imbalance
measured by comparing modality-specific gradient norms during training, aggregated across
modality-related modules. The text available to us states those two definitions in words but not
their formulas, so the formulas below are our choice, made to fit those words and documented:

- Equity of a non-negative vector c over M modalities: ``equity(c) = 1 − G(c)·M/(M − 1)`` with
  G the Gini coefficient Σ_i Σ_j |c_i − c_j| / (2·M²·mean c). 1 when every modality has the same
  share, 0 when one modality has all of it; rescaling c changes nothing.
- MEI: c_m = max(0, mean metric over evaluated conditions containing m − mean over evaluated
  conditions lacking m), the main effect of having m, over the non-empty conditions
  (``mmcore.conditions`` names: present modalities joined by ``+``). MEI = equity(c).
  A model that ignores a modality has c_m ≈ 0, so MEI falls. For an error metric (MAE, MSE;
  ``METRICS_DIRECTION`` "min") c_m is the drop in error, mean without m − mean with m. (Exact Shapley values,
  ``mmcore.shapley``, need a v(∅) no model is evaluated on; the main effect does not.)
- MLI: g_m = mean over logging steps of modality m's encoder gradient norm (``grad_norm.<m>``
  in ``metrics.jsonl``; mmcore's modality-related module is the encoder). MLI = equity(g).

Both are None where undefined: fewer than two modalities, no condition lacking or containing a
modality, a condition's score NaN (a NaN prediction; every modality's contribution reads it),
every contribution 0, or no gradient norm recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from torch import Tensor


def equity(values: Sequence[float]) -> float | None:
    """1 − normalised Gini of non-negative ``values``: 1 equal shares, 0 one holds everything."""
    m = len(values)
    if m < 2 or any(not math.isfinite(v) or v < 0 for v in values):
        return None
    total = sum(values)
    if total <= 0:
        return None
    gini = sum(abs(a - b) for a in values for b in values) / (2 * m * total)
    return 1.0 - gini * m / (m - 1)


def contributions(scores: Mapping[str, float], modalities: Sequence[str], lower_is_better: bool = False) -> dict[str, float] | None:
    """Per modality: mean score of conditions with it − mean of conditions without it (clamped at
    0); for an error metric (MAE, MSE) the sign is turned, so that helping is positive there too."""
    sign = -1.0 if lower_is_better else 1.0
    out = {}
    for m in modalities:
        with_m = [v for k, v in scores.items() if m in k.split("+")]
        without = [v for k, v in scores.items() if m not in k.split("+")]
        if not with_m or not without:
            return None
        out[m] = max(0.0, sign * (sum(with_m) / len(with_m) - sum(without) / len(without)))
    return out


def mei(scores: Mapping[str, float], modalities: Sequence[str], lower_is_better: bool = False) -> float | None:
    """Modality Equity Index from test scores by condition (only the modality subsets are read)."""
    subsets = {k: float(v) for k, v in scores.items() if k and set(k.split("+")) <= set(modalities)}
    if any(math.isnan(v) for v in subsets.values()):  # said here, not left to max(0, NaN) = 0
        return None
    c = contributions(subsets, modalities, lower_is_better)
    return None if c is None else equity([c[m] for m in modalities])


def mli(grad_norms: Mapping[str, Sequence[float]], modalities: Sequence[str]) -> float | None:
    """Modality Learning Index from each modality's encoder gradient norms over logging steps."""
    means = []
    for m in modalities:
        series = [float(v) for v in grad_norms.get(m, ()) if math.isfinite(float(v))]
        if not series:
            return None
        means.append(sum(series) / len(series))
    return equity(means)


NO_MODALITY = "(none)"  # train_patterns' key for rows with nothing present (min_present: 0, no usable modality)


def pattern_counts(masks: "Tensor", modalities: Sequence[str]) -> dict[str, int]:
    """How many training rows have each availability pattern, by condition name (``a+v``); rows
    with no modality present (possible under ``min_present: 0``) under ``NO_MODALITY``, so the
    counts add up to the rows. Patterns no row has are omitted."""
    import torch

    bits = 2 ** torch.arange(masks.shape[1], device=masks.device)
    counts = torch.bincount((masks.long() * bits).sum(1), minlength=2 ** masks.shape[1]).tolist()
    out = {}
    for index, count in enumerate(counts):
        if count:
            out["+".join(m for i, m in enumerate(modalities) if index >> i & 1) or NO_MODALITY] = int(count)
    return out


def diagnostics(
    test: Mapping[str, Mapping[str, float]], modalities: Sequence[str], masks: "Tensor | None", metrics_path: "Path"
) -> dict[str, object]:
    """``eval.json``'s ``diagnostics``: MEI per test metric, MLI, and the training rows per pattern
    (the masks the run trained on: the fixed ones, or the last epoch's under ``policy: resample``)."""
    from mmcore.metrics import METRICS_DIRECTION
    from mmcore.report.sources import read_metrics

    names = sorted({k for row in test.values() for k in row})
    scores = {n: {c: row[n] for c, row in test.items() if n in row} for n in names}
    metrics = read_metrics(metrics_path)
    norms = {m: metrics.series(f"grad_norm.{m}")[1] for m in modalities}
    return {
        "mei": {n: mei(s, modalities, METRICS_DIRECTION.get(n) == "min") for n, s in scores.items()},
        "mli": mli(norms, modalities),
        "train_patterns": pattern_counts(masks, modalities) if masks is not None else None,
    }
