"""mmcore.omnibus: Friedman's test and t intervals by hand, and equal to SciPy where installed."""

from __future__ import annotations

import math

import pytest

from mmcore.omnibus import chi2_sf, friedman, mean_ci

# 3 arms × 4 seeds; ranks within seeds: a always 1, b always 2, c always 3 except seed 3 (tie b=c)
VALUES = {
    "a": {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.1},
    "b": {0: 0.5, 1: 0.6, 2: 0.4, 3: 0.5},
    "c": {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.5},
}


def test_chi2_by_hand() -> None:
    assert chi2_sf(2.0, 2) == pytest.approx(math.exp(-1.0))  # df 2: exp(−x/2)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-9)
    assert chi2_sf(30.0, 4) == pytest.approx(math.exp(-15) * (1 + 15), rel=1e-9)  # df 4: e^{−x/2}(1 + x/2)


def test_friedman_by_hand() -> None:
    # rank sums: a 4, b 2+2+2+2.5 = 8.5, c 3+3+3+2.5 = 11.5; Σ R² = 16 + 72.25 + 132.25 = 220.5
    # Q = 12/(4·3·4)·220.5 − 3·4·4 = 55.125 − 48 = 7.125; ties: one pair, (8 − 2)/(4·(27 − 3)) = 1/16
    result = friedman(VALUES)
    assert result is not None
    assert result.statistic == pytest.approx(7.125 / (1 - 1 / 16))
    assert result.p == pytest.approx(math.exp(-result.statistic / 2))
    assert friedman({"a": {0: 1.0}, "b": {0: 2.0}, "c": {0: 3.0}}) is None  # one seed
    assert friedman({"a": VALUES["a"], "b": VALUES["b"]}) is None  # two arms


def test_mean_ci_by_hand() -> None:
    mean, low, high = mean_ci([1.0, 2.0, 3.0])  # sd 1, t_{0.975, 2} = 4.302652729911275
    half = 4.302652729911275 / math.sqrt(3)
    assert mean == 2.0 and low == pytest.approx(2 - half, rel=1e-9) and high == pytest.approx(2 + half, rel=1e-9)
    assert mean_ci([5.0]) == (5.0, None, None)


def test_equal_to_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    result = friedman(VALUES)
    expected = stats.friedmanchisquare(*[list(VALUES[a].values()) for a in VALUES])
    assert result.statistic == pytest.approx(expected.statistic) and result.p == pytest.approx(expected.pvalue)
    low, high = stats.t.interval(0.95, 4, loc=0.5, scale=stats.sem([0.3, 0.4, 0.5, 0.6, 0.7]))
    assert mean_ci([0.3, 0.4, 0.5, 0.6, 0.7])[1:] == pytest.approx((low, high))


def test_spread_table_over_sweep_outcomes(tmp_path) -> None:
    import json
    from types import SimpleNamespace

    from rich.console import Console

    from mmcore.sweep.spread import spread_table

    outcomes = []
    for label, by_seed in VALUES.items():
        for seed, value in by_seed.items():
            run_dir = tmp_path / label / str(seed)
            run_dir.mkdir(parents=True)
            (run_dir / "eval.json").write_text(json.dumps({"results": {"test": {"average": {"acc": value}}}}))
            outcomes.append(SimpleNamespace(status="done", run=SimpleNamespace(run_dir=run_dir, seed=seed, point=SimpleNamespace(label=label))))
    console = Console(record=True, width=200)
    console.print(spread_table(outcomes, ["acc"]))
    text = console.export_text()
    assert "Friedman χ²(2) = 7.600" in text and "[" in text
