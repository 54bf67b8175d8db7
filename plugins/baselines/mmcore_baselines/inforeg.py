"""``baselines.inforeg``: Information Acquisition Regulation in the prime learning window, for M modalities.

Source: Huang, Wei, Yang and Hu, "Adaptive Unimodal Regulation for Balanced Multimodal Information
Acquisition", CVPR 2025 (arXiv 2503.18595), and the authors' code (github
GeWu-Lab/InfoReg_CVPR2025, ``main.py``, ``train_epoch``, revision of 2025-11-04), from which the
rule and the defaults below were read (the paper's own equations could not be read here).

Information amount. The trace of the (empirical) Fisher information of encoder m over epoch e,
summed over the steps t of the epoch and over the weight tensors W of the encoder:

    I_m(e) = Σ_W mean_elements( Σ_t g_t(W)² )  =  Σ_t Σ_W mean(g_t(W)²)

Prime learning window. With the traces of the epochs done, padded in front with ``window`` (10)
zeros as the reference's lists are, and Ī, Ī' the means of the last ``window`` entries and of
the ``window`` entries before the last one:

    rate_m = (Ī_m − Ī'_m) / Ī_m          (1 before the first epoch ends; 0 when Ī_m = 0)
    m is in its window during the next epoch  ⇔  rate_m > threshold (0.05)

Regulation. Each step, from the unimodal scores s_m (the sum over the batch of the true-class
probability, as the reference's ``score_a``/``score_v``):

    gap_m  = s_m − mean_{k≠m} s_k
    β_m    = beta · exp(tanh(gap_m))    if gap_m > 0 and m is in its window, else 0   (beta 0.95)
    g      ← g + β_m · (θ − θ_m^start)  for every parameter θ of encoder m with a gradient

θ_m^start is encoder m's parameters at the start of the epoch (the reference's ``deepcopy`` of
the model at each epoch's start), so this is the gradient of the proximal term
β_m/2 · ‖θ_m − θ_m^start‖²: the modality that leads acquires information more slowly. The trace
is accumulated after the proximal term is added, as in the reference.

Hooks: ``needs = {"unimodal_confidence"}``; ``modulate_gradients`` (snapshot at an epoch's first
step, proximal term, trace); ``end_epoch`` (the epoch's trace into the history, the window).

Generalisation and differences from the reference (two modalities, audio and visual):
- M modalities: the gap compares m with the mean score of the others, so for M = 2 the leader
  gets exactly the reference's β and the other 0; for M > 2 every modality above the others'
  mean is regulated. One modality: nothing to compare, β = 0.
- window per modality: the reference decides the window for both modalities from the audio
  (information-sufficient, on its data) trace only; here each modality's own trace decides when
  its regulation may apply, which is the same wherever the leader is the modality that decides.
- one ``beta`` for every modality: the reference uses 0.95 when audio leads and 0.1 when visual
  leads (constants tuned to which modality dominates CREMA-D).
- the older revision (2025-03-26) used threshold 0.04 and its visual branch could never run
  (``score_v < score_a`` twice); the newer one, followed here, has 0.05 and the symmetric test.
- weights counted in the trace: the reference's ``nn.Linear``/``nn.Conv2d`` weights; here every
  parameter of ``model.encoders[m]`` with more than one dimension (LSTM and attention matrices
  too), with a gradient this step. The proximal term goes to every parameter with a gradient (a
  parameter without one is left alone, so the optimiser still skips it).
- scores: the reference splits its fusion layer into unimodal logits; mmcore's come from the
  recipe's unimodal heads (``model.unimodal_heads``), which read the completed latents, so a
  score also counts samples where m was imputed. ``score: mean`` uses the mean probability
  instead of the sum (the sum's gap is in samples, so tanh saturates within a couple of them).
- optimiser and clipping are the recipe's: the reference trains with SGD (lr 0.002, momentum 0.9,
  weight decay 1e-4) and no clipping; under Adam the proximal gradient is normalised with the
  rest, and ``train.grad_clip`` applies after it.
- everything stays on the device (the reference reads scores and traces as Python numbers); the
  window is decided once an epoch.
- a checkpoint written mid-epoch stores θ^start (as lists, in ``state.json``) so that a resumed
  run equals an uninterrupted one; at an epoch's end there is none to store (the next step takes it).
- classification only (scores are class probabilities).

Under data parallelism the confidences are pooled by the engine and the gradients are the
all-reduced ones, so β, the traces and θ^start agree on every rank.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

import torch
from torch import Tensor, nn

from mmcore import NonNegative, PositiveInt
from mmcore.components import Balancer, EpochView
from mmcore.errors import checker
from mmcore.types import StepStats
from mmcore_baselines.checks import confidences, encoder_modules

NAME = "baselines.inforeg"


def information_amount(grads: Iterable[Tensor]) -> Tensor:
    """One step's share of the trace: Σ over weight tensors (more than one dimension) of mean(g²)."""
    parts = [g.float().square().mean() for g in grads if g.dim() > 1]
    return torch.stack(parts).sum() if parts else torch.zeros(())


def acquisition_rate(history: Tensor, window: int) -> Tensor:
    """``[M]`` (Ī − Ī') / Ī from the ``[E, M]`` per-epoch traces, zero-padded in front by ``window``."""
    m = history.shape[1]
    if history.shape[0] == 0:
        return torch.ones(m, dtype=torch.float32, device=history.device)
    padded = torch.cat([torch.zeros(window, m, dtype=history.dtype, device=history.device), history])
    new, old = padded[-window:].mean(0), padded[-window - 1 : -1].mean(0)
    return torch.where(new > 0, (new - old) / torch.where(new > 0, new, torch.ones_like(new)), torch.zeros_like(new))


def regulation_coefficients(score: Tensor, active: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """``(gap, β)``, both ``[M]``: gap to the others' mean score, and β for the leaders in their window."""
    score = score.float()
    m = score.numel()
    if m < 2:
        return torch.zeros_like(score), torch.zeros_like(score)
    gap = score - (score.sum() - score) / (m - 1)
    coef = torch.where(active & (gap > 0), beta * torch.exp(torch.tanh(gap)), torch.zeros_like(gap))
    return gap, coef


class InfoReg(Balancer):
    """InfoReg: while a modality's information amount still grows fast (its prime learning window),
    a proximal term to its epoch-start parameters slows its encoder when its unimodal head leads.
    Needs unimodal heads; classification only.

    Logged as ``inforeg_coef.<modality>`` (β), ``inforeg_rate.<modality>`` (the acquisition rate
    deciding this epoch's window) and ``inforeg_trace.<modality>`` (the last epoch's trace).

    Args:
        target: names the group only; its weights stay 1 (InfoReg acts on gradients).
        beta: base coefficient of the proximal term (the reference's 0.95).
        threshold: a modality is in its window while its acquisition rate exceeds this (0.05).
        window: epochs in each moving average of the trace (the reference's 10).
        score: ``sum``: the unimodal score is the batch's sum of true-class probabilities (the
            reference); ``mean``: their mean.
    """

    needs = frozenset({"unimodal_confidence"})
    target_required = False
    task_kinds = ("classification",)  # checked by mmcore validate against the dataset's task

    def __init__(
        self,
        modalities: list[str],
        target: str = "unimodal",
        beta: NonNegative = 0.95,
        threshold: float = 0.05,
        window: PositiveInt = 10,
        score: Literal["sum", "mean"] = "sum",
    ) -> None:
        super().__init__(modalities, target=target)
        _check(len(self.modalities) >= 1, "needs at least one modality")
        _check(math.isfinite(threshold), f"threshold must be a finite number, got {threshold}")
        self.beta, self.threshold, self.window, self.score = float(beta), float(threshold), int(window), score
        m = len(self.modalities)
        self.epochs = 0  # epochs done
        self.history = torch.zeros(0, m)  # [E, M] trace of every epoch done
        self.trace = torch.zeros(m)  # this epoch's trace so far
        self.rate = torch.ones(m)  # acquisition rate deciding this epoch's window
        self.coef = torch.zeros(m)  # β of the last step
        self.gap = torch.zeros(m)  # score gap of the last step
        self.anchor: dict[str, list[Tensor]] | None = None  # θ^start; None: taken at the next step
        self.anchor_loaded = False  # θ^start came from a checkpoint and is not yet checked against the model

    def to(self, device: torch.device | str) -> "InfoReg":
        super().to(device)
        for key in ("history", "trace", "rate", "coef", "gap"):
            setattr(self, key, getattr(self, key).to(self.device))
        if self.anchor is not None:
            self.anchor = {n: [t.to(self.device) for t in ts] for n, ts in self.anchor.items()}
        return self

    def modulate_gradients(self, model: nn.Module, stats: StepStats) -> None:
        conf = confidences(NAME, stats, self.device)
        encoders = encoder_modules(NAME, model, self.modalities)
        params = {n: [p for p in encoders[n].parameters() if p.requires_grad] for n in self.modalities}
        if self.anchor is None:  # the first step of an epoch: its parameters are the epoch's start
            self.anchor = {n: [p.detach().clone() for p in ps] for n, ps in params.items()}
        elif self.anchor_loaded:  # from a checkpoint: check once that it fits this model
            self._check_anchor(params)
            self.anchor_loaded = False
        score = conf * float(stats.batch_size) if self.score == "sum" else conf
        self.gap, self.coef = regulation_coefficients(score, self.rate > self.threshold, self.beta)
        traces = []
        for i, name in enumerate(self.modalities):
            beta = self.coef[i]
            for p, start in zip(params[name], self.anchor[name]):
                if p.grad is not None:
                    p.grad = p.grad + beta.to(p.grad.dtype) * (p.detach() - start)
            traces.append(information_amount(p.grad for p in params[name] if p.grad is not None).to(self.device))
        self.trace = self.trace + torch.stack(traces)

    def end_epoch(self, view: EpochView) -> None:
        self.history = torch.cat([self.history, self.trace.unsqueeze(0)])
        self.trace = torch.zeros_like(self.trace)
        self.rate = acquisition_rate(self.history, self.window)
        self.anchor, self.epochs = None, view.epoch

    def log_values(self) -> dict[str, Tensor]:
        last = self.history[-1] if self.history.shape[0] else torch.zeros_like(self.trace)
        return {"inforeg_coef": self.coef, "inforeg_rate": self.rate, "inforeg_trace": last}

    def state_dict(self) -> dict[str, Any]:
        # float32 -> JSON -> float32 is exact; rate is recomputed from the history on load.
        anchor = None
        if self.anchor is not None:
            anchor = {n: [_tensor_json(t) for t in ts] for n, ts in self.anchor.items()}
        return {
            "modalities": list(self.modalities),
            "epochs": self.epochs,
            "history": self.history.cpu().tolist(),
            "trace": self.trace.cpu().tolist(),
            "coef": self.coef.cpu().tolist(),
            "gap": self.gap.cpu().tolist(),
            "anchor": anchor,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = {"modalities", "epochs", "history", "trace", "coef", "gap", "anchor"} - set(state)
        _check(not missing, f"checkpoint state lacks {', '.join(sorted(missing))}")
        _check(
            list(state["modalities"]) == self.modalities,
            f"checkpoint was saved for modalities {state['modalities']}, this run has {self.modalities}",
        )
        m, dev = len(self.modalities), self.device
        self.epochs = int(state["epochs"])
        self.history = torch.tensor(state["history"], dtype=torch.float32, device=dev).reshape(-1, m)
        self.trace = torch.tensor(state["trace"], dtype=torch.float32, device=dev)
        self.coef = torch.tensor(state["coef"], dtype=torch.float32, device=dev)
        self.gap = torch.tensor(state["gap"], dtype=torch.float32, device=dev)
        self.rate = acquisition_rate(self.history, self.window)
        anchor = state["anchor"]
        self.anchor = None
        if anchor is not None:
            _check(sorted(anchor) == sorted(self.modalities), f"checkpoint anchors are for {sorted(anchor)}, not {self.modalities}")
            self.anchor = {n: [_tensor_from_json(a, dev) for a in anchor[n]] for n in self.modalities}
            self.anchor_loaded = True

    def _check_anchor(self, params: dict[str, list[nn.Parameter]]) -> None:
        assert self.anchor is not None
        for name, ps in params.items():
            shapes = [tuple(p.shape) for p in ps]
            _check(
                [tuple(t.shape) for t in self.anchor[name]] == shapes,
                f"the epoch-start parameters of encoder {name!r} (from the checkpoint) do not match the model's {shapes}",
            )


# Configurations the core's contract suite builds: the default, and mean scores in a short window.
InfoReg.contract_options = [{}, {"score": "mean", "beta": 2.0, "threshold": -1.0, "window": 2}]  # type: ignore[attr-defined]


def _tensor_json(t: Tensor) -> dict[str, Any]:
    """A tensor as JSON, exactly: float32 (or bf16) values are exact as Python floats."""
    return {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch."), "values": t.flatten().cpu().tolist()}


def _tensor_from_json(data: dict[str, Any], device: torch.device) -> Tensor:
    return torch.tensor(data["values"], dtype=getattr(torch, data["dtype"]), device=device).reshape(data["shape"])


_check = checker(NAME)  # one-line option errors naming the component
