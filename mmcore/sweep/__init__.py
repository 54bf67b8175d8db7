"""``mmcore sweep``: a recipe over a grid × seeds, one process per run, mean ± std at the end.

Layout: ``grid`` (axes, points, seeds), ``runner`` (run directories, local and Ray execution),
``worker`` (one run in its own process), ``aggregate`` (results.csv, the table) and ``sweep``
(the command itself: plan, execute, summarise). The sweep directory's layout is documented in
``mmcore.sweep.sweep``.
"""

from mmcore.sweep.grid import Axis, Point
from mmcore.sweep.runner import Outcome, Run
from mmcore.sweep.aggregate import Row
from mmcore.sweep.sweep import SweepInterrupted, SweepResult, run_sweep, sweep_dir_for

Interrupted = SweepInterrupted  # the name exported before mmcore.errors.Interrupted, kept for callers

__all__ = ["Axis", "Interrupted", "Outcome", "Point", "Row", "Run", "SweepInterrupted", "SweepResult", "run_sweep", "sweep_dir_for"]
