"""How the per-modality training signals moved, per arm and cell, averaged over seeds.

A study's tables say which arm ends better; these series say what the method did on the way:
the balancer's weights (``beta.<m>`` for relative advantage, ``weight.<m>`` for fixed weights
that are not all 1), each modality's loss terms (``recon``, ``kl``) and the imputer's logged-only
monitors (``z_sq``, ``sigma2`` for the VIB). They are read from every finished run's
``metrics.jsonl`` through :class:`~mmcore.engine.record.RunRecord`, averaged over seeds at the
steps every seed logged, and written as ``mechanism.csv`` (tidy) plus one figure per cell and
signal in ``report.html`` when matplotlib is there.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from mmcore.engine.record import RunRecord
from mmcore.study.plan import StudyRun, level_slug

SIGNALS = ("beta", "weight", "recon", "kl", "z_sq", "sigma2")

Series = tuple[list[float], list[float], int]  # steps, mean over seeds, number of seeds
Key = tuple[str, str, str]  # arm, cell slug, "<signal>.<modality>"


def mechanism_series(runs: list[StudyRun], modalities: list[str] | None = None) -> dict[Key, Series]:
    """Mean over seeds of every ``<signal>.<modality>`` series, at the steps all seeds share."""
    per_seed: dict[Key, list[dict[float, float]]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        if not record.finished:
            continue
        metrics = record.metrics
        names = modalities or _modalities(record)
        for signal, covered in metrics.per_modality(names).items():
            if signal not in SIGNALS:
                continue
            for m in covered:
                steps, values = metrics.series(f"{signal}.{m}")
                per_seed.setdefault((run.arm, level_slug(run.levels), f"{signal}.{m}"), []).append(dict(zip(steps, values)))
    out: dict[Key, Series] = {}
    for key, seeds in per_seed.items():
        shared = sorted(set.intersection(*(set(s) for s in seeds)))
        out[key] = (shared, [statistics.fmean(s[x] for s in seeds) for x in shared], len(seeds))
    return out


def _modalities(record: RunRecord) -> list[str]:
    """The run's modality names: the keys of its training missing rates (every run states them)."""
    rates = (((record.recipe or {}).get("missing") or {}).get("train") or {}).get("rates") or {}
    return [str(m) for m in rates]


def write_mechanism_csv(path: Path, series: dict[Key, Series]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arm", "cell", "signal", "modality", "step", "mean", "seeds"])
        for (arm, cell, key), (steps, means, n) in sorted(series.items()):
            signal, _, modality = key.rpartition(".")
            for step, mean in zip(steps, means):
                writer.writerow([arm, cell, signal, modality, int(step), repr(mean), n])


def figures(series: dict[Key, Series]) -> list[tuple[str, bytes]]:
    """One line figure per (cell, signal): a line per arm and modality. Needs matplotlib."""
    from mmcore.report import figures as draw

    groups: dict[tuple[str, str], dict[str, tuple[list[float], list[float]]]] = {}
    for (arm, cell, key), (steps, means, n) in sorted(series.items()):
        signal, _, modality = key.rpartition(".")
        groups.setdefault((cell, signal), {})[f"{arm} {modality} (n={n})"] = (steps, means)
    return [(f"{signal} per modality over training, cell {cell}", draw.lines(lines, f"{signal} · {cell}", "step", signal))
            for (cell, signal), lines in groups.items()]


__all__ = ["SIGNALS", "figures", "mechanism_series", "write_mechanism_csv"]
