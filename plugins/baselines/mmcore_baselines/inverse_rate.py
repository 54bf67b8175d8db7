"""``baselines.inverse_rate``: fixed per-modality weights ∝ 1/(1 − missing rate), mean 1 by default.

The obvious answer to imbalanced missing rates, and so the one a learned balancer must beat: a
modality present in a fraction 1 − r_m of the training samples is up-weighted by the inverse
of that fraction, so a modality seen half as often weighs twice as much:

    w_m = M · (1/(1 − r_m)) / Σ_k 1/(1 − r_k)

Normalising to mean 1 (Σ_m w_m = M) keeps the target group's total weight what it is under
``mmcore.uniform``, so a comparison changes *how* the weight is shared, not how much of it
there is; equal rates give exactly the uniform weights. The rates are the training missing
rates the engine injects (the realised per-modality marginals of ``missing.train``).

``norm``/``total`` put the same direction at another scale (``mmcore.weighting``): ``norm: l2,
total: 1`` gives ‖w‖₂ = 1, the scale of ``redcore.relative_advantage``'s β and of
``mmcore.uniform`` at ``norm: l2``, so the three differ only in how the weight is shared.

Target group: ``recon`` by default (``redcore.vib`` and ``baselines.mmin`` produce it, so the
comparison with ``redcore.relative_advantage`` is like for like). Imputers without a
reconstruction (``mmcore.zero``, ``baselines.missing_token``, ``baselines.mean``) have no
``recon`` group: use ``balancer.target: unimodal`` with ``model.unimodal_heads`` on. A target
group the model does not produce is an error at the first step, not a silent no-op.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmcore import Positive
from mmcore.components import Balancer
from mmcore.errors import checker
from mmcore.weighting import Norm, scale_weights

NAME = "baselines.inverse_rate"


def inverse_rate_weights(
    modalities: list[str], missing_rates: dict[str, float], norm: Norm = "mean", total: float = 1.0
) -> list[float]:
    """The weights in modality order, scaled so their ``norm`` is ``total`` (default: mean 1);
    a clear error for a missing or impossible rate."""
    lacking = [m for m in modalities if m not in missing_rates]
    _check(not lacking, f"no missing rate for modalities {lacking} (rates given: {sorted(missing_rates)})")
    for m in modalities:
        rate = float(missing_rates[m])
        _check(
            0.0 <= rate < 1.0,
            f"modality '{m}' has missing rate {round(rate, 12)}; it must be in [0, 1) — a modality missing from every "
            f"training sample has no inverse rate (lower missing.train.rates.{m} or drop the modality)",
        )
    inverse = [1.0 / (1.0 - float(missing_rates[m])) for m in modalities]
    return scale_weights(inverse, norm, total)


class InverseRate(Balancer):
    """Fixed weights ∝ 1/(1 − missing rate) on the target group, normalised to mean 1 by default.

    ``norm: l2, total: 1`` puts them on the unit sphere instead (RedCore's β scale). Logged as
    ``weight.<modality>``.

    Args:
        target: the loss group whose per-modality terms get the weights.
        norm: which size of the weight vector is scaled to ``total``: its mean, or its L2 norm.
        total: the value that norm is scaled to (mean 1 by default).
    """

    needs: frozenset[str] = frozenset()  # fixed weights: no per-step statistics beyond the losses
    target_required = True  # its target must be a loss group of the model (mmcore.lossgroups)

    def __init__(
        self,
        modalities: list[str],
        missing_rates: dict[str, float],
        target: str = "recon",
        norm: Norm = "mean",
        total: Positive = 1.0,
    ) -> None:
        super().__init__(modalities, target=target)
        _check(len(self.modalities) >= 1, "needs at least one modality")
        self.values = inverse_rate_weights(self.modalities, missing_rates, norm, float(total))  # validates the rates
        self.rates = [float(missing_rates[m]) for m in self.modalities]
        self.w = torch.tensor(self.values, dtype=torch.float32)

    def to(self, device: torch.device | str) -> "InverseRate":
        super().to(device)
        self.w = self.w.to(self.device)
        return self

    def weights(self) -> Tensor:
        return self.w

    def log_values(self) -> dict[str, Tensor]:
        return {"weight": self.w}

    def state_dict(self) -> dict[str, Any]:
        # The weights follow from the recipe; saving the rates lets a resume check they still agree.
        return {"modalities": list(self.modalities), "missing_rates": list(self.rates)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"modalities", "missing_rates"} - set(state)
        _check(not missing, f"checkpoint state lacks {', '.join(sorted(missing))}")
        same = list(state["modalities"]) == self.modalities and [float(r) for r in state["missing_rates"]] == self.rates
        _check(
            same,
            f"checkpoint was saved with missing rates {dict(zip(state['modalities'], state['missing_rates']))}, "
            f"this run has {dict(zip(self.modalities, self.rates))}",
        )


InverseRate.contract_options = [{}, {"target": "unimodal"}, {"norm": "l2"}, {"norm": "mean", "total": 2.0}]  # type: ignore[attr-defined]


_check = checker(NAME)  # one-line option errors naming the component
