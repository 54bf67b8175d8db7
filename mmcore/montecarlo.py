"""A Monte Carlo Bayes ceiling, for data whose law is known but whose ceiling has no closed form.

Why it exists: the plain ``mmcore.synthetic`` generator (Gaussian class clusters, one random set
of unit-norm class means per modality, scaled by the modality's strength) has a simple Bayes rule
but no closed-form accuracy, since the means are a random draw rather than a regular simplex.
The issue's rule for such data: Monte Carlo, with its standard error.

Given the present modalities and each row's valid frame counts L_m, the frame means are
sufficient: x̄_m ~ N(c_{m,y}, σ²/L_m · I). With equiprobable classes the Bayes rule picks the
class minimising Σ_m L_m ‖x̄_m − c_{m,k}‖² over the present m. For every row of the split we
draw ``draws`` fresh x̄ from its own class, pattern and lengths and score that rule, so the
estimate is the expected Bayes accuracy on exactly this evaluation set (as the closed form of
``mmcore.oracle`` is); its standard error is the binomial one over all N·draws decisions, an
upper bound since rows share nothing but the law. A fixed seed makes it deterministic.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mc_bayes_accuracy(
    centres: list[Tensor], noise: float, target: Tensor, mask: Tensor, frames: Tensor, draws: int = 64, seed: int = 0
) -> tuple[float, float]:
    """(accuracy, standard error) of the Bayes rule; ``centres[m]`` is ``[C, D_m]``, ``mask`` and
    ``frames`` are ``[N, M]``. A row with nothing present scores chance (1/C) exactly."""
    gen = torch.Generator().manual_seed(seed)
    n, classes = int(target.shape[0]), int(centres[0].shape[0])
    y = target.cpu().long()
    score = torch.zeros(n, draws, classes, dtype=torch.float64)
    for m, c in enumerate(centres):
        c = c.to(torch.float64)
        keep = mask[:, m].cpu().to(torch.float64)  # absent modalities add nothing to the rule
        length = frames[:, m].cpu().clamp(min=1).to(torch.float64)
        xbar = c[y].unsqueeze(1) + noise / length.sqrt()[:, None, None] * torch.randn(n, draws, c.shape[1], generator=gen, dtype=torch.float64)
        dist = ((xbar.unsqueeze(2) - c[None, None]) ** 2).sum(-1)  # [N, draws, C]
        score -= (keep * length)[:, None, None] * dist
    # ties only where nothing is present (all scores 0): count those rows as chance
    correct = (score.argmax(-1) == y[:, None]).to(torch.float64)
    none = ~mask.cpu().any(1)
    correct[none] = 1.0 / classes
    p = float(correct.mean())
    return p, math.sqrt(max(p * (1 - p), 1e-12) / (n * draws))
