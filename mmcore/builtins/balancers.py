"""The no-op balancer: every modality's term weighs 1 — the baseline any balancing method is measured against."""

from __future__ import annotations

from mmcore.components import Balancer


class Uniform(Balancer):
    """Equal weights for every modality in the target loss group; observes nothing, keeps no state.

    The base class's defaults are exactly that, so this names them as a component.

    Args:
        target: the loss group whose per-modality terms it weighs (all weights are 1).
    """
