"""mmcore.missbench: MEI and MLI by hand."""

from __future__ import annotations

import pytest

from mmcore.missbench import contributions, equity, mei, mli


def test_equity_by_hand() -> None:
    assert equity([1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert equity([0.0, 0.0, 5.0]) == pytest.approx(0.0)
    # [1, 3]: Σ|a−b| over ordered pairs = 4, G = 4 / (2·2·4) = 0.25, equity = 1 − 0.25·2 = 0.5
    assert equity([1.0, 3.0]) == pytest.approx(0.5)
    assert equity([2.0, 6.0]) == pytest.approx(0.5)  # scale-free
    assert equity([1.0]) is None and equity([0.0, 0.0]) is None


def test_mei_by_hand() -> None:
    scores = {"a": 0.8, "b": 0.4, "a+b": 0.9, "average": 0.7}
    # a: with (0.8, 0.9) mean 0.85, without (0.4) -> 0.45; b: with (0.4, 0.9) 0.65, without 0.8 -> 0 (clamped)
    assert contributions({k: v for k, v in scores.items() if k != "average"}, ["a", "b"]) == pytest.approx({"a": 0.45, "b": 0.0})
    assert mei(scores, ["a", "b"]) == pytest.approx(0.0)
    balanced = {"a": 0.6, "b": 0.6, "a+b": 0.9}
    assert mei(balanced, ["a", "b"]) == pytest.approx(1.0)
    assert mei({"a+b": 0.9}, ["a", "b"]) is None  # no condition lacks a modality


def test_mei_of_an_error_metric_by_hand() -> None:
    # MAE: a: with (0.2, 0.1) mean 0.15, without (0.5) -> drop 0.35; b: with (0.5, 0.1) 0.3,
    # without 0.2 -> −0.1, clamped to 0.
    mae = {"a": 0.2, "b": 0.5, "a+b": 0.1}
    assert contributions(mae, ["a", "b"], lower_is_better=True) == pytest.approx({"a": 0.35, "b": 0.0})
    assert mei(mae, ["a", "b"], lower_is_better=True) == pytest.approx(0.0)
    # a: with (0.3, 0.1) 0.2, without 0.4 -> 0.2; b: with (0.4, 0.1) 0.25, without 0.3 -> 0.05;
    # Σ_ij |c_i − c_j| = 0.3, G = 0.3 / (2·2·0.25) = 0.3, equity = 1 − 0.3·2 = 0.4
    assert mei({"a": 0.3, "b": 0.4, "a+b": 0.1}, ["a", "b"], lower_is_better=True) == pytest.approx(0.4)
    # read as a score instead, the credit goes the wrong way: c = [0, 0.1], all of it to b, which hurts
    assert contributions(mae, ["a", "b"]) == pytest.approx({"a": 0.0, "b": 0.1})


def test_mli_by_hand() -> None:
    assert mli({"a": [1.0, 3.0], "b": [6.0, 6.0]}, ["a", "b"]) == pytest.approx(0.5)  # means 2 and 6
    assert mli({"a": [1.0]}, ["a", "b"]) is None


def test_pattern_counts_by_hand() -> None:
    import torch

    from mmcore.missbench import pattern_counts

    masks = torch.tensor([[1, 0], [1, 1], [1, 1], [0, 1]], dtype=torch.bool)
    assert pattern_counts(masks, ["a", "b"]) == {"a": 1, "b": 1, "a+b": 2}


def test_a_run_writes_the_diagnostics(tmp_path) -> None:
    import json

    from mmcore.testing import short_run, tiny_recipe

    result = short_run(tiny_recipe(tmp_path))
    diagnostics = json.loads((result.run_dir / "eval.json").read_text())["diagnostics"]
    assert set(diagnostics) == {"mei", "mli", "train_patterns"}
    assert sum(diagnostics["train_patterns"].values()) > 0
    assert all(v is None or 0.0 <= v <= 1.0 for v in diagnostics["mei"].values())


def test_the_report_shows_the_diagnostics(tmp_path) -> None:
    from mmcore.report.run import run_document
    from mmcore.testing import short_run, tiny_recipe

    result = short_run(tiny_recipe(tmp_path))
    doc = run_document(result.run_dir)
    html = doc.render() if hasattr(doc, "render") else str(doc.__dict__)
    assert "MissBench diagnostics" in html and "MLI" in html and "training rows" in html
