"""mmcore: learning with missing modalities, as a plugin framework.

The public API for plugin authors is small: the hook markers, the ``Balancer`` base class and
the data types. Everything else is reached through the CLI or ``mmcore.engine``.
"""

from mmcore.components import Balancer
from mmcore.hookspecs import hookimpl, hookspec
from mmcore.types import Batch, ImputerOutput, ModalitySpec, SplitData, StepStats, TaskSpec

__version__ = "0.1.0"

__all__ = [
    "Balancer",
    "Batch",
    "ImputerOutput",
    "ModalitySpec",
    "SplitData",
    "StepStats",
    "TaskSpec",
    "__version__",
    "hookimpl",
    "hookspec",
]
