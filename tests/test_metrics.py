"""Metrics against numbers worked out by hand (derivations in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from mmcore.errors import MMCoreError
from mmcore.metrics import METRICS_DIRECTION, better, classification_metrics, confusion_matrix, regression_metrics

# Class 0 dominates (6 of 10), class 2 is never predicted, class 3 occurs nowhere.
TARGET = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
PRED = torch.tensor([0, 0, 0, 0, 1, 1, 0, 1, 0, 0])


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(PRED, TARGET, 4)
    assert cm.tolist() == [[4, 2, 0, 0], [1, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("num_classes", [3, 4])  # a class absent from target and pred changes nothing
def test_unbalanced_example_by_hand(num_classes: int) -> None:
    m = classification_metrics(PRED, TARGET, num_classes)
    assert m["accuracy"] == pytest.approx(5 / 10)
    # recalls 4/6, 1/2, 0 over the three classes in the target
    assert m["balanced_accuracy"] == pytest.approx((4 / 6 + 1 / 2 + 0) / 3)
    # F1 = 2TP / (support + predicted): class 0: 8/13, class 1: 2/5, class 2: 0 (never predicted)
    assert m["macro_f1"] == pytest.approx((8 / 13 + 2 / 5 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((6 * 8 / 13 + 2 * 2 / 5 + 2 * 0) / 10)


def test_a_class_only_predicted_counts_in_macro_f1_not_in_balanced_accuracy() -> None:
    # true 0 0 1 1 / pred 0 3 1 1: recall 1/2 and 1; F1: class 0 = 2/3, class 1 = 1, class 3 = 0.
    m = classification_metrics(torch.tensor([0, 3, 1, 1]), torch.tensor([0, 0, 1, 1]), 4)
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["balanced_accuracy"] == pytest.approx(3 / 4)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 1) / 4)


def test_perfect_and_constant_predictors() -> None:
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    assert classification_metrics(target, target, 3) == {
        "accuracy": 1.0, "balanced_accuracy": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0,
    }
    # Always class 0: recall 1, 0, 0; F1 of class 0 = 2*3 / (3 + 6) = 2/3, others 0.
    m = classification_metrics(torch.zeros(6, dtype=torch.long), target, 3)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 9)
    assert m["weighted_f1"] == pytest.approx(3 * (2 / 3) / 6)


@pytest.mark.parametrize(
    ("pred", "target", "classes", "message"),
    [
        (torch.tensor([0, 5]), torch.tensor([0, 1]), 3, r"must lie in \[0, 3\)"),
        (torch.tensor([0, -1]), torch.tensor([0, 1]), 3, r"must lie in \[0, 3\)"),
        (torch.tensor([0, 1, 1]), torch.tensor([0, 1]), 3, "of one length"),
        (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 3, "non-empty"),
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3, "integer class indices"),
    ],
)
def test_bad_classification_inputs(pred: torch.Tensor, target: torch.Tensor, classes: int, message: str) -> None:
    with pytest.raises(MMCoreError, match=message):
        classification_metrics(pred, target, classes)


# Eight sentiment scores, one zero target; each error is a multiple of 1/2.
REG_TARGET = torch.tensor([-3.0, -1.5, -0.5, 0.0, 0.5, 1.0, 2.0, 3.5])
REG_PRED = torch.tensor([-2.0, -1.5, 0.5, 0.5, -0.5, 1.0, 3.0, 2.5])


def test_regression_metrics_by_hand() -> None:
    m = regression_metrics(REG_PRED, REG_TARGET)
    # |errors| = 1, 0, 1, .5, 1, 0, 1, 1
    assert m["mae"] == pytest.approx(5.5 / 8)
    assert m["mse"] == pytest.approx(5.25 / 8)
    # means 0.25 and 0.4375; Σ centred t² = 28.5, Σ centred p² = 21.71875, Σ centred t·p = 22.625
    assert m["corr"] == pytest.approx(22.625 / math.sqrt(28.5 * 21.71875))
    # >= 0 is positive: rows 2 and 4 disagree. Positive class: 5 true, 5 predicted, 4 hits -> F1 0.8;
    # negative: 3 true, 3 predicted, 2 hits -> F1 2/3; weighted (5*0.8 + 3*2/3) / 8.
    assert m["acc2"] == pytest.approx(6 / 8)
    assert m["f1_2"] == pytest.approx((5 * 0.8 + 3 * 2 / 3) / 8)
    # Without the zero target (7 rows), > 0 is positive: rows 2 and 4 disagree.
    # Positive: 4 true, 4 predicted, 3 hits -> 0.75; negative: 3, 3, 2 hits -> 2/3.
    assert m["acc2_nz"] == pytest.approx(5 / 7)
    assert m["f1_2_nz"] == pytest.approx((4 * 0.75 + 3 * 2 / 3) / 7)
    # Clip to [-3, 3] and round halves to even: t -> -3 -2 0 0 0 1 2 3, p -> -2 -2 0 0 0 1 3 2.
    assert m["acc7"] == pytest.approx(5 / 8)
    # Clip to [-2, 2]: t -> -2 -2 0 0 0 1 2 2 and p -> -2 -2 0 0 0 1 2 2.
    assert m["acc5"] == pytest.approx(1.0)


def test_perfect_and_constant_regressors() -> None:
    perfect = regression_metrics(REG_TARGET, REG_TARGET)
    assert perfect["mae"] == 0.0 and perfect["mse"] == 0.0
    assert perfect["corr"] == pytest.approx(1.0)
    assert all(perfect[k] == 1.0 for k in ("acc2", "f1_2", "acc2_nz", "f1_2_nz", "acc7", "acc5"))
    constant = regression_metrics(torch.full((8,), 0.1), REG_TARGET)
    assert constant["corr"] == 0.0
    assert constant["acc2"] == pytest.approx(5 / 8)  # everything predicted non-negative
    # f1_2: positive F1 = 2*5/(5+8) = 10/13, negative F1 = 0 -> weighted 5*(10/13)/8
    assert constant["f1_2"] == pytest.approx(5 * (10 / 13) / 8)


def test_all_zero_targets_leave_nonzero_metrics_undefined() -> None:
    m = regression_metrics(torch.tensor([0.3, -0.2, 0.0]), torch.zeros(3))
    assert m["corr"] == 0.0
    assert math.isnan(m["acc2_nz"]) and math.isnan(m["f1_2_nz"])
    assert m["acc2"] == pytest.approx(2 / 3)


def test_regression_accepts_column_vectors_and_rejects_mismatches() -> None:
    flat = regression_metrics(REG_PRED, REG_TARGET)
    assert regression_metrics(REG_PRED[:, None], REG_TARGET) == flat
    with pytest.raises(MMCoreError, match="of one length"):
        regression_metrics(REG_PRED[:5], REG_TARGET)


def test_direction_and_better() -> None:
    metric_names = set(classification_metrics(PRED, TARGET, 3)) | set(regression_metrics(REG_PRED, REG_TARGET))
    assert metric_names <= set(METRICS_DIRECTION)
    assert METRICS_DIRECTION["mae"] == METRICS_DIRECTION["mse"] == "min"
    assert better("macro_f1", 0.6, 0.5) and not better("macro_f1", 0.5, 0.5)
    assert better("val.mae", 0.4, 0.5) and not better("val.a+v.mae", 0.6, 0.5)
    assert better("accuracy", 0.1, float("nan")) and not better("accuracy", float("nan"), 0.1)
    with pytest.raises(MMCoreError, match="unknown metric 'val.macro_f'; did you mean 'macro_f1'"):
        better("val.macro_f", 0.1, 0.2)
