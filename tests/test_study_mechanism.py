"""Mechanism series of a study: per-modality signals averaged over seeds at shared steps."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmcore.study.mechanism import mechanism_series, write_mechanism_csv
from mmcore.study.plan import StudyRun


def _run(root: Path, arm: str, seed: int, lines: list[dict]) -> StudyRun:
    run = StudyRun(kind="main", arm=arm, levels={"rates": "imbalanced"}, seed=seed, values={},
                   rel=f"runs/{arm}/imbalanced/seed{seed}", study_dir=root)
    run_dir = run.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("missing: {train: {rates: {a: 0.2, b: 0.6}}}\n")
    (run_dir / "eval.json").write_text(json.dumps({"results": {"test": {"average": {"macro_f1": 0.5}}}}))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def test_series_are_seed_means_at_the_steps_every_seed_logged(tmp_path):
    runs = []
    for seed in range(3):
        lines = [{"step": s, "loss": 1.0, "beta.a": 0.6 + 0.1 * seed + s, "beta.b": 0.8, "z_sq.a": 2.0 * seed,
                  "task_loss": 0.5, "lr": 0.1} for s in (10, 20)]
        if seed == 0:  # a step only one seed logged is left out of the mean
            lines.append({"step": 30, "loss": 1.0, "beta.a": 9.0, "beta.b": 9.0, "z_sq.a": 9.0})
        lines.append({"epoch": 1, "val.accuracy": 0.5})  # an epoch line carries no signal
        runs.append(_run(tmp_path, "redcore", seed, lines))
    series = mechanism_series(runs)
    assert set(series) == {("redcore", "imbalanced", k) for k in ("beta.a", "beta.b", "z_sq.a")}
    steps, means, n = series[("redcore", "imbalanced", "beta.a")]
    assert steps == [10.0, 20.0] and n == 3
    assert means == pytest.approx([10.7, 20.7], abs=1e-12)  # 0.6 + step + mean(0, 0.1, 0.2)
    assert series[("redcore", "imbalanced", "z_sq.a")][1] == [2.0, 2.0]  # (0 + 2 + 4) / 3

    path = tmp_path / "mechanism.csv"
    write_mechanism_csv(path, series)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 6 and rows[0].keys() == {"arm", "cell", "signal", "modality", "step", "mean", "seeds"}
    assert {(r["signal"], r["modality"], r["step"]) for r in rows} >= {("beta", "a", "10"), ("z_sq", "a", "20")}


def test_unfinished_runs_and_unknown_signals_are_left_out(tmp_path):
    done = _run(tmp_path, "uniform", 0, [{"step": 5, "loss": 1.0, "weight.a": 0.7, "grad_norm.a": 3.0}])
    unfinished = _run(tmp_path, "uniform", 1, [{"step": 5, "loss": 1.0, "weight.a": 100.0}])
    (unfinished.run_dir / "eval.json").unlink()
    series = mechanism_series([done, unfinished])
    assert series == {("uniform", "imbalanced", "weight.a"): ([5.0], [0.7], 1)}
