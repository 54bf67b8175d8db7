"""Deprecated: moved to ``mmcore.report.robustness`` (``mmcore.deprecated`` says when this name goes)."""

from mmcore.deprecated import moved_module

moved_module(__name__)
