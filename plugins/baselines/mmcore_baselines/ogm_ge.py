"""``baselines.ogm_ge``: on-the-fly gradient modulation with Gaussian enhancement, for M modalities.

Source: Peng, Wei, Deng, Wang and Hu, "Balanced Multimodal Learning via On-the-fly Gradient
Modulation", CVPR 2022, and the authors' code (github GeWu-Lab/OGM-GE_CVPR2022, ``main.py``,
``train_epoch``), from which the details below were read.

OGM-GE slows down the encoder of the modality that currently dominates. Every step, from the
unimodal heads' mean softmax probability of the true class, conf_m (``StepStats.unimodal_confidence``):

    ratio_m = conf_m / mean_{k≠m} conf_k
    k_m     = 1 − tanh(α·(ratio_m − 1))   if ratio_m > 1, else 1      (formula: shifted, default)
    k_m     = 1 − tanh(α·ratio_m)         if ratio_m > 1, else 1      (formula: reference)
    g       ← k_m·g + N(0, (std(g) + 1e-8)²)   for every gradient g of encoder m   (ge: true)
    g       ← k_m·g                                                                   (ge: false)

std(g) is the (unbiased) standard deviation of the unscaled gradient, as in the reference code.

Generalisation and differences from the reference, which has exactly two modalities:
- ratio: the reference uses score_v / score_a and its inverse; dividing by the mean confidence
  of the *other* modalities is the same for M = 2 and treats every modality alike for M > 2.
  With a single modality there is nothing to compare and k = 1.
- coefficient: the paper (Eq. 10) and code use 1 − tanh(α·ρ), which jumps from 1 to
  1 − tanh(α) as ρ crosses 1. The default ``shifted`` form (the one mmcore's issue asks for)
  is continuous there; ``formula: reference`` restores the paper's.
- scope: the reference modulates only 4-D parameters (the convolution kernels of its ResNet
  encoders); here every parameter of ``model.encoders[m]`` that has a gradient is modulated,
  since mmcore's encoders (MLP, LSTM, transformer) have no convolutions. A 1-element gradient
  has no standard deviation and gets noise of std 1e-8.
- window: the reference modulates during epochs ``modulation_starts`` … ``modulation_ends``
  (inclusive); here ``start_step`` … ``end_step`` (inclusive, optimisation steps; ``null`` = no end).
- signal: the reference's unimodal logits come from splitting its fusion layer; mmcore's come
  from the recipe's unimodal heads (``model.unimodal_heads``), which read the *completed*
  latents, so conf_m also averages over samples where m was imputed. The engine's gradients
  also include the unimodal heads' own losses; they are scaled together with the task's.
- the reference computes k in Python floats (one host sync per step); here k stays on the
  device and the in-window decision is made from the step counter.

Under ``torch.distributed`` the confidences are averaged across ranks, so every rank uses the
same k; the Gaussian noise comes from each rank's own RNG.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from mmcore import Count, NonNegative
from mmcore.components import Balancer
from mmcore.errors import checker
from mmcore.types import StepStats
from mmcore_baselines.checks import confidences, encoder_modules

NAME = "baselines.ogm_ge"
NOISE_FLOOR = 1e-8  # added to std(g), as the reference does


def coefficients(confidence: Tensor, alpha: float, formula: str = "shifted") -> tuple[Tensor, Tensor]:
    """``(ratio, k)``, both ``[M]``, from the per-modality confidences (on their device, no sync)."""
    conf = confidence.float()
    m = conf.shape[0]
    if m < 2:
        return torch.ones_like(conf), torch.ones_like(conf)
    others = (conf.sum() - conf) / (m - 1)
    ratio = conf / others.clamp_min(torch.finfo(conf.dtype).tiny)
    excess = ratio - 1.0 if formula == "shifted" else ratio
    k = torch.where(ratio > 1.0, 1.0 - torch.tanh(alpha * excess), torch.ones_like(ratio))
    return ratio, k


class OGMGE(Balancer):
    """OGM-GE: damp the encoder gradients of modalities whose unimodal head is more confident
    than the others', plus Gaussian noise on encoder gradients (GE). Needs unimodal heads.

    Its loss weights are all 1 (it acts on gradients only); ``target`` just names the group.
    The coefficients k and ratios are logged as ``ogm_coef.<modality>`` and ``ogm_ratio.<modality>``.

    Args:
        target: names the group only; its weights stay 1.
        alpha: strength α of the damping k_m = 1 − tanh(α·(ratio_m − 1)) (reference default 0.1).
        ge: add Gaussian noise with the gradient's own std after scaling (the "GE" of OGM-GE).
        start_step: first optimisation step with modulation.
        end_step: last optimisation step with modulation (inclusive; null: to the end).
        formula: shifted (continuous at ratio 1, the default) or reference (the paper's 1 − tanh(α·ratio)).
    """

    needs = frozenset({"unimodal_confidence"})  # the only balancer here that reads it

    def __init__(
        self,
        modalities: list[str],
        target: str = "unimodal",
        alpha: NonNegative = 0.1,
        ge: bool = True,
        start_step: Count = 0,
        end_step: Count | None = None,
        formula: Literal["shifted", "reference"] = "shifted",
    ) -> None:
        super().__init__(modalities, target=target)
        _check(len(self.modalities) >= 1, "needs at least one modality")
        _check(end_step is None or end_step >= start_step, f"end_step ({end_step}) must be >= start_step ({start_step}) or null")
        self.alpha = float(alpha)
        self.ge = bool(ge)
        self.start_step = int(start_step)
        self.end_step = None if end_step is None else int(end_step)
        self.formula = formula
        m = len(self.modalities)
        self.coef = torch.ones(m)  # k applied at the last modulated step (1 outside the window)
        self.ratio = torch.ones(m)  # ratio seen at the last step

    def to(self, device: torch.device | str) -> "OGMGE":
        super().to(device)
        self.coef, self.ratio = self.coef.to(self.device), self.ratio.to(self.device)
        return self

    def active(self, step: int) -> bool:
        """Whether step ``step`` lies in the modulation window."""
        return self.start_step <= step and (self.end_step is None or step <= self.end_step)

    def modulate_gradients(self, model: nn.Module, stats: StepStats) -> None:
        conf = confidences(NAME, stats, self.device)
        encoders = encoder_modules(NAME, model, self.modalities)
        # pooled over ranks by the engine under data parallelism (mmcore.engine.losses.pool_stats)
        self.ratio, k = coefficients(conf, self.alpha, self.formula)
        if not self.active(stats.step):
            self.coef = torch.ones_like(k)
            return
        self.coef = k
        for i, name in enumerate(self.modalities):
            for param in encoders[name].parameters():
                if param.grad is not None:
                    param.grad = self._modulated(param.grad, k[i])

    def _modulated(self, grad: Tensor, k: Tensor) -> Tensor:
        scaled = grad * k.to(grad.dtype)
        if not self.ge:
            return scaled
        std = grad.std() if grad.numel() > 1 else torch.zeros((), dtype=grad.dtype, device=grad.device)
        return scaled + torch.randn_like(grad) * (std + NOISE_FLOOR)

    def log_values(self) -> dict[str, Tensor]:
        return {"ogm_coef": self.coef, "ogm_ratio": self.ratio}

    def state_dict(self) -> dict[str, Any]:
        # Only what is logged: k is recomputed from each step's statistics, and the GE noise uses
        # the global torch RNG, which the engine checkpoints.
        return {
            "modalities": list(self.modalities),
            "coef": [float(x) for x in self.coef.cpu().tolist()],
            "ratio": [float(x) for x in self.ratio.cpu().tolist()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"modalities", "coef", "ratio"} - set(state)
        _check(not missing, f"checkpoint state lacks {', '.join(sorted(missing))}")
        _check(
            list(state["modalities"]) == self.modalities,
            f"checkpoint was saved for modalities {state['modalities']}, this run has {self.modalities}",
        )
        self.coef = torch.tensor(state["coef"], dtype=torch.float32, device=self.device)
        self.ratio = torch.tensor(state["ratio"], dtype=torch.float32, device=self.device)


# Configurations the core's contract suite builds: the default, and without noise in a window.
OGMGE.contract_options = [{}, {"ge": False, "alpha": 0.5, "start_step": 1, "end_step": 3, "formula": "reference"}]  # type: ignore[attr-defined]


_check = checker(NAME)  # one-line option errors naming the component
