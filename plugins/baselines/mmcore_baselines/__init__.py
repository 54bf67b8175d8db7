"""Rivals for mmcore's comparisons: the methods RedCore has to beat under one protocol.

Imputers ``baselines.missing_token``, ``baselines.mean`` and ``baselines.mmin`` (Zhao et al.,
ACL 2021); balancers ``baselines.ogm_ge`` (Peng et al., CVPR 2022) and
``baselines.inverse_rate``.
``baselines.shaspec``: ShaSpec's shared/specific features, absent ones from the shared mean (Wang et al., CVPR 2023).
``baselines.neighbours``: absent latents from the most similar samples of the batch, after M3Care (Zhang et al., KDD 2022).
Installed as an ordinary plugin package: mmcore finds it through
the ``mmcore`` entry point named ``baselines``.
Balancer ``baselines.pattern_dro``: group DRO over availability patterns, after REMIND (Wu et al., 2026).
Balancer ``baselines.inforeg``: InfoReg (Huang et al., CVPR 2025), proximal regulation in the prime learning window.
"""

from mmcore_baselines.fill import MissingToken, RunningMean
from mmcore_baselines.inforeg import InfoReg
from mmcore_baselines.inverse_rate import InverseRate, inverse_rate_weights
from mmcore_baselines.mmin import MMINImputer, ResidualAutoencoder
from mmcore_baselines.neighbours import Neighbours
from mmcore_baselines.ogm_ge import OGMGE, coefficients
from mmcore_baselines.pattern_dro import PatternDRO, pattern_index
from mmcore_baselines.shaspec import ShaSpec

__version__ = "0.1.0"

__all__ = [
    "OGMGE",
    "PatternDRO",
    "InfoReg",
    "InverseRate",
    "MMINImputer",
    "MissingToken",
    "Neighbours",
    "ResidualAutoencoder",
    "RunningMean",
    "ShaSpec",
    "__version__",
    "coefficients",
    "inverse_rate_weights",
    "pattern_index",
]
