"""Studies: a fair comparison of methods as one file and one command (``mmcore study``).

Layout: ``spec`` (the study file), ``plan`` (its runs and their directories, every recipe
validated up front), ``freeze`` (pre-registration of the analysis, amendments), ``execute``
(claims, local pool or Ray), ``run`` (tune, choose, run; ``status``), ``results`` (per-seed
values and the declared analysis of :mod:`mmcore.report.analysis`), ``outputs`` (study.md,
tables.tex, results.csv, report.html) and ``check`` (reproduction packs).

Nothing is imported here: ``mmcore --help`` loads this package and must stay fast.
"""
