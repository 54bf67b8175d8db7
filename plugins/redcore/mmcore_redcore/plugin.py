"""The hooks through which mmcore finds RedCore's components (entry point ``redcore``).

Imports happen inside the hooks so that listing plugins stays cheap.
"""

from __future__ import annotations

from mmcore import hookimpl
from mmcore.hookspecs import Register


@hookimpl
def register_imputers(register: Register) -> None:
    from mmcore_redcore.imputer import VIBImputer

    register("redcore.vib", VIBImputer)


@hookimpl
def register_balancers(register: Register) -> None:
    from mmcore_redcore.balancer import RelativeAdvantage

    register("redcore.relative_advantage", RelativeAdvantage)
