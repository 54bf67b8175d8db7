"""``baselines.neighbours``: an absent latent is the similarity-weighted mean of that modality's
latents in the most similar donor samples, in the spirit of M3Care; the donors at evaluation are
a bank of recent training latents, so a row's output never depends on the other rows of its call.

Source: Zhang et al., "M3Care: Learning with Missing Modalities in Multimodal
Healthcare Data", KDD 2022, and the authors' code (github choczhang/M3Care, ``OV/M3Care.ipynb``:
``guassian_kernel``, the ``M3Care`` module's similarity, threshold and graph convolution, and the
training loop's loss), from which every formula and default below was read.

The donor pool P. In training P is the batch followed by the bank (below); in evaluation
(``self.training`` False) P is the bank alone. The rule, on the encodings h (absent rows masked
to zero first, so nothing below reads them), for a query row i of the call and a donor j of P:

    u_m = proj_m(h_m)                         per modality, an MLP with SELU (M3Care's simiProj:
                                              3 Linear layers of width d)
    K_m(i, j) = (1 − σ(ε_m)) · k(u_im, u_jm) + σ(ε_m) · k(h_im, h_jm)     ε_m learned, starts at −0.3
    k(a, b) = (1/3) Σ_{q=0,1,2} exp(−‖a − b‖² / (β_m · 2^q / 2))        M3Care: kernel_num 3, kernel_mul 2
    β_m = mean of ‖a_j − a_j'‖² over the ordered pairs j ≠ j' of P with m present in both
          (no gradient; one β for u and one for h)
    S(i, j) = mean of K_m(i, j) over the modalities m present in both i and j   (0 if none)
    W(i, j) = S(i, j) where S(i, j) > t, else 0;   t = σ(θ), θ learned, starts at 0 (t = 0.5)
    z_im = Σ_j W(i, j) h_jm / Σ_j W(i, j)   over donors j of P with m present    m absent in i
    z_im = h_im                                                                 m present in i

A row with no donor for m (nobody in P has m and passes the threshold) falls back to
``token_m``, a learned vector per modality that starts at zero (``baselines.missing_token``).
``k`` keeps only the k heaviest donors; its default ``null`` keeps every donor above the
threshold, which is M3Care's choice. As in M3Care, ``W`` is ``relu(S − t) + [S > t] · t`` with
the second ``t`` detached: its value is S on kept pairs, and θ still receives a gradient. A row
never donates to itself: a donor must have the modality the query lacks.

The bank. Four non-trainable buffers (in ``state_dict``, hence in mmcore's safetensors
checkpoints; fixed shapes, so a checkpoint loads strictly): ``bank_h [bank_size, M, d]`` and
``bank_present [bank_size, M]``, the detached latents and masks of the most recent training
rows, a FIFO ring; ``bank_filled``, how many slots hold a row; ``bank_next``, the slot the next
row goes to. After a training forward has computed its outputs, the batch's rows are written
under ``no_grad`` in order, oldest overwritten first (a batch longer than the bank keeps its
last ``bank_size`` rows). Only present entries are stored: ``h`` is masked with ``torch.where``
before the write and the mask goes with it, so an absent row never becomes a donor (the
no-leakage rule across calls). A row with no present modality takes a slot but never donates
(dropping it would need the number of such rows on the host, a sync per step). Evaluation reads
the bank and never writes it.

Why a bank (the deviation that makes evaluation meaningful). mmcore evaluates each availability
condition with every row sharing one mask (under condition "a" only a is present, for every
test row) and stacks several conditions' copies of the same rows into one imputer call
(``mmcore.engine.evaluate``). With the batch as the donors, as in M3Care, nobody could donate a
modality that the whole condition lacks (every row would get the token), and a row's copy under
another condition would donate that row's own absent features. With the bank, a row's output in
eval mode depends only on its own present rows, the bank and the parameters: it is deterministic
and independent of the other rows of the call, which mmcore's contract suite checks.

Why the bank is also a donor in training: so that training sees the kind of pool evaluation
uses (a thousand rows of detached latents, one bandwidth for all of them), and the threshold and
``k`` are learned for it; the batch stays in the pool so that donors' latents still carry a
gradient to the encoders, as in M3Care. Its cost: bank latents are up to ``bank_size / batch``
steps old (computed by an older encoder, and with the encoders' training-mode dropout). Under
``missing.train.policy: resample`` the bank can hold the same sample from an earlier epoch with
another pattern, whose copy may then donate the modality the sample now lacks; under ``fixed``
(the default) a sample's copy lacks what the sample lacks, so it cannot.

Exact resume: the bank travels in the checkpoint, so a run stopped mid-epoch and resumed fills
the same slots with the same rows as a straight run. Under torchrun the engine wraps the model
in ``DistributedDataParallel`` with its defaults (``mmcore.engine.runtime.Runtime.wrap``), so
``broadcast_buffers=True``: before every training forward DDP copies rank 0's buffers, the bank
included, to every rank. Each rank then writes its own batch into its copy, which the next
forward overwrites again: every rank trains against rank 0's bank (rank 0's rows only,
identical across ranks at every step), other ranks' rows only serve as donors within their own
batch. Checkpoints are written by rank 0, so the saved bank is rank 0's; at evaluation right
after training (no DDP forward, so no broadcast) rank r's bank is rank 0's plus rank r's own
last batch, so sharded evaluation on ranks r ≠ 0 sees a bank that differs in those rows.

Loss group ``norm`` (only when ``norm_weight > 0``): M3Care adds ``1e−8 · Σ_m |‖proj_m(h_m)‖ −
‖h_m‖|`` to its task loss (a norm-preservation term on the similarity projections, Frobenius
norms over the batch). Here, per modality, ``norm_m = norm_weight · mean over the call's rows
where m is present of |‖u_im‖ − ‖h_im‖|``, exactly 0 for a modality with no present row.

Deviations from M3Care, and why:
- The donors are the batch plus a bank of recent training rows in training, the bank alone at
  evaluation; M3Care's are the batch (see "Why a bank").
- M3Care refines *every* modality by two graph-convolution layers over the thresholded
  similarity graph, and for present modalities mixes the result with the original through a
  learned gate; absent ones take the graph output. Here present latents stay ``h`` and absent
  ones are a normalised weighted mean of the donors' latents (no GCN weights), so the method
  is an imputer on mmcore's latents like the others and the fusion head is the recipe's.
- M3Care applies a BatchNorm before each kernel; it is left out because its batch statistics
  would include the zeroed rows of absent modalities and differ between training and evaluation.
- M3Care's bandwidth is the mean over all pairs of the batch (absent rows included, as zeros);
  here over pairs of the donor pool where both rows have the modality, and 1 where no such pair
  exists or every distance is 0.
- M3Care's graph weights are not normalised (a sum, not a mean) and include the row itself;
  a row never donates to itself here.
- M3Care's norm term skips its first modality and uses whole-batch norms; here every modality,
  per row, averaged over present rows.
- ``k`` (top-k donors) and ``bank_size`` are additions; ``k`` is off by default.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

import torch
from torch import Tensor, nn

from mmcore import Above, Between, NonNegative, PositiveInt
from mmcore.errors import MMCoreError
from mmcore.nn import mlp
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore_baselines.checks import check_shapes

NAME = "baselines.neighbours"
KERNELS, KERNEL_MUL = 3, 2.0  # M3Care guassian_kernel(kernel_mul=2.0, kernel_num=3)
MIX_INIT = -0.3  # M3Care: eps_m = zeros(1) - 0.3, the logit of the raw kernel's share
CHUNK = 1 << 22  # query rows x donors x modalities per kernel evaluation: bounds the memory of a big call


class Donors(NamedTuple):
    """The donor pool: latents ``x [P, M, d]`` (absent entries zero), ``present [P, M]``, projections ``u [P, M, d]``."""

    x: Tensor
    present: Tensor
    u: Tensor


def bandwidth(v: Tensor, present: Tensor) -> Tensor:
    """``[M]`` β_m: the mean squared distance between the rows of ``v [P, M, d]`` that have m, over
    ordered pairs j ≠ j', detached (M3Care reads it from ``.data``); 1 where fewer than two rows
    have m or every distance is 0. Σ_{j≠j'} ‖a_j − a_j'‖² = 2n Σ_j ‖a_j − ā‖²: linear in P."""
    with torch.no_grad():
        v = torch.where(present.unsqueeze(-1), v.float(), torch.zeros((), device=v.device))
        n = present.sum(0).to(v.dtype)  # [M]
        centre = v.sum(0) / n.clamp_min(1).unsqueeze(-1)  # [M, d]
        spread = torch.where(present, (v - centre).pow(2).sum(-1), torch.zeros((), device=v.device)).sum(0)
        beta = 2.0 * spread / (n - 1).clamp_min(1)
        return torch.where((n > 1) & (beta > 0), beta, torch.ones_like(beta))


def gaussian_kernel(q: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    """``[B, P, M]`` M3Care's multi-bandwidth Gaussian kernel between the query rows ``q [B, M, d]``
    and the donors ``v [P, M, d]``, per modality, with the bandwidths ``beta [M]``."""
    q, v = q.float(), v.float()
    d2 = q.pow(2).sum(-1).unsqueeze(1) + v.pow(2).sum(-1).unsqueeze(0) - 2.0 * torch.einsum("imd,jmd->ijm", q, v)
    d2 = d2.clamp_min(0.0)  # [B, P, M]; rounding can make it slightly negative
    base = beta / KERNEL_MUL ** (KERNELS // 2)
    return sum(torch.exp(-d2 / (base * KERNEL_MUL**i)) for i in range(KERNELS)) / KERNELS


class Neighbours(nn.Module):
    """M3Care-style neighbour imputation: per-modality learned-kernel similarity between a row and
    the donors, averaged over the modalities both have, thresholded; an absent latent is the
    similarity-weighted mean of that modality in the donors (the batch and a bank of recent
    training rows in training, the bank alone at evaluation).

    Args:
        hidden: hidden widths of each modality's similarity projection (SELU between); null: [dim, dim], M3Care's.
        k: keep only the k most similar donors per absent latent; null keeps every donor above the threshold (M3Care).
        threshold: starting similarity threshold t in (0, 1); M3Care's learned logit starts at 0, t = 0.5.
        learn_threshold: train the threshold (M3Care) or keep it fixed.
        norm_weight: weight of the projections' norm-preservation term (M3Care 1e-8); 0 removes the group.
        bank_size: training rows kept as donors, a FIFO ring (the evaluation donors; not in M3Care).
    """

    @staticmethod
    def loss_groups(norm_weight: float = 1e-8, **_: object) -> tuple[str, ...]:
        """Declared for ``mmcore.lossgroups``: ``norm`` exists only with a positive weight."""
        return ("norm",) if float(norm_weight) > 0 else ()

    threshold_logit: Tensor
    bank_h: Tensor  # [bank_size, M, d] float32, absent entries zero
    bank_present: Tensor  # [bank_size, M] bool, False in empty slots
    bank_filled: Tensor  # () int64, slots holding a row
    bank_next: Tensor  # () int64, the slot the next row is written to

    def __init__(
        self,
        specs: list[ModalitySpec],
        dim: int,
        hidden: list[PositiveInt] | None = None,
        k: PositiveInt | None = None,
        threshold: Annotated[float, Above(0.0), Between(0.0, 1.0, high_open=True)] = 0.5,
        learn_threshold: bool = True,
        norm_weight: NonNegative = 1e-8,  # M3Care: model_loss = BCE_Loss + sum_of_diff * 1e-8
        bank_size: PositiveInt = 1024,
    ) -> None:
        super().__init__()
        names = [s.name for s in specs]
        if len(specs) < 2:
            raise MMCoreError(f"{NAME}: needs at least two modalities to compare samples on one and fill another, got {names}")
        self.names = names
        self.dim = dim
        self.k = None if k is None else int(k)
        self.norm_weight = float(norm_weight)
        widths = [dim, dim] if hidden is None else [int(w) for w in hidden]
        self.proj = nn.ModuleList(mlp(dim, widths, dim, activation=nn.SELU) for _ in specs)
        self.mix_logit = nn.Parameter(torch.full((len(specs),), MIX_INIT))
        logit = torch.logit(torch.tensor(float(threshold)))
        if learn_threshold:
            self.threshold_logit = nn.Parameter(logit)
        else:
            self.register_buffer("threshold_logit", logit)
        self.token = nn.Parameter(torch.zeros(len(specs), dim))
        size = int(bank_size)
        self.register_buffer("bank_h", torch.zeros(size, len(specs), dim))
        self.register_buffer("bank_present", torch.zeros(size, len(specs), dtype=torch.bool))
        self.register_buffer("bank_filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("bank_next", torch.zeros((), dtype=torch.long))

    # --- the donors ----------------------------------------------------------------------------
    def project(self, x: Tensor) -> Tensor:
        """``[N, M, d]`` each modality's similarity projection u_m = proj_m(h_m)."""
        return torch.stack([proj(x[:, i]) for i, proj in enumerate(self.proj)], dim=1)

    def bank(self) -> tuple[Tensor, Tensor]:
        """``(h [bank_size, M, d], present [bank_size, M])`` of the bank; empty slots have nothing present."""
        filled = torch.arange(self.bank_present.shape[0], device=self.bank_present.device) < self.bank_filled
        return self.bank_h, self.bank_present & filled.unsqueeze(-1)

    def donors(self, x: Tensor, present: Tensor) -> tuple[Donors, Tensor]:
        """``(pool, u)``: the donors and the query rows' projections ``u [B, M, d]``. Training: the
        batch followed by the bank, projected together; evaluation: the bank alone (row
        independence). In training the pool is a concatenated copy, so the graph never holds
        the bank buffers that ``remember`` overwrites in place after the forward."""
        bank_h, bank_present = self.bank()
        if not self.training:
            return Donors(bank_h, bank_present, self.project(bank_h).float()), self.project(x)
        pool_x = torch.cat([x.float(), bank_h])
        pool_u = self.project(pool_x)
        return Donors(pool_x, torch.cat([present, bank_present]), pool_u.float()), pool_u[: x.shape[0]]

    @torch.no_grad()
    def remember(self, x: Tensor, present: Tensor) -> None:
        """Write the rows of ``x`` (absent entries masked to zero) and ``present`` into the ring, in order."""
        size = self.bank_h.shape[0]
        x, present = x[-size:], present[-size:]  # a batch longer than the bank: its newest rows
        slots = (self.bank_next + torch.arange(x.shape[0], device=x.device)) % size
        kept = torch.where(present.unsqueeze(-1), x.detach().float(), torch.zeros((), device=x.device))
        self.bank_h.index_copy_(0, slots, kept)
        self.bank_present.index_copy_(0, slots, present)
        self.bank_next.copy_((self.bank_next + x.shape[0]) % size)
        self.bank_filled.copy_((self.bank_filled + x.shape[0]).clamp_max(size))

    # --- the rule ------------------------------------------------------------------------------
    def similarity(self, x: Tensor, present: Tensor, u: Tensor, pool: Donors) -> Tensor:
        """``[B, P]`` the similarity of every query row to every donor, averaged over the modalities
        both have (0 where they share none); the bandwidths are the pool's."""
        pairs = present.unsqueeze(1) & pool.present.unsqueeze(0)  # [B, P, M]
        mix = torch.sigmoid(self.mix_logit.float())
        learned = gaussian_kernel(u, pool.u, bandwidth(pool.u, pool.present))
        raw = gaussian_kernel(x, pool.x, bandwidth(pool.x, pool.present))
        kernel = (1.0 - mix) * learned + mix * raw
        total = torch.where(pairs, kernel, torch.zeros_like(kernel)).sum(-1)
        return total / pairs.sum(-1).clamp_min(1).to(total.dtype)

    def donor_weights(self, s: Tensor, present: Tensor, donor_present: Tensor) -> Tensor:
        """``[B, P, M]`` weight of donor j for row i's modality m: S(i, j) above the threshold,
        where j has m and i lacks it; only the ``k`` heaviest per (i, m) when ``k`` is set."""
        t = torch.sigmoid(self.threshold_logit.float())
        above = s > t
        w = torch.relu(s - t) + above.to(s.dtype) * t.detach()  # value S where kept; θ gets the gradient
        usable = above.unsqueeze(-1) & donor_present.unsqueeze(0) & ~present.unsqueeze(1)  # [B, P, M]
        if self.k is not None and self.k < s.shape[1]:
            score = torch.where(usable, w.unsqueeze(-1).expand_as(usable), torch.full_like(usable, -1.0, dtype=s.dtype))
            top = score.topk(self.k, dim=1).indices  # [B, k, M]
            usable = usable & torch.zeros_like(usable).scatter(1, top, True)
        return torch.where(usable, w.unsqueeze(-1), torch.zeros((), dtype=s.dtype, device=s.device))

    def fill(self, x: Tensor, present: Tensor, u: Tensor, pool: Donors) -> Tensor:
        """``[B, M, d]`` the donors' weighted mean for every (row, modality), the token without donors."""
        w = self.donor_weights(self.similarity(x, present, u, pool), present, pool.present)
        mass = w.sum(1)  # [B, M]
        mean = torch.einsum("ijm,jmd->imd", w, pool.x) / mass.clamp_min(1e-12).unsqueeze(-1)
        return torch.where((mass > 0).unsqueeze(-1), mean, self.token.float().unsqueeze(0))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        m, d = len(self.names), self.dim
        check_shapes(NAME, m, d, h, present)
        present = present.bool()
        x = torch.where(present.unsqueeze(-1), h, torch.zeros((), dtype=h.dtype, device=h.device))
        pool, u = self.donors(x, present)
        rows = max(1, CHUNK // (pool.x.shape[0] * m))  # rows are independent given the pool: chunks only bound memory
        fill = torch.cat([self.fill(x[i : i + rows], present[i : i + rows], u[i : i + rows], pool) for i in range(0, x.shape[0], rows)])
        z = torch.where(present.unsqueeze(-1), x, fill.to(x.dtype))

        losses: dict[str, Tensor] = {}
        if self.norm_weight > 0:
            gap = (u.float().norm(dim=-1) - x.float().norm(dim=-1)).abs()  # [B, M]
            total = torch.where(present, gap, torch.zeros_like(gap)).sum(0)
            losses["norm"] = self.norm_weight * total / present.sum(0).clamp_min(1).to(total.dtype)
        if self.training:
            self.remember(x, present)
        return ImputerOutput(z=z, losses=losses)


# Configurations the core's contract suite builds (with a weight large enough to see the term);
# the second's bank is smaller than the suite's training calls, so it wraps around.
Neighbours.contract_options = [  # type: ignore[attr-defined]
    {"hidden": [8], "norm_weight": 0.1},
    {"hidden": [], "k": 2, "threshold": 0.2, "learn_threshold": False, "norm_weight": 0.0, "bank_size": 8},
]
