"""Deprecated import path: the module moved to :mod:`mmcore.report.robustness`.

Kept so that ``from mmcore import robustness`` in existing scripts still works; it warns once per import
with the new path. Remove after one release.
"""

from __future__ import annotations

import sys
import warnings

from mmcore.report import robustness as _moved

warnings.warn("mmcore.robustness moved to mmcore.report.robustness; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
