"""Bayes ceilings: the best any model can score on a condition, for data whose law is known.

Why it exists: a method's accuracy means little without the ceiling next to it; on the
shared-latent generator (:mod:`mmcore.builtins.latent`) the ceiling is computable, so ``eval.json``
carries it as an ``oracle`` entry and ``eval``/``report``/studies show the gap.

The closed form. Over the present modalities' signal coordinates (each modality's frame mean
projected on its embedding; the orthogonal rest is pure noise), every class mean is ``b ⊗ mu_y``
and the covariance is ``S ⊗ I_K`` with, per present modality m (shared block, private block)::

    b = (alpha_m, gamma_m),  S = tau^2 a a^T + diag(v_m, v_m),  a = (alpha_m, 0),
    v_m = nuisance^2 + noise^2 / L_m        (L_m: valid frames; 1 for a vector)

so in whitened coordinates the class means are the unit simplex scaled by ``sqrt(b^T S^-1 b)``,
and the Bayes accuracy of C equiprobable classes on a regular simplex with pairwise distance d
in isotropic unit noise is (Proakis, *Digital Communications*, orthogonal/simplex signalling)::

    P(correct) = ∫ φ(u - d/√2) Φ(u)^(C-1) du

evaluated here by the trapezoid rule on a fine grid (error far below 1e-6). Regression's Bayes
MSE is the posterior variance of the target, Gaussian conditioning on two latent coordinates.
Per sample, lengths differ, so a condition's ceiling is the mean over the split's samples of
each sample's own ceiling given its pattern and lengths: the expected accuracy of the Bayes
classifier on exactly that evaluation set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmcore.builtins.latent import LatentParams

ORACLE = "oracle"  # eval.json's key: {"method": ..., "results": {split: {condition: {metric: value}}}}


def _block(params: LatentParams, present: Tensor, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(b, a, v) over the 2·|present| signal blocks of one pattern (float64)."""
    idx = torch.nonzero(present).squeeze(1)
    alpha = torch.tensor(params.alpha, dtype=torch.float64)[idx]
    gamma = torch.tensor(params.gamma, dtype=torch.float64)[idx]
    v = params.nuisance**2 + params.noise**2 / frames[idx].to(torch.float64)
    b = torch.stack([alpha, gamma], 1).reshape(-1)
    a = torch.stack([alpha, torch.zeros_like(alpha)], 1).reshape(-1)
    return b, a, v.repeat_interleave(2)


def bayes_snr(params: LatentParams, present: Tensor, frames: Tensor) -> float:
    """``sqrt(b^T S^-1 b)``: the whitened distance of a class mean from the origin."""
    b, a, v = _block(params, present, frames)
    cov = params.tau**2 * torch.outer(a, a) + torch.diag(v)
    return math.sqrt(float(b @ torch.linalg.solve(cov, b)))


def simplex_accuracy(snr: Tensor, classes: int) -> Tensor:
    """P(correct) for C classes on a unit regular simplex scaled by ``snr``, unit isotropic noise."""
    shift = snr.to(torch.float64) * math.sqrt(2 * classes / (classes - 1)) / math.sqrt(2)  # d / √2
    u = torch.linspace(-9.0, 9.0, 6001, dtype=torch.float64)
    cdf = 0.5 * torch.erfc(-u / math.sqrt(2))  # Φ(u)
    pdf = torch.exp(-0.5 * (u.unsqueeze(0) - shift.unsqueeze(1)) ** 2) / math.sqrt(2 * math.pi)
    body = pdf * cdf.pow(classes - 1)
    # the grid is centred on 0 and wide enough for snr up to ~6; beyond that accuracy is 1 to 1e-9
    return torch.where(shift > 8.0, torch.ones_like(shift), torch.trapezoid(body, u, dim=1))


def bayes_mse(params: LatentParams, present: Tensor, frames: Tensor) -> float:
    """Posterior variance of the regression target given the present modalities."""
    idx = torch.nonzero(present).squeeze(1)
    v = params.nuisance**2 + params.noise**2 / frames[idx].to(torch.float64)
    rows, noise = [], []
    for j, m in enumerate(idx.tolist()):  # observations of (g, xi): shared and private coordinates
        rows += [[params.alpha[m], params.alpha[m] * params.tau], [params.gamma[m], 0.0]]
        noise += [float(v[j])] * 2
    h = torch.tensor(rows, dtype=torch.float64)
    precision = torch.eye(2, dtype=torch.float64) + h.T @ torch.diag(1.0 / torch.tensor(noise, dtype=torch.float64)) @ h
    c = torch.tensor([1.0, params.tau], dtype=torch.float64)
    return float(c @ torch.linalg.solve(precision, c))


def per_sample(params: LatentParams, masks: Tensor, frames: Tensor) -> Tensor:
    """Each row's ceiling (accuracy or MSE) given its pattern ``[N, M]`` and frame counts ``[N, M]``.

    Rows share a few (pattern, lengths) keys, so each key is solved once.
    """
    key = torch.cat([masks.long(), torch.where(masks, frames.long(), 0)], dim=1).cpu()
    keys, inverse = torch.unique(key, dim=0, return_inverse=True)
    m = masks.shape[1]
    values = []
    for row in keys:
        present, count = row[:m].bool(), row[m:].clamp(min=1)
        if not bool(present.any()):  # nothing present: chance (or the target's variance)
            values.append(float("nan"))
            continue
        values.append(bayes_mse(params, present, count) if params.regression else bayes_snr(params, present, count))
    out = torch.tensor(values, dtype=torch.float64)
    if not params.regression:
        none = torch.isnan(out)
        out = torch.where(none, torch.full_like(out, 1.0 / params.classes), simplex_accuracy(out.nan_to_num(0.0), params.classes))
    else:
        out = out.nan_to_num(1.0 + params.tau**2)  # the prior variance of the target
    return out[inverse]


def zero_fill_snr(params: LatentParams, present: Tensor) -> float:
    """Whitened margin of the complete-data Bayes classifier (vectors) when absent inputs are zeroed."""
    every = torch.ones(len(params.alpha), dtype=torch.bool)
    ones = torch.ones(len(params.alpha), dtype=torch.float64)
    b, a, v = _block(params, every, ones)
    cov = params.tau**2 * torch.outer(a, a) + torch.diag(v)
    w = torch.linalg.solve(cov, b)
    keep = present.repeat_interleave(2)
    w, b, cov = w[keep], b[keep], cov[keep][:, keep]
    return float(w @ b) / math.sqrt(float(w @ cov @ w))


def frame_counts(split: Any, names: list[str]) -> Tensor:
    """``[N, M]`` valid frames per row and modality (1 for vectors), from a split's lengths."""
    n = len(split.target)
    cols = [split.lengths[m].cpu() if m in split.lengths else torch.ones(n, dtype=torch.int64) for m in names]
    return torch.stack(cols, 1)


def oracle_entry(dataset: Any, splits: dict[str, Any], masks: dict[str, dict[str, Tensor]]) -> dict[str, Any] | None:
    """The ``oracle`` entry for a dataset with the optional ``oracle(split, masks)`` method, or None.

    ``masks``: split -> condition -> ``[N, M]`` bool. The average row is the unweighted mean over
    conditions, as for the model's numbers.
    """
    method = getattr(dataset, "oracle", None)
    if not callable(method):
        return None
    results: dict[str, Any] = {}
    for split, table_masks in masks.items():
        table = method(splits[split], table_masks)
        if table is None:
            return None
        metrics = list(next(iter(table.values())))
        table["average"] = {k: sum(row[k] for row in table.values()) / len(table) for k in metrics}
        results[split] = table
    return {"method": str(getattr(dataset, "oracle_method", type(dataset).__name__)), "results": results}


def write_oracle(run_dir: Path, oracle: dict[str, Any] | None) -> None:
    """Add the ``oracle`` entry to an existing ``eval.json`` (no-op when the data has none)."""
    if oracle is None:
        return
    path = Path(run_dir) / "eval.json"
    data = json.loads(path.read_text())
    data[ORACLE] = oracle
    path.write_text(json.dumps(data, indent=1))


def read_oracle(run_dir: Path | str) -> dict[str, Any] | None:
    """The ``oracle`` entry of a run's (or an ``evals/<label>/``'s) ``eval.json``, or None.

    The reader studies and reports use: ``{"method": str, "results": {split: {condition: {metric: value}}}}``.
    """
    path = Path(run_dir) / "eval.json"
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get(ORACLE)
    return entry if isinstance(entry, dict) else None


def gap_rows(results: dict[str, dict[str, float]], oracle: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per condition: the ceiling (and its standard error, if Monte Carlo) and the model's gap to
    it, for every metric both have."""
    rows: dict[str, dict[str, float]] = {}
    for condition, ceiling in oracle.items():
        model = results.get(condition, {})
        rows[condition] = {}
        for metric, best in ceiling.items():
            if metric in model:
                rows[condition][f"{metric}_ceiling"] = best
                if f"{metric}_se" in ceiling:  # a Monte Carlo ceiling's standard error
                    rows[condition][f"{metric}_ceiling_se"] = ceiling[f"{metric}_se"]
                rows[condition][f"{metric}_gap"] = best - model[metric] if metric != "mse" else model[metric] - best
    return rows
