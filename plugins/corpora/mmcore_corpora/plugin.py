"""The ``corpora`` plugin's hooks: its datasets and the ``convert`` command.

Imports happen inside the hooks so that listing plugins never pays for numpy parsing code,
and h5py stays optional until an h5 corpus is actually built.
"""

from __future__ import annotations

from typing import Any

from mmcore import hookimpl
from mmcore.hookspecs import Register


@hookimpl
def register_datasets(register: Register) -> None:
    from mmcore_corpora.features import Features
    from mmcore_corpora.handwritten import Handwritten
    from mmcore_corpora.mmin import IEMOCAP, MSPImprov
    from mmcore_corpora.mmsa import MOSEI, MOSI

    register("corpora.handwritten", Handwritten)
    register("corpora.iemocap", IEMOCAP)
    register("corpora.msp_improv", MSPImprov)
    register("corpora.mosi", MOSI)
    register("corpora.mosei", MOSEI)
    register("corpora.features", Features)


@hookimpl
def register_commands(app: Any) -> None:
    from mmcore_corpora.convert import add_commands

    add_commands(app)
