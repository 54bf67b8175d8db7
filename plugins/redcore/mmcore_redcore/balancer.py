"""``redcore.relative_advantage``: per-modality weights β that favour the modality lagging behind.

Source: Sun et al., "RedCore", AAAI 2024, and the authors' code (sunjunaimer/RedCore,
``models/redcore_mmin_model.py``, ``backward``), from which every default below was read.

Each step, with L_m the step's loss of the target group (``recon`` by default) for modality m:

    L̄_m ← (1−ρ)·L̄_m + ρ·L_m                      (ρ = 0.7; skipped if m had no present sample)
    ra_m = (mean_k L̄_k − L̄_m) / mean_k L̄_k       (relative advantage; Σ_m ra_m = 0)
    η ← η·growth           when step % eta_every == 0  (0.1, ×1.5 every 500 steps)
    β ← P(β − η·ra)        when step % interval == 0   (every 3 steps)

P is clamp-at-β_min-then-normalise (the reference) or the exact projection onto
{‖β‖₂ = 1, β ≥ β_min}. A modality reconstructed worse than average has ra < 0, so its β grows.

Matching the reference, and where we differ:
- η also grows at step 0 (0 % 500 == 0), so the first β update already uses η = 0.15.
- L̄ starts at 0 for every modality, as in the reference.
- β starts at 1 for every modality (‖β‖ = √M until the first update).
- One step of lag: the reference updates β from the current batch's loss *before* weighting that
  same loss; here ``observe`` runs after the optimiser step, so β built from step t weighs step
  t+1. Step 0 is therefore weighted by β = 1.
- The reference skips the EMA only when a modality's loss is exactly 0 (a batch with no present
  sample would give it NaN); we skip exactly when ``present_counts`` is 0 or the loss is not finite.
- The observed losses are the imputer's terms, already multiplied by its ``recon_weight``.
  Relative advantage is invariant to a common scale, so β evolves as with the unscaled losses;
  only the logged L̄ carries the factor.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from torch import Tensor

from mmcore import Above, Between, NonNegative, Positive, PositiveInt
from mmcore.components import Balancer
from mmcore.errors import checker
from mmcore.types import StepStats
from mmcore_redcore.projection import clamp_normalize, project_exact

NAME = "redcore.relative_advantage"


class RelativeAdvantage(Balancer):
    """RedCore's relative-advantage weights for one loss group (default ``recon``).

    β moves against each modality's relative advantage every ``interval`` steps and stays on the
    unit sphere with floor ``beta_min``. ``projection: exact`` uses the true Euclidean projection
    instead of the reference's clamp-then-normalise.

    Args:
        target: the loss group whose per-modality terms β weighs and whose losses drive it.
        rho: weight of the newest loss in the moving average L̄ ← (1−ρ)·L̄ + ρ·L (reference: 0.7).
        interval: steps between updates of β (reference: every 3 steps).
        eta: initial step size η of the β update.
        eta_growth: factor η is multiplied by every ``eta_every`` steps (reference: 1.5).
        eta_every: steps between growths of η (reference: 500).
        beta_min: floor of every β_m on the unit sphere; at most 1/√M for M modalities.
        projection: clamp floors then normalises (the reference); exact is the Euclidean
            projection onto {‖β‖ = 1, β ≥ beta_min}.
    """

    needs: frozenset[str] = frozenset()  # reads only the loss terms and present counts
    target_required = True  # its target must be a loss group of the model (mmcore.lossgroups)

    def __init__(
        self,
        modalities: list[str],
        target: str = "recon",
        rho: Annotated[float, Above(0.0), Between(0.0, 1.0)] = 0.7,
        interval: PositiveInt = 3,
        eta: NonNegative = 0.1,
        eta_growth: Positive = 1.5,
        eta_every: PositiveInt = 500,
        beta_min: float = 0.1,
        projection: Literal["clamp", "exact"] = "clamp",
    ) -> None:
        super().__init__(modalities, target=target)
        m = len(self.modalities)
        _check(m >= 1, "needs at least one modality")
        limit = 1.0 / math.sqrt(m)
        _check(
            0.0 <= beta_min <= limit,
            f"beta_min must be in [0, 1/sqrt(M)] = [0, {limit:.4g}] for {m} modalities "
            f"(a larger floor leaves no unit vector), got {beta_min}",
        )
        self.rho = float(rho)
        self.interval = int(interval)
        self.eta = float(eta)  # Python number: it changes on a schedule known on the host
        self.eta_growth = float(eta_growth)
        self.eta_every = int(eta_every)
        self.beta_min = float(beta_min)
        self.projection = projection
        self.step = 0  # observations so far (= optimisation steps)
        self.beta = torch.ones(m)
        self.ema = torch.zeros(m)  # L̄, starts at 0 as in the reference

    def to(self, device: torch.device | str) -> "RelativeAdvantage":
        super().to(device)
        self.beta = self.beta.to(self.device)
        self.ema = self.ema.to(self.device)
        return self

    def weights(self) -> Tensor:
        # Updates replace the tensor rather than writing into it, so a β captured by autograd
        # for this step's backward is never modified behind its back.
        return self.beta

    def observe(self, stats: StepStats) -> None:
        # the target group exists: target_required makes validation and the engine's first step check it
        losses = stats.losses[self.target].detach().to(self.device, torch.float32)
        counts = stats.present_counts.detach().to(self.device, torch.float32)
        # under data parallelism these are already pooled over ranks by the engine (mmcore.engine.losses.pool_stats)

        seen = (counts > 0) & torch.isfinite(losses)
        blended = (1.0 - self.rho) * self.ema + self.rho * losses
        self.ema = torch.where(seen, blended, self.ema)

        if self.step % self.eta_every == 0:  # includes step 0, as the reference does
            self.eta *= self.eta_growth
        if self.step % self.interval == 0:
            self.beta = self._project(self.beta - self.eta * relative_advantage(self.ema))
        self.step += 1

    def _project(self, v: Tensor) -> Tensor:
        if self.projection == "exact":
            return project_exact(v, self.beta_min)
        return clamp_normalize(v, self.beta_min)

    def log_values(self) -> dict[str, Tensor]:
        # [M] tensors: the engine writes them as "beta.<modality>" and "<target>_ema.<modality>".
        return {"beta": self.beta, f"{self.target}_ema": self.ema}

    def state_dict(self) -> dict[str, Any]:
        # float32 -> Python float -> JSON text -> float -> float32 is exact, so resume is exact.
        return {
            "modalities": list(self.modalities),
            "target": self.target,
            "beta": [float(x) for x in self.beta.cpu().tolist()],
            "ema": [float(x) for x in self.ema.cpu().tolist()],
            "eta": self.eta,
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = {"modalities", "target", "beta", "ema", "eta", "step"}
        missing = expected - set(state)
        _check(not missing, f"checkpoint state lacks {', '.join(sorted(missing))}")
        _check(
            list(state["modalities"]) == self.modalities,
            f"checkpoint was saved for modalities {state['modalities']}, this run has {self.modalities}",
        )
        _check(state["target"] == self.target, f"checkpoint targets '{state['target']}', this run '{self.target}'")
        m = len(self.modalities)
        _check(
            len(state["beta"]) == m and len(state["ema"]) == m,
            f"checkpoint beta/ema must have {m} entries, got {len(state['beta'])} and {len(state['ema'])}",
        )
        self.beta = torch.tensor(state["beta"], dtype=torch.float32, device=self.device)
        self.ema = torch.tensor(state["ema"], dtype=torch.float32, device=self.device)
        self.eta = float(state["eta"])
        self.step = int(state["step"])


# Configurations the core's contract suite (mmcore.testing) builds and checks.
RelativeAdvantage.contract_options = [  # type: ignore[attr-defined]
    {},
    {"projection": "exact", "interval": 1, "eta_every": 2},
]


def relative_advantage(ema: Tensor) -> Tensor:
    """ra_m = (mean L̄ − L̄_m) / mean L̄; all zeros while every L̄ is still 0 (the reference divides by 0)."""
    mean = ema.mean()
    ra = (mean - ema) / mean.clamp_min(torch.finfo(ema.dtype).tiny)
    return torch.where(mean > 0, ra, torch.zeros_like(ra))


_check = checker(NAME)  # one-line option errors naming the component
