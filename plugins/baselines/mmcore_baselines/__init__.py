"""Rivals for mmcore's comparisons: the methods RedCore has to beat under one protocol.

Imputers ``baselines.missing_token``, ``baselines.mean`` and ``baselines.mmin`` (Zhao et al.,
ACL 2021); balancers ``baselines.ogm_ge`` (Peng et al., CVPR 2022) and
``baselines.inverse_rate``. Installed as an ordinary plugin package: mmcore finds it through
the ``mmcore`` entry point named ``baselines``.
"""

from mmcore_baselines.fill import MissingToken, RunningMean
from mmcore_baselines.inverse_rate import InverseRate, inverse_rate_weights
from mmcore_baselines.mmin import MMINImputer, ResidualAutoencoder
from mmcore_baselines.ogm_ge import OGMGE, coefficients

__version__ = "0.1.0"

__all__ = [
    "OGMGE",
    "InverseRate",
    "MMINImputer",
    "MissingToken",
    "ResidualAutoencoder",
    "RunningMean",
    "__version__",
    "coefficients",
    "inverse_rate_weights",
]
