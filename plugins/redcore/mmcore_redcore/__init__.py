"""RedCore for mmcore: a VIB cross-modal imputer and a relative-advantage balancer.

Sun et al., "RedCore: Relative Advantage Aware Cross-Modal Representation Learning for Missing
Modalities with Imbalanced Missing Rates", AAAI 2024. Installed as an ordinary plugin package:
mmcore finds it through the ``mmcore`` entry point named ``redcore``.
"""

from mmcore_redcore.balancer import RelativeAdvantage
from mmcore_redcore.imputer import ResidualPredictor, VIBImputer
from mmcore_redcore.projection import clamp_normalize, project_exact

__version__ = "0.1.0"

__all__ = [
    "RelativeAdvantage",
    "ResidualPredictor",
    "VIBImputer",
    "__version__",
    "clamp_normalize",
    "project_exact",
]
