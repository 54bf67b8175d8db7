"""Deprecated import path: the module moved to :mod:`mmcore.report.shapley`.

Kept so that ``from mmcore import shapley`` in existing scripts still works; it warns once per import
with the new path. Remove after one release.
"""

from __future__ import annotations

import sys
import warnings

from mmcore.report import shapley as _moved

warnings.warn("mmcore.shapley moved to mmcore.report.shapley; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
