"""The hooks through which mmcore finds the baselines (entry point ``baselines``).

Imports happen inside the hooks so that listing plugins stays cheap.
"""

from __future__ import annotations

from mmcore import hookimpl
from mmcore.hookspecs import Register


@hookimpl
def register_imputers(register: Register) -> None:
    from mmcore_baselines.fill import MissingToken, RunningMean
    from mmcore_baselines.mmin import MMINImputer
    from mmcore_baselines.neighbours import Neighbours
    from mmcore_baselines.shaspec import ShaSpec

    register("baselines.missing_token", MissingToken)
    register("baselines.mean", RunningMean)
    register("baselines.mmin", MMINImputer)
    register("baselines.shaspec", ShaSpec)
    register("baselines.neighbours", Neighbours)


@hookimpl
def register_balancers(register: Register) -> None:
    from mmcore_baselines.agm import AGM
    from mmcore_baselines.balm import BALM
    from mmcore_baselines.gblending import GBlending
    from mmcore_baselines.inforeg import InfoReg
    from mmcore_baselines.inverse_rate import InverseRate
    from mmcore_baselines.mmpareto import MMPareto
    from mmcore_baselines.ogm_ge import OGMGE
    from mmcore_baselines.pattern_dro import PatternDRO
    from mmcore_baselines.pmr import PMR

    register("baselines.ogm_ge", OGMGE)
    register("baselines.inverse_rate", InverseRate)
    register("baselines.pmr", PMR)
    register("baselines.mmpareto", MMPareto)
    register("baselines.agm", AGM)
    register("baselines.gblending", GBlending)
    register("baselines.inforeg", InfoReg)
    register("baselines.pattern_dro", PatternDRO)
    register("baselines.balm", BALM)
