"""Maps a raw β update back onto the set of admissible modality weights.

RedCore keeps β on the unit sphere with a floor, S = {β : ‖β‖₂ = 1, β_m ≥ b}. The reference code
(sunjunaimer/RedCore, ``redcore_mmin_model.py``) clamps at b and then normalises; the rescaling
can push a clamped entry back below b, so the result is on the sphere but not always in S.
``project_exact`` is the true Euclidean projection onto S.

Both functions are pure tensor code (no ``.item()``), so they run on the device every few
steps without a host sync.

Derivation of the exact projection. On the sphere ‖β − v‖² = 1 + ‖v‖² − 2⟨β, v⟩, so the nearest
point of S maximises ⟨β, v⟩. Stationarity of the Lagrangian with multiplier λ for the sphere and
μ_m ≥ 0 for the floors gives v_m = 2λβ_m − μ_m, μ_m (β_m − b) = 0. When some v_m > 0 the maximiser
has λ > 0; writing c = 1/(2λ):

- free coordinates: β_m = c·v_m ≥ b (a scaled copy of v),
- active coordinates: β_m = b, and they satisfy c·v_m ≤ b, i.e. the active set is the k smallest
  entries of v for some k,
- c follows from the norm: c²·‖v_F‖² + k·b² = 1.

So there are at most M candidates (k = 0..M−1 smallest entries at the floor). Every feasible
candidate lies in S and the optimum is among them, so we build all of them at once and keep the
feasible one closest to v. k = M−1 is always feasible when max v > 0, because
√(1 − (M−1)b²) ≥ b exactly when M·b² ≤ 1.

When every v_m ≤ 0 the objective rewards the least β mass: every coordinate sits at b except the
largest v_m, which takes the remaining norm √(1 − (M−1)b²) (spreading the excess costs more,
because √(b² + e) − b is concave in the excess e).
"""

from __future__ import annotations

import torch
from torch import Tensor


def clamp_normalize(v: Tensor, floor: float) -> Tensor:
    """The reference's step: β_m ← max(b, v_m), then β ← β/‖β‖₂ (may end below b)."""
    clamped = v.clamp_min(floor)
    return clamped / clamped.norm().clamp_min(torch.finfo(v.dtype).tiny)


def project_exact(v: Tensor, floor: float) -> Tensor:
    """The Euclidean projection of ``v`` ([M]) onto {β : ‖β‖₂ = 1, β_m ≥ floor}.

    Needs ``M·floor² ≤ 1`` (otherwise the set is empty); the caller checks it once.
    """
    m = v.numel()
    tiny = torch.finfo(v.dtype).tiny
    s, order = torch.sort(v)  # ascending: the candidate active sets are prefixes of s
    k = torch.arange(m, device=v.device, dtype=v.dtype)

    tail_sq = torch.flip(torch.cumsum(torch.flip(s * s, [0]), 0), [0])  # Σ_{j≥k} s_j², the free part
    head = torch.cumsum(s, 0) - s  # Σ_{j<k} s_j, the active part
    budget = (1.0 - k * floor * floor).clamp_min(0.0)  # norm² left for the free coordinates
    norm_free = tail_sq.sqrt()
    c = budget.sqrt() / norm_free.clamp_min(tiny)

    # The smallest free entry is s_k; it must stay on or above the floor after scaling.
    feasible = (s > 0) & (c * s >= floor)
    feasible[-1] = s[-1] > 0  # always feasible in exact arithmetic; spare it the rounding
    closeness = floor * head + budget.sqrt() * norm_free  # ⟨β, v⟩ of each candidate
    best = torch.argmax(torch.where(feasible, closeness, torch.full_like(closeness, -torch.inf)))

    j = torch.arange(m, device=v.device)
    c_best = c.gather(0, best.view(1))
    sorted_beta = torch.where(j < best, torch.full_like(s, floor), c_best * s)
    scaled = torch.empty_like(v).scatter_(0, order, sorted_beta)

    # All entries ≤ 0: floor everywhere, the rest of the norm on the largest entry.
    top = torch.argmax(v)
    peak = torch.full_like(v, floor).scatter_(
        0, top.view(1), torch.full((1,), max(1.0 - (m - 1) * floor * floor, 0.0) ** 0.5, dtype=v.dtype, device=v.device)
    )
    return torch.where(s[-1] > 0, scaled, peak)
