"""Deprecated import path: the module moved to :mod:`mmcore.report.stats`.

Kept so that ``from mmcore import stats`` in existing scripts still works; it warns once per import
with the new path. Remove after one release.
"""

from __future__ import annotations

import sys
import warnings

from mmcore.report import stats as _moved

warnings.warn("mmcore.stats moved to mmcore.report.stats; import it from there", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
