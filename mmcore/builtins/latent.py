"""The shared-latent generator behind ``mmcore.synthetic``'s ``tau``/``alpha``/``gamma``/``nuisance`` options.

Why it exists: when modalities are conditionally independent given the class (the plain
generator), the Bayes log-posterior is a sum over modalities, so zero-filling one linear head is
already Bayes-optimal on every availability pattern and an imputer can only add estimation error.
Here every modality also sees a per-sample latent ``h = mu_y + tau * xi`` that is shared across
modalities, so an absent modality is partly predictable from the present ones and a classifier
trained on complete data weighs a modality differently from one that sees it alone.

Generative model, for sample ``i`` of class ``y`` and modality ``m`` (K = classes - 1)::

    mu_y            the vertices of a regular simplex in R^K, unit norm (fixed, not drawn)
    h_i   = mu_y + tau * xi_i                      xi_i ~ N(0, I_K), shared by every modality
    s_im  = [alpha_m * h_i ; gamma_m * mu_y] + nuisance * zeta_im     in R^{2K}, zeta ~ N(0, I)
    x_im  = E_m s_im + noise * eps_im               E_m: a fixed orthonormal D_m x 2K map
    x_imt = E_m s_im + noise * eps_imt, t < length  (sequences: nuisance is per sample, noise per frame)

The first K coordinates carry the shared latent (loading ``alpha_m``), the last K a class signal
only this modality has (``gamma_m``). Regression replaces ``mu_y`` by ``g_i ~ N(0, I_K)`` and the
target is ``t_i = <h_i, 1/sqrt(K)>``, a linear function of the shared latent.

Everything about the Bayes ceiling follows from this structure: every mean is ``b ⊗ mu_y`` and
every covariance is ``S ⊗ I_K`` over the 2|present| blocks, see :mod:`mmcore.oracle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from mmcore.errors import DataError
from mmcore.nn import length_mask
from mmcore.types import ModalitySpec


@dataclass(frozen=True)
class LatentParams:
    """The generator's constants; the oracle needs exactly these (and each sample's lengths)."""

    tau: float  # scale of the shared per-sample deviation xi
    alpha: tuple[float, ...]  # per-modality loading of the shared latent h
    gamma: tuple[float, ...]  # per-modality private class signal
    nuisance: float  # per-sample private noise in a modality's signal space (does not average over frames)
    noise: float  # per-vector / per-frame noise in every feature dimension
    classes: int  # number of classes (regression: K + 1, which fixes the latent width K)
    regression: bool = False

    @property
    def k(self) -> int:
        """Latent width K = classes - 1 (a simplex of C vertices spans C - 1 dimensions)."""
        return self.classes - 1


def check_latent(
    modalities: int, classes: int, dims: list[int], tau: float, alpha: list[float] | None,
    gamma: list[float] | None, signal: list[float] | None,
) -> list[str]:
    """What is wrong with the latent options, as one-line problems (empty when fine)."""
    problems = []
    if tau < 0 or not math.isfinite(tau):
        problems.append(f"'tau' must be a finite number >= 0, got {tau}")
    for key, value in (("alpha", alpha), ("gamma", gamma)):
        if value is not None and len(value) != modalities:
            problems.append(f"'{key}' needs one value per modality ({modalities} values), got {len(value)}")
        elif value is not None and any(v < 0 or not math.isfinite(v) for v in value):
            problems.append(f"'{key}' values must be finite and >= 0, got {list(value)}")
    if signal is not None:
        problems.append("'signal' belongs to the plain generator; with 'tau' set, give 'gamma' (private class signal) and 'alpha'")
    if classes < 2:
        problems.append(f"'classes' must be at least 2 with the latent generator, got {classes}")
    narrow = [i for i, d in enumerate(dims) if d < 2 * (classes - 1)]
    if narrow:
        problems.append(f"modalities {narrow} have fewer than 2*(classes-1)={2 * (classes - 1)} feature dimensions "
                        f"(the shared and private signal blocks need that many)")
    return problems


def simplex(classes: int) -> Tensor:
    """``[C, C-1]`` unit vectors with pairwise inner products -1/(C-1): a regular simplex.

    Centred standard basis vectors of R^C, expressed in an orthonormal basis of the sum-zero
    hyperplane (Helmert's), so the ceiling never depends on a random draw of class means.
    """
    c = classes
    centred = torch.eye(c, dtype=torch.float64) - 1.0 / c
    basis = torch.zeros(c, c - 1, dtype=torch.float64)
    for j in range(1, c):  # Helmert column j: j ones, then -j, normalised
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= math.sqrt(j * (j + 1))
    vertices = centred @ basis
    return vertices / vertices.norm(dim=1, keepdim=True)


def embedding(dim: int, width: int, gen: torch.Generator) -> Tensor:
    """A fixed ``[dim, width]`` map with orthonormal columns (QR of a seeded Gaussian matrix)."""
    q, r = torch.linalg.qr(torch.randn(dim, width, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # sign-fixed, so the map is unique


def draw_latent(
    target: Tensor, params: LatentParams, specs: list[ModalitySpec], lows: list[int], gen: torch.Generator
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor, list[Tensor]]:
    """Features, lengths (sequences), the target (classes as given; regression drawn here) and
    each modality's embedding ``E_m`` (kept so tests can apply the Bayes rule to the features)."""
    n, k = target.shape[0], params.k
    if params.regression:
        centre = torch.randn(n, k, generator=gen, dtype=torch.float64)  # g_i plays mu_y's part
    else:
        centre = simplex(params.classes)[target]  # [N, K]
    h = centre + params.tau * torch.randn(n, k, generator=gen, dtype=torch.float64)
    features: dict[str, Tensor] = {}
    lengths: dict[str, Tensor] = {}
    maps: list[Tensor] = []
    for m, spec in enumerate(specs):
        signal = torch.cat([params.alpha[m] * h, params.gamma[m] * centre], dim=1)  # [N, 2K]
        signal = signal + params.nuisance * torch.randn(n, 2 * k, generator=gen, dtype=torch.float64)
        emb = embedding(spec.dim, 2 * k, gen)
        maps.append(emb)
        clean = (signal @ emb.T).float()  # [N, D]
        if not spec.sequence:
            features[spec.name] = clean + params.noise * torch.randn(n, spec.dim, generator=gen)
            continue
        max_len = int(spec.max_len or 1)
        length = torch.randint(lows[m], max_len + 1, (n,), generator=gen)
        frames = clean.unsqueeze(1) + params.noise * torch.randn(n, max_len, spec.dim, generator=gen)
        features[spec.name] = torch.where(length_mask(length, max_len).unsqueeze(-1), frames, 0.0)
        lengths[spec.name] = length
    if params.regression:
        target = (h.sum(1) / math.sqrt(k)).float()
    return features, lengths, target, maps


def latent_params(
    modalities: int, classes: int, tau: float, alpha: list[float] | None, gamma: list[float] | None,
    nuisance: float, noise: float, regression: bool,
) -> LatentParams:
    """Defaults: every loading 1, private signal falling from 1.5 to 0.5 over the modalities."""
    if modalities == 1:
        default_gamma = [1.0]
    else:
        default_gamma = [1.5 - i / (modalities - 1) for i in range(modalities)]
    a = tuple(float(v) for v in (alpha if alpha is not None else [1.0] * modalities))
    g = tuple(float(v) for v in (gamma if gamma is not None else default_gamma))
    if not regression and not any(x > 0 for x in a + g):
        raise DataError("mmcore.synthetic: every 'alpha' and 'gamma' is 0, so no modality carries class signal")
    return LatentParams(float(tau), a, g, float(nuisance), float(noise), int(classes), bool(regression))
