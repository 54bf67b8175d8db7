"""``baselines.mmin``: MMIN's cascade residual autoencoder imagines absent latents from present ones.

Source: Zhao, Li and Jin, "Missing Modality Imagination Network for Emotion Recognition with
Uncertain Missing Modalities", ACL 2021, and the authors' code (github AIM3-RUC/MMIN:
``models/networks/autoencoder.py`` ``ResidualAE``, ``models/mmin_model.py``, ``scripts/mmin.sh``),
from which the architecture and the defaults were read.

The network (the reference's ResidualAE). With x the concatenation of the M latents, absent
ones zeroed, and blocks i = 1 … n, each an MLP encoder (in→hidden…, LeakyReLU between layers)
and a mirrored decoder (…→in, ReLU between layers):

    x_1 = x,   out_0 = 0,   x_i = x_{i−1} + out_{i−1},   out_i = decoder_i(encoder_i(x_i))
    imagined = transition(x_n + out_n)          transition = Linear → ReLU → Linear

Losses, one term per modality (groups ``recon`` and, with ``cycle_weight > 0``, ``cycle``):

    recon_m = (recon_weight / M) · mean over samples where m is present of ‖imagined_m − h_m‖² / d
    cycle_m = (cycle_weight / M) · mean over samples where m was visible of ‖back_m − x_m‖² / d

``back = backward_AE(imagined)`` is MMIN's cycle: a second autoencoder maps the imagined vector
back to the autoencoder's input. Dividing by M·d makes ``recon_weight`` and ``cycle_weight`` the
reference's ``mse_weight`` (4) and ``cycle_weight`` (2), which weigh an ``nn.MSELoss`` over
the whole concatenated vector. The completed latent is h_m where m is present, imagined_m where absent.

How the training signal is adapted — MMIN assumes complete training data:
- MMIN trains on complete data: it hides modalities itself (each sample gets one of the
  patterns with at least one modality present and one hidden, redrawn every epoch) and its
  target is a *pretrained, frozen* full-modality encoder's embedding of the hidden modalities.
  With missing training data there is no complete sample and no such teacher. The target here
  is the model's own encoding h_m, which exists only where m is present, so ``recon`` is
  averaged over present samples and is exactly 0 for a modality absent from the whole batch.
- To keep MMIN's "imagine what is hidden" task, training hides each *present* modality of a
  row from the autoencoder's input when a draw with probability ``hide_rate`` (0.5 by default)
  picks it; a row whose every present modality was drawn stays unhidden, so with three
  present modalities each is hidden 37.5% of the time at 0.5, not the 50% of MMIN's six
  uniform patterns (``mmcore.hiding.hidden_fraction``; no rate reaches 50%). ``hide_rule:
  subsets`` draws MMIN's own way instead: a row is hidden with probability ``hide_rate`` and then
  shows a uniformly drawn proper non-empty subset of its present modalities, so each is hidden
  ``hide_rate``/2 of the time and ``hide_rate: 1`` with three complete modalities is MMIN's six
  uniform patterns (``mmcore.hiding`` has the source and how rows missing modalities differ).
  The default stays ``independent``, the rule every earlier run used. The recon target of a
  hidden modality is its real encoding, so those terms teach imagination; visible ones teach
  the autoencoder to pass its input through. With ``hide_rate: 0`` the input holds every
  target and the autoencoder can satisfy ``recon`` by copying: it then learns little about
  absent modalities. Evaluation hides nothing. The rule is ``mmcore.hiding``'s, shared with
  ``redcore.vib``; ``hide_scope: imputer`` (the default) hides from the autoencoder's input only
  and the fusion head reads the real latent of a hidden modality; ``hide_scope: model`` gives
  the fusion head the imagined latent instead, as MMIN's classifier reads only what its
  autoencoder produced from the visible part.
- The teacher is frozen in MMIN (its embeddings are computed under no_grad); ``detach_target``
  (default true) does the same to h_m. The input x is not detached: the encoders learn from
  both the task and the reconstruction, as MMIN's encoders (initialised from the teacher) do.
- MMIN's target for a *visible* modality is the teacher's embedding of an all-zero input (it
  encodes only the hidden part of each sample); here it is the modality's own encoding.
- MMIN's classifier reads the concatenated bottlenecks of the autoencoder blocks; here the
  recipe's fusion head reads the completed latents, like every other imputer in mmcore.
- MMIN's cycle term also asks the backward autoencoder to output zeros at hidden positions;
  here it is computed on visible positions only, so every per-modality term is 0 for a
  modality with no visible sample. MMIN's scripts initialise weights with ``--init_type normal``
  (gain 0.012 by default); here PyTorch's default initialisation is kept.
"""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from mmcore import NonNegative, PositiveInt, Rate
from mmcore.errors import DataError, checker
from mmcore.hiding import HideRule, HideScope, complete, hide, rate_problem
from mmcore.nn import ResidualCascade, mlp
from mmcore.options.hints import NonEmpty
from mmcore.types import ImputerOutput, ModalitySpec

NAME = "baselines.mmin"


class ResidualAutoencoder(ResidualCascade):
    """MMIN's ResidualAE: ``blocks`` MLP autoencoders in cascade (``mmcore.nn.ResidualCascade``),
    then a two-layer transition back to the input width."""

    def __init__(self, width: int, hidden: list[int], blocks: int) -> None:
        super().__init__(width, hidden, blocks)
        self.transition = mlp(width, [width], width)

    def forward(self, x: Tensor) -> Tensor:
        return self.transition(self.cascade(x))


class MMINImputer(nn.Module):
    """MMIN's imagination module: a cascade residual autoencoder reads every latent (absent ones
    zeroed) and imagines all of them; absent latents are replaced by their imagined values.

    Trained by reconstructing present latents, some of which are hidden from its input during
    training (``hide_rate``), plus MMIN's optional cycle term.

    Args:
        hidden: widths of each residual block's encoder, its decoder mirrors them (MMIN scripts:
            AE_layers 256,128,64).
        blocks: residual autoencoder blocks in the cascade (MMIN scripts: n_blocks 5).
        recon_weight: factor on each modality's reconstruction term (MMIN scripts: mse_weight 4).
        cycle_weight: factor on the cycle term of the backward autoencoder (MMIN scripts: 2); 0
            removes the backward autoencoder and its ``cycle`` group.
        hide_rate: in training, probability of drawing each present modality for hiding from the
            autoencoder's input while it stays a reconstruction target; a row whose every
            present modality is drawn hides none (mmcore.hiding: 0.5 hides 37.5% of three); under
            hide_rule subsets, probability of hiding a row (1 is MMIN's own).
        hide_rule: independent draws each present modality (the rule of every earlier run; 1 is
            not a hide_rate here); subsets hides a row, then shows a uniform proper non-empty
            subset of its present modalities, each hidden hide_rate/2 of the time, MMIN's draw.
        hide_scope: imputer hides from the autoencoder only; model also gives the fusion and
            unimodal heads the imagined value of a hidden modality (mmcore.hiding).
        detach_target: stop gradients through the reconstruction targets (the present latents).
    """

    @staticmethod
    def loss_groups(cycle_weight: float = 2.0, **_: object) -> tuple[str, ...]:
        """Declared for ``mmcore.lossgroups``: ``cycle`` exists only with the backward autoencoder."""
        return ("recon", "cycle") if float(cycle_weight) > 0 else ("recon",)

    def __init__(
        self,
        specs: list[ModalitySpec],
        dim: int,
        hidden: Annotated[list[PositiveInt], NonEmpty()] = [256, 128, 64],  # noqa: B006 - copied; MMIN scripts: AE_layers 256,128,64
        blocks: PositiveInt = 5,  # MMIN scripts: n_blocks 5
        recon_weight: NonNegative = 4.0,  # MMIN scripts: mse_weight 4
        cycle_weight: NonNegative = 2.0,  # MMIN scripts: cycle_weight 2; 0 removes the backward autoencoder
        hide_rate: Rate = 0.5,
        hide_scope: HideScope = "imputer",
        detach_target: bool = True,
        hide_rule: HideRule = "independent",  # subsets: MMIN's own draw (mmcore.hiding)
    ) -> None:
        super().__init__()
        names = [s.name for s in specs]
        hidden = [int(n) for n in hidden]
        _check(len(specs) >= 2, f"needs at least two modalities to imagine one from the others, got {names}")
        self.names = names
        self.dim = dim
        self.recon_weight = float(recon_weight)
        self.cycle_weight = float(cycle_weight)
        self.hide_rate = float(hide_rate)
        self.hide_scope = hide_scope
        self.hide_rule = hide_rule
        problem = rate_problem(self.hide_rate, hide_rule)  # cross-field: the signature checks [0, 1] alone
        _check(problem is None, problem or "")
        self.detach_target = bool(detach_target)
        width = len(specs) * dim
        self.forward_ae = ResidualAutoencoder(width, hidden, blocks)
        # MMIN's netAE_cycle (its share_weight flag off, as in its scripts); absent when unused.
        self.backward_ae = ResidualAutoencoder(width, hidden, blocks) if cycle_weight > 0 else None

    def visible(self, present: Tensor) -> Tensor:
        """``[B, M]`` modalities the autoencoder may read: present, minus those hidden in training."""
        return hide(present, self.hide_rate, self.training, self.hide_rule)

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        m, d = len(self.names), self.dim
        if h.dim() != 3 or tuple(h.shape[1:]) != (m, d) or tuple(present.shape) != tuple(h.shape[:2]):
            raise DataError(
                f"{NAME} expects h [B, {len(self.names)}, {self.dim}] and present [B, {len(self.names)}], "
                f"got {tuple(h.shape)} and {tuple(present.shape)}"
            )
        present = present.bool()
        visible = self.visible(present)
        zero = torch.zeros((), dtype=h.dtype, device=h.device)
        x = torch.where(visible.unsqueeze(-1), h, zero)  # [B, M, d]: hidden and absent rows are zero
        imagined = self.forward_ae(x.flatten(1)).view_as(h)
        z = complete(h, imagined, present, visible, self.hide_scope)

        target = h.detach() if self.detach_target else h
        losses = {"recon": self.recon_weight * _masked_mse(imagined, target, present)}
        if self.backward_ae is not None:
            back = self.backward_ae(imagined.flatten(1)).view_as(h)
            losses["cycle"] = self.cycle_weight * _masked_mse(back, x.detach(), visible)
        return ImputerOutput(z=z, losses=losses)


def _masked_mse(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``[M]``: mean over rows where ``mask [B, M]`` of ‖prediction − target‖² / d, divided by M;
    exactly 0 for a column with no such row (``where`` keeps NaN and inf of other rows out)."""
    per_row = (prediction.float() - target.float()).pow(2).mean(-1)  # [B, M]
    total = torch.where(mask, per_row, torch.zeros_like(per_row)).sum(0)
    return total / mask.sum(0).clamp_min(1).to(total.dtype) / mask.shape[1]


_check = checker(NAME)  # one-line option errors naming the component


# Configurations the core's contract suite builds: small, and with every switch flipped.
MMINImputer.contract_options = [  # type: ignore[attr-defined]
    {"hidden": [16, 8], "blocks": 2},
    {"hidden": [8], "blocks": 1, "cycle_weight": 0.0, "hide_rate": 0.0, "detach_target": False},
    {"hidden": [8], "blocks": 1, "hide_scope": "model"},
    {"hidden": [8], "blocks": 1, "hide_rule": "subsets", "hide_rate": 1.0},
]
