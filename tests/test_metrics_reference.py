"""Metrics against reference implementations, their edge cases, and how the engine pools them.

The reference numbers were computed once with scikit-learn 1.9.1 (``accuracy_score``,
``balanced_accuracy_score``, ``f1_score(average="macro" | "weighted", zero_division=0)``) and,
for regression, with MMSA's ``metricsTop.py`` formulas in numpy (``np.corrcoef``, ``np.round``
of ``np.clip``, ``f1_score(average="weighted")``); they are hard-coded so that the tests need
neither. Where a number is easy by hand, the derivation is in the comment.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmcore.engine.build import build_dataset, build_model
from mmcore.engine.evaluate import condition_mask_table, predict, score
from mmcore.metrics import TASK_METRICS, classification_metrics, regression_metrics
from mmcore.conditions import parse_conditions
from mmcore.plugins import get_registry
from mmcore.recipe.plan import plan_of
from mmcore.types import TaskSpec

# (target, prediction, classes) -> sklearn's accuracy, balanced accuracy, macro F1, weighted F1
SKLEARN_CASES = {
    "iemocap_like": (
        [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 0, 1, 2, 3],
        [0, 0, 1, 2, 0, 1, 1, 0, 2, 2, 2, 1, 0, 2, 3, 0, 3, 1, 2, 3],
        4,
        (0.65, 0.6577380952380952, 0.6506410256410255, 0.6525641025641026),
    ),
    # class 2 is never predicted, class 3 only predicted, class 4 occurs nowhere
    "never_and_only_predicted": (
        [0, 0, 0, 1, 1, 1, 2, 2], [0, 0, 3, 1, 1, 0, 0, 1], 5,
        (0.5, 0.4444444444444444, 0.30952380952380953, 0.4642857142857143),
    ),
    # one class in the target: UA = its recall 2/4; macro F1 over {0, 1, 2} = (2*2/(4+2)) / 3 = 2/9
    "single_class_target": ([2, 2, 2, 2], [2, 0, 2, 1], 3, (0.5, 0.5, 0.2222222222222222, 0.6666666666666666)),
    "one_sample_wrong": ([1], [0], 2, (0.0, 0.0, 0.0, 0.0)),
    "one_sample_right": ([1], [1], 2, (1.0, 1.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("case", sorted(SKLEARN_CASES))
def test_classification_metrics_match_scikit_learn(case: str) -> None:
    target, pred, classes, expected = SKLEARN_CASES[case]
    m = classification_metrics(torch.tensor(pred), torch.tensor(target), classes)
    got = (m["accuracy"], m["balanced_accuracy"], m["macro_f1"], m["weighted_f1"])
    assert got == pytest.approx(expected, abs=1e-12)


def test_regression_metrics_match_mmsa() -> None:
    # Targets with zeros, halves (rounding to even) and values past the ±3 clip of acc7.
    target = torch.tensor([-3.0, -2.6, -1.5, -0.4, 0.0, 0.0, 0.6, 1.4, 2.5, 3.0])
    pred = torch.tensor([-3.8, -2.5, -0.5, 0.2, -0.1, 0.3, 0.5, 1.5, 2.5, 2.6])
    m = regression_metrics(pred, target)
    expected = {  # MMSA's formulas in numpy / scikit-learn 1.9.1, see the module doc
        "mae": 0.35, "mse": 0.229, "corr": 0.9690555060660511,
        "acc2_nz": 0.875, "f1_2_nz": 0.873015873015873, "acc2": 0.8, "f1_2": 0.8,
        # acc7: clip(-3, 3) then round half to even: -1.5 -> -2 and -0.5 -> -0, 2.5 -> 2 on both sides
        "acc7": 0.6, "acc5": 0.7,
    }
    assert m == pytest.approx(expected, abs=1e-6)  # float32 inputs: 1e-6 covers their rounding


def test_nan_regression_prediction_makes_every_metric_nan() -> None:
    # Before: mae/mse/corr were NaN but acc2, f1_2, acc7, acc5 counted the NaN as a negative or wrong
    # prediction, a number that looks valid.
    m = regression_metrics(torch.tensor([0.5, float("nan"), -1.0]), torch.tensor([1.0, 2.0, -1.0]))
    assert set(m) == set(TASK_METRICS["regression"])
    assert all(math.isnan(v) for v in m.values())


def test_classification_scores_with_nan_make_every_metric_nan() -> None:
    target = torch.tensor([0, 1, 2])
    scores = torch.tensor([[3.0, 0.0, 0.0], [0.0, float("nan"), 0.0], [0.0, 0.0, 1.0]])
    # argmax would read the NaN row as class 1, which is right, and report accuracy 1.0
    m = classification_metrics(scores, target, 3)
    assert set(m) == set(TASK_METRICS["classification"])
    assert all(math.isnan(v) for v in m.values())
    finite = scores.nan_to_num(0.0)  # without NaN, scores and their argmax give the same numbers
    assert classification_metrics(finite, target, 3) == classification_metrics(finite.argmax(-1), target, 3)


def test_engine_scoring_reports_nan_for_a_condition_with_nan_logits() -> None:
    task = TaskSpec("classification", 2)
    target = torch.tensor([0, 1, 1, 0])
    good = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])  # 3 of 4 right
    bad = good.clone()
    bad[1, 0] = float("nan")
    table = score({"a": good, "b": bad}, target, task)
    assert table["a"]["accuracy"] == 0.75
    assert math.isnan(table["b"]["accuracy"]) and math.isnan(table["average"]["accuracy"])
    assert math.isnan(table.pooled["macro_f1"])


def test_macro_f1_is_computed_on_the_whole_split_not_averaged_over_batches(make_recipe) -> None:
    # By hand, target 0 0 1 1 2 2 / pred 0 1 1 1 2 0: F1 = 2TP/(support+predicted) = 2/4, 4/5, 2/3 -> macro 0.6556; the mean of
    # the three 2-row batches' macro F1s would be 0.5556 (scikit-learn gives both numbers).
    m = classification_metrics(torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 0, 1, 1, 2, 2]), 3)
    assert m["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # The engine scores the pooled predictions of a split: its metrics do not depend on the batch size.
    recipe = make_recipe()
    registry = get_registry()
    dataset = build_dataset(recipe["dataset"], registry)
    torch.manual_seed(0)
    model = build_model(plan_of(recipe), dataset.modalities, dataset.task, registry).eval()
    split = dataset.split("val")
    conditions = parse_conditions(["m0", "m1+m2", {"random": {"rates": {"m0": 0.5, "m2": 0.5}}, "seed": 4, "name": "r"}], ["m0", "m1", "m2"])
    masks = condition_mask_table(conditions, split, 3)
    results = []
    for batch_size in (7, 64, len(split)):
        out = predict(model, split, masks, batch_size, _no_autocast)
        results.append(score(out, split.target, dataset.task))
    for other in results[1:]:
        for name in ("m0", "m1+m2", "r", "average"):
            assert other[name] == pytest.approx(results[0][name], abs=1e-12)
    whole = predict(model, split, masks, len(split), _no_autocast)["r"]
    assert results[-1]["r"] == classification_metrics(whole.argmax(-1), split.target, 4)


def _no_autocast() -> torch.autocast:
    return torch.autocast("cpu", enabled=False)


def test_mei_by_hand_and_undefined_with_a_nan_condition() -> None:
    from mmcore.missbench import mei

    # c_a = mean(0.5, 0.8) - 0.6 = 0.05, c_v = mean(0.6, 0.8) - 0.5 = 0.2; Gini = 2 * 0.15 / (2 * 2 * 0.25)
    # = 0.3, normalised by M / (M - 1) = 2: 0.6, so MEI = 0.4.
    assert mei({"a": 0.5, "v": 0.6, "a+v": 0.8, "average": 0.63}, ["a", "v"]) == pytest.approx(0.4)
    assert mei({"a": 0.5, "v": float("nan"), "a+v": 0.8}, ["a", "v"]) is None
