"""Evaluation metrics, computed once at the end of an evaluation from full prediction tensors.

The heavy part (a confusion matrix by ``bincount``, sums over N) runs on the tensors' device;
only C x C counts or a handful of scalars cross to the host, in one or two transfers per call.

Conventions (they follow scikit-learn's defaults, which most papers' numbers come from):
- ``balanced_accuracy`` (UA, unweighted accuracy): mean recall over the classes that occur in
  the target; a class that is only predicted has no recall and is left out.
- ``macro_f1``: mean F1 over the classes that occur in the target *or* the prediction; F1 = 0
  where precision + recall = 0 (zero_division=0). Classes absent from both are left out.
- ``weighted_f1``: F1 per class weighted by its true support.
- Regression follows the MOSI/MOSEI conventions of MMSA's ``metricsTop.py`` (thuiar/MMSA).
- A NaN prediction makes every metric of the call NaN: it has no class and no sign, and argmax
  or a comparison would count it as one (argmax picks the NaN's index, ``NaN >= 0`` is False).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.registry import did_you_mean

# Which way is better, for model selection ("val.<metric>") and reports.
METRICS_DIRECTION: dict[str, str] = {
    "accuracy": "max",
    "balanced_accuracy": "max",
    "macro_f1": "max",
    "weighted_f1": "max",
    "mae": "min",
    "mse": "min",
    "corr": "max",
    "acc2": "max",
    "f1_2": "max",
    "acc2_nz": "max",
    "f1_2_nz": "max",
    "acc7": "max",
    "acc5": "max",
}

# The metrics each task kind reports, i.e. what ``train.select`` may name.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"),
    "regression": ("mae", "mse", "corr", "acc2", "f1_2", "acc2_nz", "f1_2_nz", "acc7", "acc5"),
}


def better(metric: str, a: float, b: float) -> bool:
    """Whether value ``a`` is strictly better than ``b`` for ``metric``.

    A dotted name (``val.macro_f1``, ``val.a+v.mae``) is judged by its last part. NaN is never
    better, and any number beats NaN, so an undefined first value does not block selection.
    """
    name = metric.rsplit(".", 1)[-1]
    direction = METRICS_DIRECTION.get(name)
    if direction is None:
        known = sorted(METRICS_DIRECTION)
        raise MMCoreError(f"unknown metric '{metric}';{did_you_mean(name, known)} available: {', '.join(known)}")
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if direction == "max" else a < b


def _check_pair(pred: Tensor, target: Tensor, what: str) -> tuple[Tensor, Tensor]:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise MMCoreError(f"{what}: pred and target must be tensors")
    if pred.numel() != target.numel() or pred.numel() == 0:
        raise MMCoreError(
            f"{what}: pred and target must be non-empty and of one length, got shapes "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return pred.reshape(-1), target.reshape(-1).to(pred.device)


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Counts ``[C, C]`` on the inputs' device: rows are true classes, columns predicted ones."""
    pred, target = _check_pair(pred, target, "confusion_matrix")
    if pred.dtype.is_floating_point or target.dtype.is_floating_point:
        raise MMCoreError("confusion_matrix: pred and target must be integer class indices")
    if num_classes < 1:
        raise MMCoreError(f"confusion_matrix: num_classes must be >= 1, got {num_classes}")
    pred, target = pred.long(), target.long()
    in_range = ((pred >= 0) & (pred < num_classes) & (target >= 0) & (target < num_classes)).all()
    if not bool(in_range):
        raise MMCoreError(f"confusion_matrix: class indices must lie in [0, {num_classes})")
    flat = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def _f1_per_class(cm: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """F1, true support and predicted count per class from a float64 confusion matrix."""
    tp = cm.diagonal()
    support, predicted = cm.sum(1), cm.sum(0)
    # 2PR/(P+R) = 2TP/(support + predicted); both are 0 exactly when TP = 0 or the class is unseen.
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    return f1, support, predicted


def classification_metrics(pred: Tensor, target: Tensor, num_classes: int) -> dict[str, float]:
    """accuracy, balanced_accuracy, macro_f1 and weighted_f1 (conventions in the module doc).

    ``pred`` is class indices ``[N]``, or scores ``[N, C]`` (logits or probabilities) whose
    argmax is the class: from scores a NaN can be seen (every metric NaN), from indices it cannot.
    """
    undefined = False
    if isinstance(pred, Tensor) and pred.dtype.is_floating_point and pred.dim() == 2 and pred.shape[1] == num_classes:
        undefined = bool(torch.isnan(pred).any())
        pred = pred.argmax(-1)
    cm = confusion_matrix(pred, target, num_classes).to("cpu", torch.float64)  # C x C: one transfer
    if undefined:
        return dict.fromkeys(TASK_METRICS["classification"], math.nan)
    n = cm.sum()
    f1, support, predicted = _f1_per_class(cm)
    occurs = support > 0
    recall = cm.diagonal()[occurs] / support[occurs]
    seen = occurs | (predicted > 0)
    return {
        "accuracy": float(cm.diagonal().sum() / n),
        "balanced_accuracy": float(recall.mean()),
        "macro_f1": float(f1[seen].mean()),
        "weighted_f1": float((f1 * support).sum() / n),
    }


def _weighted_binary_f1(pred_pos: Tensor, true_pos: Tensor) -> Tensor:
    """Support-weighted F1 over {negative, positive} (MMSA's ``f1_score(average='weighted')``).

    NaN for empty inputs (0 / 0), which is what the ``_nz`` metrics report without non-zero targets.
    """
    cm = torch.bincount(true_pos.long() * 2 + pred_pos.long(), minlength=4).reshape(2, 2).to(torch.float64)
    f1, support, _ = _f1_per_class(cm)
    return (f1 * support).sum() / support.sum()


def regression_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """MAE, MSE, Pearson r and the MOSI/MOSEI sentiment metrics.

    Facts from MMSA's ``metricsTop.py``: ``acc2``/``f1_2`` count ``>= 0`` as positive (for
    targets and predictions); ``acc2_nz``/``f1_2_nz`` keep only non-zero targets and count
    ``> 0`` as positive; both F1s are support-weighted; ``acc7`` clips to [-3, 3] and rounds to
    the nearest integer (halves to even, as ``np.round`` does), ``acc5`` the same on [-2, 2].
    ``corr`` is 0 when either side is constant; the ``_nz`` metrics are NaN without a non-zero
    target; every metric is NaN when a prediction is.
    """
    pred, target = _check_pair(pred, target, "regression_metrics")
    if pred.device.type == "mps":  # no float64 there; the sums are cheap on the host
        pred, target = pred.cpu(), target.cpu()
    p, t = pred.to(torch.float64), target.to(torch.float64)
    err = p - t
    pc, tc = p - p.mean(), t - t.mean()
    constant = (p.max() == p.min()) | (t.max() == t.min())
    corr = torch.where(constant, torch.zeros((), dtype=torch.float64, device=p.device),
                       (pc * tc).sum() / ((pc * pc).sum() * (tc * tc).sum()).sqrt())

    nz = t != 0  # 0 / 0 = NaN below when no target is non-zero
    nz_acc = ((p > 0) == (t > 0))[nz].to(torch.float64).sum() / nz.sum()

    def rounded_acc(bound: float) -> Tensor:
        return (p.clamp(-bound, bound).round() == t.clamp(-bound, bound).round()).to(torch.float64).mean()

    values = {
        "mae": err.abs().mean(),
        "mse": (err * err).mean(),
        "corr": corr,
        "acc2": ((p >= 0) == (t >= 0)).to(torch.float64).mean(),
        "f1_2": _weighted_binary_f1(p >= 0, t >= 0),
        "acc2_nz": nz_acc,
        "f1_2_nz": _weighted_binary_f1((p > 0)[nz], (t > 0)[nz]),
        "acc7": rounded_acc(3.0),
        "acc5": rounded_acc(2.0),
    }
    stacked = torch.stack(list(values.values()))
    numbers = torch.where(torch.isnan(p).any(), torch.full_like(stacked, math.nan), stacked).tolist()  # one transfer
    return dict(zip(values, numbers))
