"""The two maps back onto {‖β‖₂ = 1, β ≥ floor}: hand cases, invariants, optimality."""

from __future__ import annotations

import math

import pytest
import torch

from mmcore_redcore.projection import clamp_normalize, project_exact


def t(values: list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def test_clamp_normalize_by_hand() -> None:
    # [−0.5, 0.05, 2] -> clamp [0.1, 0.1, 2] -> / √4.02 = 2.00499377
    out = clamp_normalize(t([-0.5, 0.05, 2.0]), 0.1)
    assert torch.allclose(out, t([0.04987547, 0.04987547, 0.99750234]), atol=1e-8)


@pytest.mark.parametrize(
    "v,expected",
    [
        # nothing binds: plain normalisation
        ([3.0, 4.0], [0.6, 0.8]),
        # two entries on the floor, the third takes √(1 − 2·0.01)
        ([-0.5, 0.05, 2.0], [0.1, 0.1, math.sqrt(0.98)]),
        # k = 0 fails (0.05·1/√2.0025 < 0.1), k = 1: c = √0.99/√2, free entries 0.70356236
        ([0.05, 1.0, 1.0], [0.1, math.sqrt(0.99 / 2), math.sqrt(0.99 / 2)]),
        # every entry ≤ 0: floor everywhere, the largest takes the remaining norm
        ([-1.0, -0.2, -3.0], [0.1, math.sqrt(0.98), 0.1]),
        # already in the set: unchanged
        ([0.1, math.sqrt(0.99)], [0.1, math.sqrt(0.99)]),
    ],
)
def test_exact_projection_by_hand(v: list[float], expected: list[float]) -> None:
    assert torch.allclose(project_exact(t(v), 0.1), t(expected), atol=1e-10)


def test_exact_projection_at_the_largest_floor_is_the_uniform_vector() -> None:
    m = 4
    out = project_exact(t([5.0, -1.0, 0.3, 2.0]), 1 / math.sqrt(m))
    assert torch.allclose(out, torch.full((m,), 0.5, dtype=torch.float64), atol=1e-7)


def test_exact_projection_works_in_float32() -> None:
    out = project_exact(t([-0.5, 0.05, 2.0], torch.float32), 0.1)
    assert out.dtype == torch.float32
    assert torch.allclose(out, t([0.1, 0.1, math.sqrt(0.98)], torch.float32), atol=1e-6)


def _random_cases(count: int, seed: int) -> list[tuple[torch.Tensor, float]]:
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(count):
        m = int(torch.randint(2, 7, (1,), generator=gen))
        floor = float(torch.rand(1, generator=gen)) / math.sqrt(m)
        scale = float(torch.rand(1, generator=gen)) * 3
        shift = float(torch.randn(1, generator=gen))
        cases.append((torch.randn(m, generator=gen, dtype=torch.float64) * scale + shift, floor))
    return cases


def test_invariants_for_random_inputs() -> None:
    compared = below = 0
    for v, floor in _random_cases(500, seed=0):
        exact, clamp = project_exact(v, floor), clamp_normalize(v, floor)
        for out in (exact, clamp):
            assert abs(float(out.norm()) - 1.0) < 1e-9
        assert bool((exact >= floor - 1e-12).all())
        # clamp-then-normalise keeps the floor only up to the norm it divided by
        assert bool((clamp >= floor / float(v.clamp_min(floor).norm()) - 1e-12).all())
        if bool((clamp >= floor - 1e-12).all()):
            # both in the set: the projection is at least as close
            assert float((exact - v).norm()) <= float((clamp - v).norm()) + 1e-9
            compared += 1
        else:
            below += 1  # clamp left the set (it can then be nearer to v than any point of the set)
    assert compared > 100 and below > 50  # both situations were exercised


def test_exact_projection_beats_random_feasible_points() -> None:
    gen = torch.Generator().manual_seed(1)
    for v, floor in _random_cases(60, seed=2):
        m = v.numel()
        # random points of the set: floor plus a random non-negative direction scaled onto the sphere
        d = torch.rand(4000, m, generator=gen, dtype=torch.float64) ** 3
        # solve ‖floor + s·d‖ = 1 for s ≥ 0
        a, b, c = (d * d).sum(1), 2 * floor * d.sum(1), m * floor * floor - 1
        s = (-b + (b * b - 4 * a * c).sqrt()) / (2 * a)
        points = floor + s.unsqueeze(1) * d
        assert torch.allclose(points.norm(dim=1), torch.ones(4000, dtype=torch.float64))
        best_random = float((points - v).norm(dim=1).min())
        assert float((project_exact(v, floor) - v).norm()) <= best_random + 1e-9


def test_zero_floor_is_plain_normalisation_of_the_positive_part() -> None:
    out = project_exact(t([-2.0, 3.0, 4.0]), 0.0)
    assert torch.allclose(out, t([0.0, 0.6, 0.8]), atol=1e-12)
